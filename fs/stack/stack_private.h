/* Shared between the files of fs/stack: which overlay markers an object carries. */
#pragma once

#include <stdbool.h>

enum {
	LYR_MARK_OPAQUE = 1,
	LYR_MARK_REDIRECT = 2,
	LYR_MARK_METACOPY = 4,
	LYR_MARK_INO = 8,
};

/* The overlay xattrs the object at FD carries, as LYR_MARK_* bits, learnt from one listxattr
 * (most objects carry none, so a lookup costs one call instead of one per marker). */
unsigned lyr_stack_marks(int fd);
/* The same for the entry NAME of directory DIRFD, which FD (O_PATH) also refers to, or -1 when
 * the entry is not open (it is then named by DIRFD and NAME only, never followed if a symlink). */
unsigned lyr_stack_marks_at(int dirfd, const char *name, int fd);
