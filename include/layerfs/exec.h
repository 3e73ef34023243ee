/* exec/: the exec operation.  Three parts, each usable alone:
 *  - the op (lyr_exec_op): what `layerfs exec` was asked to do, parsed from --mount SPEC strings
 *    or a --spec JSON file (docs/exec-spec.md), validated and put in canonical order;
 *  - the cache key of an op plus the digests of its inputs (docs/exec-spec.md, "Cache key");
 *  - the sandbox: runs a command in new namespaces over a root directory with extra mounts that
 *    are already host directories (lyr_exec_sandbox_run).
 * Store refs, FUSE views and the action cache are wired by the caller (cli/); this module
 * includes neither store.h nor fs.h. */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "layerfs/common.h"
#include "layerfs/hash.h"

typedef enum { LYR_MOUNT_BIND = 0, LYR_MOUNT_CACHE, LYR_MOUNT_TMPFS } lyr_mount_type;
typedef enum { LYR_SHARING_SHARED = 0, LYR_SHARING_PRIVATE, LYR_SHARING_LOCKED } lyr_sharing;
typedef enum { LYR_NET_NONE = 0, LYR_NET_HOST } lyr_network;
/* sandbox: the default seccomp filter (docs/security.md); insecure: none (BuildKit's name). */
typedef enum { LYR_SECURITY_SANDBOX = 0, LYR_SECURITY_INSECURE } lyr_security;

/* A message for people, naming the object and the cause
 * ("mount 'type=bind,tagret=/x': unknown key 'tagret'"). */
typedef struct lyr_exec_error {
	char msg[512];
} lyr_exec_error;

/* One mount of an op.  Strings are heap-owned by the op. */
typedef struct lyr_exec_mount {
	lyr_mount_type type;
	char *target;	/* absolute, normalized ("/a/b"; never "/" — that is the root) */
	char *source;	/* ID text as the user gave it, unresolved; NULL: no input (scratch) */
	char *selector; /* normalized absolute sub-path of the input; NULL: the whole input */
	bool readonly;
	bool output;
	char *cache_id;	     /* cache mounts: id=NAME (defaults to the target) */
	lyr_sharing sharing; /* cache mounts only */
	uint64_t size;	     /* tmpfs only: bytes, 0 = the kernel's default */
} lyr_exec_mount;

/* The op.  Build with lyr_exec_op_new + setters/parsers, or lyr_exec_op_load_json; then call
 * lyr_exec_op_validate once before using it (it checks and sorts mounts parents first). */
typedef struct lyr_exec_op {
	char *root;  /* ROOT ID text (layer or ref), unresolved */
	char **args; /* NULL-terminated, n_args >= 1 */
	size_t n_args;
	char **env; /* NULL-terminated "K=V", keys unique */
	size_t n_env;
	char **proxy_env; /* NULL-terminated "K=V"; K one of the proxy names (see below) */
	size_t n_proxy_env;
	char *cwd;	/* absolute, normalized; NULL: "/" */
	char *user;	/* "UID[:GID]" or "NAME[:GROUP]"; NULL: root */
	char *hostname; /* NULL: "layerfs" */
	lyr_network network;
	lyr_security security;
	lyr_exec_mount *mounts; /* sorted by target (component order) after validate */
	size_t n_mounts;
	bool cache;		/* --cache: answer from the action cache when possible */
	bool interactive;	/* -i: pass stdin */
	bool commit_on_failure; /* --commit-on-failure */
	/* --cache-from / --cache-to: registry repositories (docs/cache.md), NULL-terminated;
	 * like the flags above, not part of the cache key */
	char **cache_from;
	size_t n_cache_from;
	char **cache_to;
	size_t n_cache_to;
	/* --tls-verify: check the certificates of every cache_from and cache_to registry (true
	 * unless the op says otherwise; false also allows plain HTTP, as for push and pull) */
	bool tls_verify;
} lyr_exec_op;

/* Proxy variable names accepted by --proxy-env (either case is accepted on input; the sandbox
 * sets both the upper- and lower-case name). */
#define LYR_EXEC_PROXY_NAMES "HTTP_PROXY HTTPS_PROXY FTP_PROXY NO_PROXY ALL_PROXY"

/* Returns 0 and an empty op (network none, tls_verify on), or -ENOMEM. */
int lyr_exec_op_new(lyr_exec_op **ret);
void lyr_exec_op_free(lyr_exec_op *op);

/* Appenders for the command line.  Each returns 0, -ENOMEM, or -EINVAL with ERR filled
 * (an env entry without '=', a proxy name that is not a proxy variable, ...). */
