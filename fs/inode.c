/* The inode table: one struct ovl_inode per object of the mount, keyed by the st_ino it shows,
 * split into OVL_SHARDS independently locked hash tables so that lookups and forgets of
 * different objects rarely meet.  An inode lives while the kernel holds lookups on it (nlookup)
 * or the daemon holds references (refs); the root is never freed before unmount.
 *
 * fds: the kernel may hold far more inodes than a process may hold fds.  Directories keep their
 * parts' fds (children are looked up through them); a non-directory's O_PATH fd may be closed by
 * the evictor when more than fs->fd_budget are open and it has not been used since the last
 * scan (a clock sweep over the shard lists: no list is touched on the data path), and is
 * reopened through its parent's part of the same layer by ovl_inode_rdlock.  That is only right
 * while the inode's (parent, name) still finds it: an inode whose name is unlinked or replaced
 * is pinned first, and a hard-link partner keeps the name its node was found by. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <string.h>

#include "ovl.h"

static struct ovl_shard *shard_of(struct ovl_fs *fs, uint64_t ino)
{
	uint64_t h = ino * 0x9E3779B97F4A7C15ULL;
	return &fs->shards[(h >> 58) & (OVL_SHARDS - 1)];
}

static size_t bucket_of(const struct ovl_shard *sh, uint64_t ino)
{
	return (size_t)((ino * 0xff51afd7ed558ccdULL) >> 17) & (sh->cap - 1);
}

static int shard_grow(struct ovl_shard *sh)
{
	size_t cap = sh->cap ? sh->cap * 2 : 256;
	struct ovl_inode **b = calloc(cap, sizeof(*b));
	if (!b)
		return -ENOMEM;
	size_t old = sh->cap;
	struct ovl_inode **ob = sh->buckets;
	sh->buckets = b;
	sh->cap = cap;
	for (size_t i = 0; i < old; i++) {
		struct ovl_inode *in = ob[i];
		while (in) {
			struct ovl_inode *next = in->hnext;
			size_t k = bucket_of(sh, in->ino);
			in->hnext = b[k];
			b[k] = in;
			in = next;
		}
	}
	free(ob);
	return 0;
}

static void shard_remove(struct ovl_shard *sh, struct ovl_inode *in)
{
	if (!in->hashed)
		return;
	struct ovl_inode **pp = &sh->buckets[bucket_of(sh, in->ino)];
	while (*pp && *pp != in)
		pp = &(*pp)->hnext;
	if (*pp) {
		*pp = in->hnext;
		sh->n--;
	}
	in->hashed = false;
	in->hnext = NULL;
}

static struct ovl_inode *shard_find(struct ovl_shard *sh, uint64_t ino)
{
	if (!sh->cap)
		return NULL;
	for (struct ovl_inode *in = sh->buckets[bucket_of(sh, ino)]; in; in = in->hnext)
		if (in->ino == ino)
			return in;
	return NULL;
}

static int shard_insert(struct ovl_shard *sh, struct ovl_inode *in)
{
	if ((sh->n + 1) * 4 > sh->cap * 3) {
		int r = shard_grow(sh);
		if (r < 0)
			return r;
	}
	size_t k = bucket_of(sh, in->ino);
	in->hnext = sh->buckets[k];
	sh->buckets[k] = in;
	sh->n++;
	in->hashed = true;
	in->aprev = NULL;
	in->anext = sh->all;
	if (sh->all)
		sh->all->aprev = in;
	sh->all = in;
	return 0;
}

static void shard_unlist(struct ovl_shard *sh, struct ovl_inode *in)
{
	if (in->aprev)
		in->aprev->anext = in->anext;
	else if (sh->all == in)
		sh->all = in->anext;
	if (in->anext)
		in->anext->aprev = in->aprev;
	in->anext = in->aprev = NULL;
}

struct ovl_inode *ovl_inode_from_id(struct ovl_fs *fs, fuse_ino_t id)
{
	return id == FUSE_ROOT_ID ? fs->root : (struct ovl_inode *)(uintptr_t)id;
}

fuse_ino_t ovl_inode_id(struct ovl_fs *fs, struct ovl_inode *in)
{
	return in == fs->root ? FUSE_ROOT_ID : (fuse_ino_t)(uintptr_t)in;
}

static struct ovl_inode *inode_alloc(lyr_stack_node *node)
{
	struct ovl_inode *in = calloc(1, sizeof(*in));
	if (!in)
		return NULL;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	/* recursive: rename holds it while copy-up of the same inode takes it again */
	pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_RECURSIVE);
	pthread_mutex_init(&in->cu_lock, &ma);
	pthread_mutexattr_destroy(&ma);
	pthread_rwlock_init(&in->lock, NULL);
	in->ino = node->ino;
	in->type = node->st.st_mode & S_IFMT;
	atomic_init(&in->used, true);
	in->node = *node;
	memset(node, 0, sizeof(*node));
	node->fd = node->data_fd = -1;
	return in;
}

