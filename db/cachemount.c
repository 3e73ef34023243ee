/* Cache-mount refs: mutable refs that exec cache mounts keep across runs, found by cache id and
 * source layer, never committed.
 *
 * Which refs belong to a cache is a record in actions.db under "cache-mount\0<id>\0<source>"
 * ("" for scratch) holding their ref IDs (64 hex each, concatenated); refs removed meanwhile
 * (prune --all, rm) are dropped from it when next read.  Each ref directory gets two lock
 * files next to upper/ and work/:
 *   exec.lock  held by every run using the ref: shared (LOCK_SH) for sharing=shared, exclusive
 *              for locked (waiting) and private (not waiting: a busy ref is skipped and a new
 *              one made);
 *   mnt.lock   held briefly, exclusively, while a run mounts or unmounts the ref at
 *              refs/<id>/mnt, so concurrent shared runs use one FUSE mount and the last one
 *              out unmounts it.
 * The locks are flock(2) on O_CLOEXEC descriptors, so they die with the process (the FUSE
 * serving process closes every inherited descriptor).  A run takes the exec locks of all its
 * cache mounts in one global order -- sorted by cache id, then source -- so two runs never
 * wait on each other in a cycle; mnt.lock is never held while waiting for another lock. */
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#include "db-int.h"

#define CM_PREFIX "cache-mount"
#define HEX_LEN (LYR_REF_ID_LEN - 1)

struct lyr_cache_hold {
	char ref[LYR_REF_ID_LEN];
	char *mountpoint;
	int lockfd; /* exec.lock */
	int mntfd;  /* mnt.lock while held, else -1 */
	bool created;
	unsigned users; /* requests of one run that share this hold */
};

static int cm_key(const char *id, const char *source, char **ret, size_t *ret_len)
{
	size_t a = strlen(CM_PREFIX), b = strlen(id), c = source ? strlen(source) : 0;
	char *k = malloc(a + b + c + 2);
	if (!k)
		return -ENOMEM;
	memcpy(k, CM_PREFIX, a + 1);
	memcpy(k + a + 1, id, b + 1);
	memcpy(k + a + b + 2, source ? source : "", c);
	*ret = k;
	*ret_len = a + b + c + 2;
	return 0;
}

typedef struct cm_ctx {
	const char *key;
	size_t klen;
	char *refs; /* out: live ref IDs concatenated */
	size_t n;
	const char *add;    /* in: append this ref ID */
	bool only_if_empty; /* with ADD: only when no live ref is listed */
	bool added;
} cm_ctx;

/* Reads the record, drops IDs whose ref is gone, optionally appends ADD. */
static int cm_txn(lyr_store *s, DB_TXN *txn, void *ctx)
{
	cm_ctx *c = ctx;
	free(c->refs);
	c->refs = NULL;
	c->n = 0;
	c->added = false;
	_cleanup_free_ void *v = NULL;
	size_t len = 0;
	int r = rec_get(s->actions, txn, c->key, c->klen, &v, &len);
	if (r && r != -ENOENT)
		return r;
	size_t n = r ? 0 : len / HEX_LEN;
	c->refs = malloc((n + 1) * HEX_LEN + 1);
	if (!c->refs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		char id[LYR_REF_ID_LEN];
		memcpy(id, (char *)v + i * HEX_LEN, HEX_LEN);
		id[HEX_LEN] = 0;
		if (!rec_exists(s->refs, txn, id, HEX_LEN, &r)) {
			if (r)
				return r;
			continue;
		}
		memcpy(c->refs + c->n++ * HEX_LEN, id, HEX_LEN);
	}
	if (c->add && !(c->only_if_empty && c->n > 0)) {
		memcpy(c->refs + c->n++ * HEX_LEN, c->add, HEX_LEN);
		c->added = true;
	}
	c->refs[c->n * HEX_LEN] = 0;
	if (c->n != n || c->added)
		r = c->n ? rec_put(s->actions, txn, c->key, c->klen, c->refs, c->n * HEX_LEN, 0)
			 : rec_del(s->actions, txn, c->key, c->klen);
	return r == -ENOENT ? 0 : r;
}

