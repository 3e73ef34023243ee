/* Test helpers: temporary directories, running the layerfs binary, building trees. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A fresh directory under $TMPDIR (or /tmp), named after the run of the test binary; the
 * caller removes it (tu_rmtree_unmounted).  Once all tests have ended, the runner unmounts and
 * removes what is left of the run's directories (a test killed at its timeout never tears
 * down), naming the mounts on stderr. */
char *tu_mkdtemp(void);
/* rm -rf PATH (not following symlinks). */
void tu_rmtree(const char *path);

/* A test's scratch space: a fresh temporary directory TMP, and the paths TMP/store for a
 * store and TMP/src for a source tree (neither created). */
typedef struct tu_dirs {
	char *tmp, *store, *src;
} tu_dirs;
void tu_dirs_init(tu_dirs *d);
/* Removes TMP and all below it (tu_rmtree_unmounted), and frees the paths. */
void tu_dirs_fini(tu_dirs *d);
/* tu_dirs_fini after unmounting whatever a failed test left mounted below TMP. */
void tu_dirs_fini_mounted(tu_dirs *d);
/* For a suite's teardown: unmounts what is mounted below DIR (tu_umount_below) and removes DIR.
 * When something was mounted there, the test that left it fails: the message names each
 * mount, and the test's process exits 1 (Criterion reports "exited during its setup or
 * teardown" and the run's status is a failure).  Call it before anything else in the teardown
 * that unmounts, so that a mount a passing test forgot is not hidden. */
void tu_rmtree_unmounted(const char *dir);

/* Writes DATA to DIR/REL, creating parent directories. */
void tu_write(const char *dir, const char *rel, const char *data);
/* Reads DIR/REL into a heap string (NULL when missing). */
char *tu_read(const char *dir, const char *rel);
/* Joins DIR and REL into a heap string. */
char *tu_path(const char *dir, const char *rel);

/* Where a child's stdout or stderr goes: a pipe, or a pseudo-terminal (isatty() holds there;
 * raw mode, so what is captured is exactly what the child wrote). */
typedef enum tu_sink { TU_PIPE, TU_PTY } tu_sink;

typedef struct tu_run {
	int status; /* exit status, or 128+signal */
	char *out;  /* stdout, heap, NUL-terminated */
	char *err;  /* stderr */
} tu_run;

/* Runs the built layerfs binary with ARGV (NULL-terminated, without argv[0]) and the
 * environment plus ENV (NULL-terminated "K=V" list, may be NULL); captures output. */
tu_run tu_layerfs(const char *const *env, const char *const *argv);
/* tu_layerfs with stdout going to OUT and stderr to ERR. */
tu_run tu_layerfs_on(tu_sink out, tu_sink err, const char *const *env, const char *const *argv);
/* Runs an arbitrary command the same way. */
tu_run tu_cmd(const char *const *env, const char *const *argv);
/* tu_cmd with stdout going to OUT and stderr to ERR. */
tu_run tu_cmd_on(tu_sink out, tu_sink err, const char *const *env, const char *const *argv);
void tu_run_free(tu_run *r);

/* True while PID runs (a zombie has exited: only its parent has not reaped it yet). */
bool tu_process_running(pid_t pid);
/* True when /dev/fuse can be opened read-write. */
bool tu_have_fuse(void);
/* Skips the test unless /dev/fuse can be opened. */
void tu_need_fuse(void);
/* Views: the backend the CLI commands of this test use (sets LAYERFS_BACKEND: "fuse",
 * "kernel" or "auto").  Tests of the FUSE daemon itself (its serving process, its options) pin
 * "fuse"; the others run on whichever backend the suite's environment names (ctest runs them
 * under both). */
void tu_backend(const char *name);
/* True when the CLI's views in this test come from kernel overlayfs: LAYERFS_BACKEND=kernel, or
 * auto (unset) as root where the kernel has overlayfs. */
bool tu_backend_kernel(void);
/* Skips the test unless this process may mount kernel overlayfs (root, overlay module). */
void tu_need_kernel_overlay(void);
/* The mounts at or below DIR in this mount namespace, one a line as "MOUNTPOINT (TYPE)", in
 * the order they were mounted; heap, "" when none. */
char *tu_mounts_below(const char *dir);
/* Lazily unmounts every mount at or below DIR, most recent first: what a failed test left
 * behind. */
void tu_umount_below(const char *dir);

/* Debian's busybox-static, from which sandbox tests build their roots. */
#define TU_BUSYBOX "/bin/busybox"
/* Skips the test unless TU_BUSYBOX can be run. */
void tu_need_busybox(void);
/* Makes DIR (created if missing, mode 0755) a root a command can run in: bin/busybox, a link
 * bin/NAME -> busybox for each of the N APPLETS, and etc/passwd and etc/group holding PASSWD
 * and GROUP. */
void tu_busybox_root(const char *dir, const char *const *applets, size_t n, const char *passwd,
		     const char *group);

/* True when TEXT has LINE (without its newline) as one of its lines. */
bool tu_has_line(const char *text, const char *line);

/* Copies the static probe-syscalls program (tests/probe/) into DIR as bin/probe-syscalls, so
 * that a sandbox over DIR can run it. */
void tu_add_probe_syscalls(const char *dir);

/* Runs `layerfs --root ROOT ARGS...` (a NULL-terminated list of strings). */
tu_run tu_lf(const char *root, ...) __attribute__((sentinel));
/* The same with ENV (NULL-terminated "K=V" list, may be NULL) added to the environment. */
tu_run tu_lf_env(const char *const *env, const char *root, ...) __attribute__((sentinel));
/* R's stdout, after asserting that R exited 0 (its stderr in the message otherwise); R's
 * stderr is freed, the heap string returned is the caller's. */
char *tu_ok(tu_run r);
/* Asserts that R exited STATUS with exactly the message FMT... on stderr; frees R. */
void tu_fails(tu_run r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The text of KEY's first value in JSON (a string without its quotes, or a number). Heap. */
char *tu_json_field(const char *json, const char *key);
/* True when TEXT matches the POSIX extended regular expression RE. */
bool tu_matches(const char *re, const char *text);
/* The upper directory of ref REF in the store at ROOT, from `inspect --json`.  Heap. */
char *tu_ref_upper(const char *root, const char *ref);
/* A text that changes whenever the store's visible state does: `ls --json` (or "no store"
 * when there is none) plus the names under layers/, refs/ and tmp/.  Heap string. */
char *tu_store_state(const char *root);
/* Everything below DIR as text, one line per entry in name order, depth first: "a/b/" for a
 * directory, "a/f=CONTENT" for a regular file, "a/x (mode M)" for anything else.  Heap. */
char *tu_tree_text(const char *dir);
/* Runs a shell command line with /bin/sh -c; returns its exit status. */
int tu_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Skips the test when the program NAME is not on PATH, except in CI ($CI is "true"), where it
 * must be installed (scripts/setup installs it) and its absence fails the test. */
void tu_need_tool(const char *name);