static long counts_fd(const struct ovl_inode *in);

static void count_new(struct ovl_fs *fs, struct ovl_inode *in)
{
	atomic_fetch_add(&fs->open_fds, counts_fd(in));
}

/* fds a non-directory inode holds (its own, and its data's when a metacopy) */
static long counts_fd(const struct ovl_inode *in)
{
	if (S_ISDIR(in->type))
		return 0;
	return (in->node.fd >= 0) + (in->node.data_fd >= 0 && in->node.data_fd != in->node.fd);
}

static void inode_destroy(struct ovl_fs *fs, struct ovl_inode *in)
{
	struct ovl_inode *parent = in->parent;
	if (counts_fd(in))
		atomic_fetch_sub(&fs->open_fds, counts_fd(in));
	lyr_stack_node_clear(&in->node);
	free(in->name);
	pthread_mutex_destroy(&in->cu_lock);
	pthread_rwlock_destroy(&in->lock);
	free(in);
	if (parent)
		ovl_inode_unref(fs, parent);
}

int ovl_inode_root_new(struct ovl_fs *fs)
{
	lyr_stack_node node;
	int r = lyr_stack_root(fs->stack, 0, &node);
	if (r < 0)
		return r;
	struct ovl_inode *in = inode_alloc(&node);
	if (!in) {
		lyr_stack_node_clear(&node);
		return -ENOMEM;
	}
	count_new(fs, in);
	in->nlookup = 1;
	struct ovl_shard *sh = shard_of(fs, in->ino);
	pthread_mutex_lock(&sh->lock);
	r = shard_insert(sh, in);
	pthread_mutex_unlock(&sh->lock);
	if (r < 0) {
		inode_destroy(fs, in);
		return r;
	}
	fs->root = in;
	return 0;
}

int ovl_inode_set_name(struct ovl_fs *fs, struct ovl_inode *in, struct ovl_inode *parent,
		       const char *name)
{
	if (in == fs->root)
		return 0;
	if (in->parent == parent && in->name && strcmp(in->name, name) == 0)
		return 0;
	char *copy = strdup(name);
	if (!copy)
		return -ENOMEM;
	ovl_inode_ref(fs, parent);
	struct ovl_inode *old = in->parent;
	free(in->name);
	in->name = copy;
	in->parent = parent;
	if (old)
		ovl_inode_unref(fs, old);
	return 0;
}

int ovl_inode_get(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
		  lyr_stack_node *node, bool lookup, struct ovl_inode **ret)
{
	struct ovl_shard *sh = shard_of(fs, node->ino);
	struct ovl_inode *fresh = NULL;
	for (;;) {
		pthread_mutex_lock(&sh->lock);
		struct ovl_inode *in = shard_find(sh, node->ino);
		if (in && (in->type != (node->st.st_mode & S_IFMT) || in->unlinked)) {
			/* the number now names another object (an unlinked file's inode number
			 * reused by the upper filesystem): the old inode lives on, unhashed, until
			 * forgotten */
			shard_remove(sh, in);
			in = NULL;
		}
		if (in) {
			if (lookup)
				in->nlookup++;
			else
				in->refs++;
			pthread_mutex_unlock(&sh->lock);
			/* a copy higher in the stack is newer than what the inode holds (the inode
			 * was copied up through another path); otherwise keep what it has, which
			 * may already be an upper copy of a hard-link partner */
			pthread_rwlock_wrlock(&in->lock);
			int r = 0;
			/* the name follows the node: an inode reopens its fd by the name it has */
			bool same = node->layer == in->node.layer;
			if (node->layer < in->node.layer && !in->unlinked && !in->pinned) {
				ovl_inode_set_node(fs, in, node);
				same = true;
			} else {
				lyr_stack_node_clear(node);
			}
			if (parent && same && !in->pinned)
				r = ovl_inode_set_name(fs, in, parent, name);
			pthread_rwlock_unlock(&in->lock);
			if (fresh)
				inode_destroy(fs, fresh);
			*ret = in;
			return r;
		}
		if (fresh) {
			int r = shard_insert(sh, fresh);
			if (r < 0) {
				pthread_mutex_unlock(&sh->lock);
				inode_destroy(fs, fresh);
				return r;
			}
			if (lookup)
				fresh->nlookup = 1;
			else
				fresh->refs = 1;
			pthread_mutex_unlock(&sh->lock);
			*ret = fresh;
			return 0;
		}
		pthread_mutex_unlock(&sh->lock);
		/* build outside the shard lock, then look again; NODE moves into the fresh inode
		 * (left empty, so a caller's clear after a failure is harmless) */
		fresh = inode_alloc(node);
		if (!fresh)
			return -ENOMEM;
		count_new(fs, fresh);
		int r;
		if (parent && (r = ovl_inode_set_name(fs, fresh, parent, name)) < 0) {
			inode_destroy(fs, fresh);
			return r;
		}
		/* the loop re-checks with the fresh inode's key */
		node = &fresh->node;
	}
}

