/* The inode table: one struct ovl_inode per object of the mount, keyed by the st_ino it shows,
 * split into OVL_SHARDS independently locked hash tables so that lookups and forgets of
 * different objects rarely meet.  An inode lives while the kernel holds lookups on it (nlookup)
 * or the daemon holds references (refs); the root is never freed before unmount. */
#include <errno.h>
#include <stdlib.h>
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
	return 0;
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
	in->node = *node;
	memset(node, 0, sizeof(*node));
	node->fd = node->data_fd = -1;
	return in;
}

static void inode_destroy(struct ovl_fs *fs, struct ovl_inode *in)
{
	struct ovl_inode *parent = in->parent;
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
			/* the number now names another object (an unlinked file's inode number reused
			 * by the upper filesystem): the old inode lives on, unhashed, until forgotten */
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
			 * was copied up through another path); otherwise keep what it has, which may
			 * already be an upper copy of a hard-link partner */
			pthread_rwlock_wrlock(&in->lock);
			int r = 0;
			if (node->layer < in->node.layer && !in->unlinked) {
				lyr_stack_node_clear(&in->node);
				in->node = *node;
				memset(node, 0, sizeof(*node));
				node->fd = node->data_fd = -1;
			} else {
				lyr_stack_node_clear(node);
			}
			if (parent)
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
		/* build outside the shard lock, then look again */
		lyr_stack_node copy;
		int r = lyr_stack_node_dup(node, &copy);
		if (r < 0)
			return r;
		fresh = inode_alloc(&copy);
		if (!fresh) {
			lyr_stack_node_clear(&copy);
			return -ENOMEM;
		}
		if (parent && (r = ovl_inode_set_name(fs, fresh, parent, name)) < 0) {
			inode_destroy(fs, fresh);
			return r;
		}
		lyr_stack_node_clear(node);
		/* NODE is consumed now; the loop re-checks with the fresh inode's key */
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
	if (dead)
		shard_remove(sh, in);
	pthread_mutex_unlock(&sh->lock);
	if (dead)
		inode_destroy(fs, in);
}

void ovl_inode_unref(struct ovl_fs *fs, struct ovl_inode *in) { put(fs, in, 0, 1); }

void ovl_inode_forget(struct ovl_fs *fs, struct ovl_inode *in, uint64_t n) { put(fs, in, n, 0); }

void ovl_table_free(struct ovl_fs *fs)
{
	/* at unmount the kernel has forgotten everything but may not have said so: free all */
	for (size_t s = 0; s < OVL_SHARDS; s++) {
		struct ovl_shard *sh = &fs->shards[s];
		for (size_t i = 0; i < sh->cap; i++) {
			struct ovl_inode *in = sh->buckets[i];
			while (in) {
				struct ovl_inode *next = in->hnext;
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
