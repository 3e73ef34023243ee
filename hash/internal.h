/* Helpers shared by the files of hash/ and by nothing else: a growable byte buffer with the
 * length-prefixed encodings the digests use, and reading an entry's xattrs in name order. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include "layerfs/hash.h"

/* A growable byte buffer.  Appends never fail: an allocation failure sets OOM, later appends are
 * ignored, and the owner checks OOM once before using the bytes. */
typedef struct hbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
} hbuf;

void hb_free(hbuf *b);
void hb_reset(hbuf *b);
void hb_put(hbuf *b, const void *data, size_t len);
/* Appends decimal(LEN) ":" DATA: the length prefix makes every field self-delimiting. */
void hb_lstr(hbuf *b, const void *data, size_t len);
/* hb_lstr of a C string. */
void hb_lcstr(hbuf *b, const char *s);
/* hb_lstr of the decimal text of V. */
void hb_lnum(hbuf *b, uint64_t v);

static inline void hb_puts(hbuf *b, const char *s) { hb_put(b, s, strlen(s)); }

/* One extended attribute; the value may hold NUL bytes. */
typedef struct hx_attr {
	const char *name;
	const uint8_t *value;
	size_t len;
} hx_attr;

typedef struct hx_list {
	hx_attr *v;
	size_t n;
	char *names;    /* storage behind v[].name */
	uint8_t *vals;  /* storage behind v[].value */
} hx_list;

/* Reads every xattr this process can list of an entry, sorted by name bytes (strcmp).  The entry
 * is FD when FD >= 0 (a regular file or directory open for reading), else NAME inside DIRFD,
 * reached through /proc/self/fd without opening or following it (symlinks, device nodes, fifos).
 * A file system without xattr support yields an empty list.  Returns 0 or -errno. */
int hx_read(int fd, int dirfd, const char *name, hx_list *ret);
void hx_free(hx_list *l);

/* Matches STR against the glob PAT: `*` and `?` never match `/`, `**` matches across `/`
 * (a pattern "a/" + "**" + "/b" also matches "a/b"), bracket classes as fnmatch, backslash escapes. */
bool hglob_match(const char *pat, const char *str);
/* True when PAT matches STR or one of STR's leading path components ("a" for "a/b/c"). */
bool hglob_match_path(const char *pat, const char *str);

/* Reads xattrs through callbacks (for hash sources); same result as hx_read. */
int hx_read_cb(ssize_t (*list)(void *arg, char *buf, size_t size),
	       ssize_t (*get)(void *arg, const char *name, void *buf, size_t size), void *arg,
	       hx_list *ret);

/* ---- filepool.c: hashing file contents on worker threads ----------------------------------- */

#include <stdatomic.h>

/* One regular file to digest: sha256(HDR + the bytes read from FD) as text into DIGEST.  The
 * fields after `next` up to `err` belong to the worker while the job is in a pool; the rest is
 * the submitter's own bookkeeping, never touched by workers. */
typedef struct hjob {
	struct hjob *next;
	int fd;
	off_t size;
	hbuf hdr;
	char digest[LYR_DIGEST_TEXT_LEN];
	int err;         /* 0 or -errno of the read */
	/* the submitter's */
	char *path;
	char *key;
	char *out;
	void *node;
} hjob;

typedef struct hpool hpool;

#define HJOB_BUF (1u << 20)
#define HPOOL_MAX_THREADS 256

/* Worker threads for this process: the CPUs it may run on (at least 1, at most 256). */
unsigned hpool_default_threads(void);
/* Reads and hashes J with the HJOB_BUF-byte buffer BUF, stopping early with -ECANCELED
 * once *ABORT (may be NULL) is set.  Sets and returns J->err. */
int hjob_run(hjob *j, uint8_t *buf, const atomic_bool *abort);
/* Starts THREADS (1..256) workers.  0 or -errno. */
int hpool_new(unsigned threads, hpool **ret);
/* Queues J; it comes back from hpool_take once hashed (J->err says how it went). */
void hpool_submit(hpool *p, hjob *j);
/* The jobs finished since the last call, linked by `next` (NULL when none); with WAIT, blocks
 * until there is at least one (the caller must have one out). */
hjob *hpool_take(hpool *p, bool wait);
/* Makes workers drop what they have not read yet (their jobs finish with -ECANCELED). */
void hpool_abort(hpool *p);
/* Stops the workers, after they finished every queued job; the caller takes back every job
 * before (none may be left in the pool).  Accepts NULL. */
void hpool_free(hpool *p);