struct ovl_inode *ovl_inode_find(struct ovl_fs *fs, uint64_t ino)
{
	struct ovl_shard *sh = shard_of(fs, ino);
	pthread_mutex_lock(&sh->lock);
	struct ovl_inode *in = shard_find(sh, ino);
	if (in)
		in->refs++;
	pthread_mutex_unlock(&sh->lock);
	return in;
}

void ovl_inode_ref(struct ovl_fs *fs, struct ovl_inode *in)
{
	struct ovl_shard *sh = shard_of(fs, in->ino);
	pthread_mutex_lock(&sh->lock);
	in->refs++;
	pthread_mutex_unlock(&sh->lock);
}

static void put(struct ovl_fs *fs, struct ovl_inode *in, uint64_t nlookup, uint64_t refs)
{
	struct ovl_shard *sh = shard_of(fs, in->ino);
	pthread_mutex_lock(&sh->lock);
	in->nlookup -= nlookup < in->nlookup ? nlookup : in->nlookup;
	in->refs -= refs < in->refs ? refs : in->refs;
	bool dead = in->nlookup == 0 && in->refs == 0 && in != fs->root;
	if (dead) {
		shard_remove(sh, in);
		shard_unlist(sh, in);
	}
	pthread_mutex_unlock(&sh->lock);
	if (dead)
		inode_destroy(fs, in);
}

void ovl_inode_unref(struct ovl_fs *fs, struct ovl_inode *in)
{
	put(fs, in, 0, 1);
}

void ovl_inode_forget(struct ovl_fs *fs, struct ovl_inode *in, uint64_t n)
{
	put(fs, in, n, 0);
}

void ovl_table_free(struct ovl_fs *fs)
{
	/* at unmount the kernel has forgotten everything but may not have said so: free all */
	for (size_t s = 0; s < OVL_SHARDS; s++) {
		struct ovl_shard *sh = &fs->shards[s];
		{
			struct ovl_inode *in = sh->all;
			while (in) {
				struct ovl_inode *next = in->anext;
				in->parent = NULL; /* every inode is freed here; no unref chains */
				lyr_stack_node_clear(&in->node);
				free(in->name);
				pthread_mutex_destroy(&in->cu_lock);
				pthread_rwlock_destroy(&in->lock);
				free(in);
				in = next;
			}
		}
		free(sh->buckets);
		sh->buckets = NULL;
		sh->cap = sh->n = 0;
	}
	fs->root = NULL;
}

void ovl_inode_set_node(struct ovl_fs *fs, struct ovl_inode *in, lyr_stack_node *node)
{
	long before = counts_fd(in);
	lyr_stack_node_clear(&in->node);
	in->node = *node;
	memset(node, 0, sizeof(*node));
	node->fd = node->data_fd = -1;
	long after = counts_fd(in);
	if (after != before)
		atomic_fetch_add(&fs->open_fds, after - before);
}

