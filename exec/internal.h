/* Private to exec/: helpers shared by the spec parsers, the cache key and the sandbox,
 * grouped by the file that defines them. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "layerfs/exec.h"

/* spec.c */
void lyr_exec_errf(lyr_exec_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool lyr_exec_is_proxy_name(const char *name, size_t len);
int lyr_exec_mount_type_parse(const char *s, lyr_mount_type *ret);
int lyr_exec_sharing_parse(const char *s, lyr_sharing *ret);
const char *lyr_exec_mount_type_name(lyr_mount_type t);
const char *lyr_exec_sharing_name(lyr_sharing s);
int lyr_exec_size_parse(const char *s, uint64_t *ret);
int lyr_exec_mount_set(lyr_exec_mount *m, const char *key, const char *value, unsigned *seen,
		       lyr_exec_error *err);
int lyr_exec_mount_finish(lyr_exec_mount *m, unsigned seen, lyr_exec_error *err);
int lyr_exec_op_push_mount(lyr_exec_op *op, lyr_exec_mount *m);
int lyr_exec_path_cmp(const char *a, const char *b);

/* caps.c */
/* Limits the bounding set to LYR_EXEC_DEFAULT_CAPS (needs CAP_SETPCAP; call before changing
 * user).  Returns 0 or -errno. */
int lyr_exec_caps_bound(void);
/* After the user change: permitted and effective = the default set for uid 0, empty otherwise;
 * inheritable and ambient empty.  Returns 0 or -errno. */
int lyr_exec_caps_apply(uid_t uid);
#define LYR_EXEC_DEFAULT_CAPS UINT64_C(0xa80425fb)

/* seccomp.c */
/* Loads the default filter (docs/security.md, "System calls") into the calling thread; it
 * stays through execve and is inherited by every child.  The caller must have set
 * no_new_privs (or hold CAP_SYS_ADMIN).  Returns 0 or -errno (-EINVAL: a kernel without
 * seccomp filters). */
int lyr_exec_seccomp_load(void);

/* user.c */
/* Resolves USER ("UID[:GID]" or "NAME[:GROUP]", NULL = root) against the passwd and group
 * files open at ROOTFD (etc/passwd, etc/group; missing files count as empty).  Fills uid, gid
 * and the supplementary groups (at most *N_GROUPS, updated).  Returns 0, -ENOENT with ERR
 * for an unknown name, -EINVAL for a malformed spec. */
int lyr_exec_user_resolve(int rootfd, const char *user, uid_t *ret_uid, gid_t *ret_gid,
			  gid_t *groups, size_t *n_groups, lyr_exec_error *err);