int lyr_exec_op_set_root(lyr_exec_op *op, const char *root);
int lyr_exec_op_add_arg(lyr_exec_op *op, const char *arg);
int lyr_exec_op_add_env(lyr_exec_op *op, const char *kv, lyr_exec_error *err);
int lyr_exec_op_add_proxy_env(lyr_exec_op *op, const char *kv, lyr_exec_error *err);
int lyr_exec_op_set_cwd(lyr_exec_op *op, const char *cwd, lyr_exec_error *err);
int lyr_exec_op_set_user(lyr_exec_op *op, const char *user, lyr_exec_error *err);
int lyr_exec_op_set_hostname(lyr_exec_op *op, const char *hostname, lyr_exec_error *err);
/* Appends a --cache-from or --cache-to registry repository (checked by the caller). */
int lyr_exec_op_add_cache_from(lyr_exec_op *op, const char *name);
int lyr_exec_op_add_cache_to(lyr_exec_op *op, const char *name);
/* "none" or "host". */
int lyr_exec_op_set_network(lyr_exec_op *op, const char *network, lyr_exec_error *err);
/* "sandbox" or "insecure". */
int lyr_exec_op_set_security(lyr_exec_op *op, const char *security, lyr_exec_error *err);
/* Parses one --mount SPEC (the grammar is in docs/exec-spec.md) and appends it.  Returns 0,
 * -ENOMEM, or -EINVAL with ERR naming the bad key or value. */
int lyr_exec_op_add_mount_spec(lyr_exec_op *op, const char *spec, lyr_exec_error *err);

/* The largest --spec file read: a spec is a few KiB, and a file given by mistake (or
 * /dev/zero) must not be read without end. */
#define LYR_EXEC_SPEC_MAX (16 * 1024 * 1024)

/* Reads a --spec FILE.json (schema in docs/exec-spec.md) into a new op.  Unknown keys, wrong
 * types and duplicate keys are errors.  The op is validated before it is returned.  Returns 0,
 * -ENOENT/-EACCES/... when the file cannot be read, -EFBIG with ERR for a file over
 * LYR_EXEC_SPEC_MAX bytes (read no further), -EINVAL with ERR for bad content. */
int lyr_exec_op_load_json(const char *path, lyr_exec_op **ret, lyr_exec_error *err);
/* The same from a buffer (NUL-terminated). */
int lyr_exec_op_parse_json(const char *text, lyr_exec_op **ret, lyr_exec_error *err);

/* Checks the whole op and sorts its mounts parents first.  Rules: a root and at least one
 * arg; unique env keys; targets absolute, normalized, not "/", unique; `sharing` and `id` only
 * for cache mounts; `size` only for tmpfs; tmpfs takes no source, selector or output; a
 * selector needs a source; no `output` on a cache mount; a readonly bind output needs a
 * source.  Returns 0 or -EINVAL with ERR filled. */
int lyr_exec_op_validate(lyr_exec_op *op, lyr_exec_error *err);

/* Normalizes an absolute path: collapses "//" and "/./", drops a trailing "/", and rejects
 * ".." components and relative paths (-EINVAL).  Returns 0 and a heap string in RET. */
int lyr_exec_path_normalize(const char *path, char **ret);

/* "linux/amd64", "linux/arm64", ... from uname(2); OUT holds at least 32 bytes. */
void lyr_exec_platform(char out[32]);

/* ---- Cache key ---- */

/* The inputs of a validated op, in key order: index 0 is the root, then each distinct mount
 * source text in (sorted) mount order.  SELECTORS are every mount's selector of that input
 * ("/" for a mount without one; the root is always "/") as lyr_hash_selectors_dedupe leaves
 * them: any plain selector covered by another plain one (a whole path-component prefix: "/a"
 * covers "/a/b", not "/ab") dropped, the rest in byte order -- the list to hand to
 * lyr_hash_selectors.
 * READ_ONLY is true when every mount of the input is a read-only bind (the root never is);
 * such an input is keyed by the content hash of SELECTORS, any other by its layer ID. */
typedef struct lyr_exec_input {
	const char *source; /* the op's text (root ID text for input 0); borrowed from the op */
	char **selectors;   /* NULL-terminated, heap */
	size_t n_selectors;
	bool read_only;
	char selector_digest[LYR_DIGEST_TEXT_LEN]; /* sha256 of SELECTORS joined with "\0" */
} lyr_exec_input;

/* Lists the inputs of validated OP.  Returns 0 with a heap array (free with
 * lyr_exec_inputs_free) and its length, or -ENOMEM. */