/* O_PATH fd of NAME in PARENT's part of layer LAYER; the caller holds PARENT's lock. */
static int open_in_parent(struct ovl_inode *parent, unsigned layer, const char *name)
{
	for (unsigned i = 0; i < parent->node.nparts; i++)
		if (parent->node.parts[i].layer == layer) {
			int fd =
			    openat(parent->node.parts[i].fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
			return fd < 0 ? -errno : fd;
		}
	return -ESTALE;
}

int ovl_inode_pin(struct ovl_fs *fs, struct ovl_inode *in)
{
	if (S_ISDIR(in->type) || in->pinned)
		return 0;
	if (in->node.fd < 0) {
		if (!in->parent || !in->name)
			return -ESTALE;
		int fd = open_in_parent(in->parent, in->node.layer, in->name);
		if (fd < 0)
			return fd;
		in->node.fd = fd;
		atomic_fetch_add(&fs->open_fds, 1);
	}
	in->pinned = true;
	return 0;
}

int ovl_inode_rdlock(struct ovl_fs *fs, struct ovl_inode *in)
{
	for (int tries = 0;; tries++) {
		pthread_rwlock_rdlock(&in->lock);
		if (in->node.fd >= 0) {
			atomic_store_explicit(&in->used, true, memory_order_relaxed);
			return 0;
		}
		struct ovl_inode *parent = in->parent;
		char *name = in->name ? strdup(in->name) : NULL;
		unsigned layer = in->node.layer;
		struct stat want = in->node.st;
		/* a plain file is reopened by its name in its own layer's part of the parent; a
		 * metacopy (whose data must be found as well) and an index copy (which a lookup
		 * finds through a lower name) are looked up again */
		bool direct = !in->node.metacopy && !in->indexed;
		if (parent)
			ovl_inode_ref(fs, parent);
		pthread_rwlock_unlock(&in->lock);
		int fd = -ESTALE;
		lyr_stack_node fresh;
		if (parent && name && direct) {
			pthread_rwlock_rdlock(&parent->lock);
			int pfd = open_in_parent(parent, layer, name);
			pthread_rwlock_unlock(&parent->lock);
			/* a lower layer never changes: its name still holds the object; an
			 * upper name may have been given to another */
			struct stat st = want;
			if (pfd >= 0 &&
			    (layer >= fs->first_lower ||
			     (fstatat(pfd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
			      st.st_ino == want.st_ino && st.st_dev == want.st_dev))) {
				memset(&fresh, 0, sizeof(fresh));
				fresh.fd = pfd;
				fresh.data_fd = -1;
				fresh.layer = layer;
				fresh.st = st;
				fd = 0;
			} else if (pfd >= 0) {
				close(pfd);
			}
		}
		if (fd < 0 && parent && name) {
			pthread_rwlock_rdlock(&parent->lock);
			fd = lyr_stack_lookup(fs->stack, &parent->node, name, &fresh);
			pthread_rwlock_unlock(&parent->lock);
			if (fd == 0) {
				int ir = ovl_index_lookup(fs, &fresh);
				if (ir < 0) {
					lyr_stack_node_clear(&fresh);
					fd = ir;
				}
			}
		}
		if (fd == 0 && (fresh.layer != layer || fresh.st.st_ino != want.st_ino ||
				fresh.st.st_dev != want.st_dev)) {
			lyr_stack_node_clear(&fresh);
			fd = -ESTALE; /* the name finds another object now */
		}
		pthread_rwlock_wrlock(&in->lock);
		if (fd == 0 && in->node.fd < 0 && in->parent == parent && in->name && name &&
		    strcmp(in->name, name) == 0) {
			long before = counts_fd(in);
			in->node.fd = LYR_TAKE_FD(fresh.fd);
			if (in->node.data_fd < 0 && fresh.data_fd >= 0)
				in->node.data_fd = LYR_TAKE_FD(fresh.data_fd);
			atomic_store(&in->used, true);
			atomic_fetch_add(&fs->open_fds, counts_fd(in) - before);
		}
		bool ok = in->node.fd >= 0;
		pthread_rwlock_unlock(&in->lock);
		if (fd == 0)
			lyr_stack_node_clear(&fresh);
		free(name);
		if (parent)
			ovl_inode_unref(fs, parent);
		if (!ok && tries >= 4)
			return fd < 0 ? fd : -ESTALE;
		/* a reopen adds an fd: make room among the idle ones */
		ovl_inode_evict(fs);
	}
}

/* Closes fds of idle non-directory inodes until the count is well under the budget.  Called
 * with no lock held; gives up rather than waits (trylocks only). */
void ovl_inode_evict(struct ovl_fs *fs)
{
	if (atomic_load(&fs->open_fds) <= fs->fd_budget || pthread_mutex_trylock(&fs->evict_lock))
		return;
	long target = fs->fd_budget * 3 / 4;
	for (size_t pass = 0; pass < 2 * OVL_SHARDS && atomic_load(&fs->open_fds) > target;
	     pass++) {
		struct ovl_shard *sh = &fs->shards[fs->evict_shard];
		fs->evict_shard = (fs->evict_shard + 1) % OVL_SHARDS;
		pthread_mutex_lock(&sh->lock);
		for (struct ovl_inode *in = sh->all; in && atomic_load(&fs->open_fds) > target;
		     in = in->anext) {
			if (S_ISDIR(in->type) || in->pinned || in->unlinked || in->node.fd < 0 ||
			    !in->parent)
				continue;
			if (atomic_exchange(&in->used, false))
				continue; /* second chance */
			if (pthread_rwlock_trywrlock(&in->lock))
				continue;
			if (in->node.fd >= 0 && !in->pinned && !in->unlinked) {
				long n = counts_fd(in);
				if (in->node.data_fd >= 0 && in->node.data_fd != in->node.fd)
					close(in->node.data_fd);
				close(in->node.fd);
				in->node.fd = in->node.data_fd = -1;
				atomic_fetch_sub(&fs->open_fds, n);
			}
			pthread_rwlock_unlock(&in->lock);
		}
		pthread_mutex_unlock(&sh->lock);
	}
	pthread_mutex_unlock(&fs->evict_lock);
}