static int lock_file(lyr_store *s, const char *ref, const char *name)
{
	char path[128];
	snprintf(path, sizeof path, "refs/%s/%s", ref, name);
	int fd = openat(s->rootfd, path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	return fd < 0 ? -errno : fd;
}

static int do_flock(int fd, int op)
{
	while (flock(fd, op) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static void hold_free(lyr_cache_hold *h)
{
	if (!h)
		return;
	if (h->mntfd >= 0)
		close(h->mntfd);
	if (h->lockfd >= 0)
		close(h->lockfd);
	free(h->mountpoint);
	free(h);
}

static int hold_new(lyr_store *s, const char *ref, int lockfd, bool created, lyr_cache_hold **ret)
{
	lyr_cache_hold *h = calloc(1, sizeof *h);
	if (!h)
		return -ENOMEM;
	memcpy(h->ref, ref, HEX_LEN);
	h->lockfd = lockfd;
	h->mntfd = -1;
	h->created = created;
	h->users = 1;
	char mp[128];
	snprintf(mp, sizeof mp, "refs/%s/mnt", ref);
	int r = 0;
	if (mkdirat(s->rootfd, mp, 0755) < 0 && errno != EEXIST)
		r = -errno;
	else if (asprintf(&h->mountpoint, "%s/%s", s->root, mp) < 0)
		h->mountpoint = NULL, r = -ENOMEM;
	if (r < 0) {
		hold_free(h);
		return r;
	}
	*ret = h;
	return 0;
}

/* Locks one listed ref per SHARING; 1 when got, 0 when private found it busy (or the ref
 * vanished: its directory is gone), <0 error. */
static int lock_ref(lyr_store *s, const char *ref, lyr_cache_sharing sharing, int *ret_fd)
{
	int fd = lock_file(s, ref, "exec.lock");
	if (fd == -ENOENT)
		return 0;
	if (fd < 0)
		return fd;
	int op = sharing == LYR_CACHE_SHARED   ? LOCK_SH
		 : sharing == LYR_CACHE_LOCKED ? LOCK_EX
					       : LOCK_EX | LOCK_NB;
	/* the one wait that can last: a signal (handler without SA_RESTART) ends it */
	int r = flock(fd, op) < 0 ? -errno : 0;
	if (r == -EWOULDBLOCK) {
		close(fd);
		return 0;
	}
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 1;
}

static bool ref_alive(lyr_store *s, const char *ref)
{
	lyr_ref_info info;
	if (lyr_ref_get(s, ref, &info) < 0)
		return false;
	lyr_ref_info_clear(&info);
	return true;
}

static int acquire_one(lyr_store *s, const lyr_cache_req *req, lyr_cache_hold **ret)
{
	_cleanup_free_ char *key = NULL;
	size_t klen;
	int r = cm_key(req->id, req->source, &key, &klen);
	if (r < 0)
		return r;
	for (int attempt = 0; attempt < 100; attempt++) {
		cm_ctx c = {.key = key, .klen = klen};
		r = txn_run(s, cm_txn, &c);
		if (r < 0) {
			free(c.refs);
			return r;
		}
		/* shared and locked use the first ref; private the first one nobody holds */
		size_t tries = req->sharing == LYR_CACHE_PRIVATE ? c.n : (c.n > 0);
		for (size_t i = 0; i < tries; i++) {
			char ref[LYR_REF_ID_LEN];
			memcpy(ref, c.refs + i * HEX_LEN, HEX_LEN);
			ref[HEX_LEN] = 0;
			int fd = -1;
			r = lock_ref(s, ref, req->sharing, &fd);
			if (r < 0) {
				free(c.refs);
				return r;
			}
			if (r == 0)
				continue;
			/* prune may have removed it while we waited */
			if (!ref_alive(s, ref)) {
				close(fd);
				continue;
			}
			free(c.refs);
			return hold_new(s, ref, fd, false, ret);
		}
		bool had = c.n > 0;
		free(c.refs);
		if (had && req->sharing != LYR_CACHE_PRIVATE)
			continue; /* the first ref vanished: look again */

		/* a new ref, locked before it is listed so no other run can take it first */
		char ref[LYR_ID_MAX];
		r = lyr_ref_new(s, req->source, req->desc, ref);
		if (r < 0)
			return r;
		int fd = lock_file(s, ref, "exec.lock");
		if (fd < 0 || (r = do_flock(fd, LOCK_EX)) < 0) {
			r = fd < 0 ? fd : r;
			if (fd >= 0)
				close(fd);
			lyr_ref_release(s, ref);
			return r;
		}
		cm_ctx add = {.key = key,
			      .klen = klen,
			      .add = ref,
			      .only_if_empty = req->sharing != LYR_CACHE_PRIVATE};
		r = txn_run(s, cm_txn, &add);
		free(add.refs);
		if (r >= 0 && !add.added) {
			/* another run listed the first ref meanwhile: use that one */
			close(fd);
			lyr_ref_release(s, ref);
			continue;
		}
		if (r >= 0 && req->sharing == LYR_CACHE_SHARED)
			r = do_flock(fd, LOCK_SH);
		if (r < 0) {
			close(fd);
			lyr_ref_release(s, ref);
			return r;
		}
		return hold_new(s, ref, fd, true, ret);
	}
	db_seterr("cache mount '%s': its refs kept vanishing; giving up", req->id);
	return -EAGAIN;
}

static int req_cmp(const lyr_cache_req *a, const lyr_cache_req *b)
{
	int c = strcmp(a->id, b->id);
	return c ? c : strcmp(a->source ? a->source : "", b->source ? b->source : "");
}

int lyr_cache_acquire(lyr_store *s, const lyr_cache_req *reqs, size_t n, lyr_cache_hold **ret)
{
	_cleanup_free_ size_t *order = malloc((n ? n : 1) * sizeof *order);
	lyr_cache_hold **holds = calloc(n ? n : 1, sizeof *holds);
	if (!order || !holds) {
		free(holds);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = i;
	/* insertion sort: a run has a handful of cache mounts */
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && req_cmp(&reqs[order[j - 1]], &reqs[order[j]]) > 0;
		     j--) {
			size_t t = order[j];
			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	int r = 0;
	for (size_t k = 0; k < n && r >= 0; k++) {
		size_t i = order[k];
		/* one run mounting one cache twice uses one hold (flock would not conflict) */
		if (k > 0 && req_cmp(&reqs[order[k - 1]], &reqs[i]) == 0) {
			holds[i] = holds[order[k - 1]];
			holds[i]->users++;
			continue;
		}
		r = acquire_one(s, &reqs[i], &holds[i]);
	}
	if (r < 0) {
		for (size_t i = 0; i < n; i++)
			lyr_cache_release(s, holds[i]);
		free(holds);
		return r;
	}
	memcpy(ret, holds, n * sizeof *holds);
	free(holds);
	return 0;
}

int lyr_cache_hold_adopt(lyr_store *s, const char *ref_id, lyr_cache_hold **ret)
{
	int fd = lock_file(s, ref_id, "exec.lock");
	if (fd < 0)
		return fd;
	return hold_new(s, ref_id, fd, false, ret);
}

const char *lyr_cache_hold_ref(const lyr_cache_hold *h)
{
	return h->ref;
}

const char *lyr_cache_hold_mountpoint(const lyr_cache_hold *h)
{
	return h->mountpoint;
}

int lyr_cache_hold_mount_lock(lyr_store *s, lyr_cache_hold *h)
{
	if (h->mntfd >= 0)
		return 0;
	int fd = lock_file(s, h->ref, "mnt.lock");
	if (fd < 0)
		return fd;
	int r = do_flock(fd, LOCK_EX);
	if (r < 0) {
		close(fd);
		return r;
	}
	h->mntfd = fd;
	return 0;
}

void lyr_cache_hold_mount_unlock(lyr_cache_hold *h)
{
	if (h->mntfd >= 0)
		close(h->mntfd);
	h->mntfd = -1;
}

int lyr_cache_hold_last(lyr_cache_hold *h)
{
	/* flock converts by dropping and re-taking: losing the shared lock is what we want */
	int r = do_flock(h->lockfd, LOCK_EX | LOCK_NB);
	if (r == -EWOULDBLOCK)
		return 0;
	return r < 0 ? r : 1;
}

void lyr_cache_release(lyr_store *s, lyr_cache_hold *h)
{
	(void)s;
	if (!h)
		return;
	if (--h->users > 0)
		return;
	hold_free(h);
}