int lyr_exec_op_inputs(const lyr_exec_op *op, lyr_exec_input **ret, size_t *ret_n);
void lyr_exec_inputs_free(lyr_exec_input *inputs, size_t n);
/* Which input (index into lyr_exec_op_inputs) mount I of OP reads, or -1 for none. */
int lyr_exec_mount_input(const lyr_exec_op *op, size_t i);

/* What the caller found out about input I: the selector digest (normally the one from
 * lyr_exec_op_inputs) and either the content hash of the selectors or the layer ID. */
typedef struct lyr_exec_input_digest {
	const char *selector_digest; /* "sha256:<hex>" */
	const char *digest;	     /* content hash or layer ID, "sha256:<hex>" */
} lyr_exec_input_digest;

/* The canonical encoding of validated OP for PLATFORM (NULL: this machine's), as
 * docs/exec-spec.md specifies.  Returns 0 with a heap buffer and its length, or -ENOMEM. */
int lyr_exec_op_encode(const lyr_exec_op *op, const char *platform, uint8_t **ret, size_t *ret_len);

/* Cache key "sha256:<hex>" of validated OP for PLATFORM (NULL: this machine's) and N_INPUTS
 * input digests (one per lyr_exec_op_inputs entry, in that order).  Returns 0, -EINVAL when
 * N_INPUTS does not match the op or a digest is not "sha256:<64 hex>", -ENOMEM. */
int lyr_exec_cache_key(const lyr_exec_op *op, const char *platform,
		       const lyr_exec_input_digest *inputs, size_t n_inputs,
		       char ret_key[LYR_DIGEST_TEXT_LEN]);

/* ---- Sandbox ---- */

/* A mount the sandbox makes, already resolved to the host: a bind of a host directory (what
 * bind and cache mounts become once their views are mounted) or a fresh tmpfs. */
typedef struct lyr_sandbox_mount {
	lyr_mount_type type; /* LYR_MOUNT_BIND or LYR_MOUNT_TMPFS */
	const char *target;  /* absolute path inside the root */
	const char *source;  /* bind: host directory */
	bool readonly;
	uint64_t size; /* tmpfs: bytes, 0 = kernel default */
} lyr_sandbox_mount;

typedef struct lyr_sandbox {
	const char *rootfs;		 /* host directory that becomes "/" */
	const lyr_sandbox_mount *mounts; /* any order; applied parents first */
	size_t n_mounts;
	const char *const *args;      /* NULL-terminated; args[0] is looked up in $PATH */
	const char *const *env;	      /* NULL-terminated "K=V" or NULL */
	const char *const *proxy_env; /* NULL-terminated "K=V" or NULL; set in both cases */
	const char *cwd;	      /* NULL: "/" */
	const char *user;	      /* NULL: root; "UID[:GID]" or "NAME[:GROUP]" */
	const char *hostname;	      /* NULL: "layerfs" */
	lyr_network network;
	lyr_security security;	/* insecure: the command runs without the seccomp filter */
	bool stdin_passthrough; /* false: stdin is /dev/null */
	/* the caller's own record of a signal it caught (a handler sets it to the signal's
	 * number), or NULL: one that arrived after the caller last looked, before forwarding
	 * began, is sent to the command as if it had come later */
	volatile sig_atomic_t *caught;
} lyr_sandbox;

/* Fills RET from validated OP for a run over ROOTFS: args, env, proxy env, cwd, user, hostname,
 * network, security and stdin (-i).  MOUNTS must have room for op->n_mounts entries; entry i gets
 * mount i's target, readonly and size, and its type with cache turned into bind; its source is left
 * NULL for the caller to set to the host directory where it mounted that mount's view.  RET borrows
 * from OP, ROOTFS and MOUNTS. */
void lyr_exec_sandbox_from_op(const lyr_exec_op *op, const char *rootfs, lyr_sandbox_mount *mounts,
			      lyr_sandbox *ret);

/* Runs SB's command and waits for it.  The caller's stdout and stderr are inherited.  SIGINT
 * and SIGTERM that reach the calling process while the command runs are forwarded to it (the
 * previous handlers are restored before returning); the whole sandbox dies with the caller.
 * Returns 0 and RET_STATUS as `docker run` reports it: the command's exit code, 126 when it
 * cannot be executed, 127 when it is not found, 128+N when signal N ended it.  Returns -errno
 * with ERR naming the cause when the sandbox itself could not be set up (report 125).
 * Call it from a single-threaded process, one sandbox at a time: the init is started with a
 * raw clone (no fork handlers reset other threads' locks) and signal forwarding has one slot. */
int lyr_exec_sandbox_run(const lyr_sandbox *sb, int *ret_status, lyr_exec_error *err);
