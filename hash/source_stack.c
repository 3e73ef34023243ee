/* A content-hash source over a layer stack (include/layerfs/stack.h): the merged view of
 * layers, topmost first, with whiteouts, opaque directories, redirects and metacopy files
 * resolved by the stack module, so the hash sees exactly what a mount of the stack shows.
 * Overlay markers stay private: xattrs named trusted.overlay.* and user.overlay.* are neither
 * listed nor readable through this source.  Entry handles are heap copies of stack nodes; a
 * metacopy file's content is read from its data copy.
 *
 * Caching: an entry whose topmost copy lives in layer L is a function of layers L..end only (a
 * layer above that changed it would hold the topmost copy itself), and a layer ID is a chain ID
 * covering every layer below it, so the key "<ID of L>:<path in the view of L..end>" is sound.
 * Layers given without an ID (a mutable upper) make their entries uncacheable. */
#include <fcntl.h>
#include <string.h>
#include <sys/xattr.h>

#include "layerfs/hash.h"
#include "layerfs/stack.h"

struct lyr_hash_ent {
	lyr_stack_node node;
};

typedef struct stack_source {
	const lyr_stack *s;
	char **ids; /* per layer, NULL when not cacheable; the array may be NULL */
	size_t n;
} stack_source;

static int ent_take(lyr_stack_node *node, lyr_hash_ent **ret, struct stat *st)
{
	lyr_hash_ent *e = malloc(sizeof *e);
	if (!e) {
		lyr_stack_node_clear(node);
		return -ENOMEM;
	}
	e->node = *node;
	*st = e->node.st;
	*ret = e;
	return 0;
}

static int ss_root(void *ctx, lyr_hash_ent **ret, struct stat *st)
{
	stack_source *ss = ctx;
	lyr_stack_node node;
	int r = lyr_stack_root(ss->s, 0, &node);
	return r < 0 ? r : ent_take(&node, ret, st);
}

static int ss_lookup(void *ctx, lyr_hash_ent *dir, const char *name, lyr_hash_ent **ret,
		     struct stat *st)
{
	stack_source *ss = ctx;
	lyr_stack_node node;
	int r = lyr_stack_lookup(ss->s, &dir->node, name, &node);
	if (r == -ENOTDIR)
		r = -ENOENT;
	return r < 0 ? r : ent_take(&node, ret, st);
}

static int ss_list(void *ctx, lyr_hash_ent *dir, int (*fn)(void *arg, const char *name), void *arg)
{
	stack_source *ss = ctx;
	lyr_stack_list l = {0};
	int r = lyr_stack_list_dir(ss->s, &dir->node, &l);
	for (size_t i = 0; r >= 0 && i < l.n; i++)
		r = fn(arg, l.entries[i].name);
	lyr_stack_list_clear(&l);
	return r;
}

static ssize_t ss_readlink(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	(void)ctx;
	ssize_t n = readlinkat(ent->node.fd, "", buf, size);
	return n < 0 ? -errno : n;
}

static bool private_xattr(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0;
}

static ssize_t ss_listxattr(void *ctx, lyr_hash_ent *ent, char *buf, size_t size)
{
	(void)ctx;
	char p[40];
	snprintf(p, sizeof p, "/proc/self/fd/%d", ent->node.fd);
	/* Read the full list, then hand out only the public names. */
	for (;;) {
		ssize_t n = listxattr(p, NULL, 0);
		if (n <= 0)
			return n < 0 ? -errno : 0;
		_cleanup_free_ char *all = malloc((size_t)n);
		if (!all)
			return -ENOMEM;
		ssize_t got = listxattr(p, all, (size_t)n);
		if (got < 0 && errno == ERANGE)
			continue;
		if (got < 0)
			return -errno;
		size_t out = 0;
		for (ssize_t off = 0; off < got; off += (ssize_t)strlen(all + off) + 1) {
			size_t len = strlen(all + off) + 1;
			if (private_xattr(all + off))
				continue;
			if (size) {
				if (out + len > size)
					return -ERANGE;
				memcpy(buf + out, all + off, len);
			}
			out += len;
		}
		return (ssize_t)out;
	}
}

static ssize_t ss_getxattr(void *ctx, lyr_hash_ent *ent, const char *name, void *buf, size_t size)
{
	(void)ctx;
	if (private_xattr(name))
		return -ENODATA;
	char p[40];
	snprintf(p, sizeof p, "/proc/self/fd/%d", ent->node.fd);
	ssize_t n = getxattr(p, name, buf, size);
	return n < 0 ? -errno : n;
}

static int ss_open(void *ctx, lyr_hash_ent *ent)
{
	(void)ctx;
	char p[40];
	int fd = ent->node.metacopy && ent->node.data_fd >= 0 ? ent->node.data_fd : ent->node.fd;
	snprintf(p, sizeof p, "/proc/self/fd/%d", fd);
	int r = lyr_open_noatime(AT_FDCWD, p, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	return r < 0 ? -errno : r;
}

static int ss_cache_key(void *ctx, lyr_hash_ent *ent, const char *path, char *buf, size_t size)
{
	stack_source *ss = ctx;
	unsigned l = ent->node.layer;
	if (!ss->ids || l >= ss->n || !ss->ids[l])
		return 0;
	const char *in_layer = ent->node.lower_path ? ent->node.lower_path : path;
	int n = snprintf(buf, size, "%s:%s", ss->ids[l], *in_layer ? in_layer : "/");
	return n < 0 || (size_t)n >= size ? 0 : n;
}

static void ss_release(void *ctx, lyr_hash_ent *ent)
{
	(void)ctx;
	if (!ent)
		return;
	lyr_stack_node_clear(&ent->node);
	free(ent);
}

static const lyr_hash_source_ops stack_ops = {
	.root = ss_root,
	.lookup = ss_lookup,
	.list = ss_list,
	.readlink = ss_readlink,
	.listxattr = ss_listxattr,
	.getxattr = ss_getxattr,
	.open = ss_open,
	.cache_key = ss_cache_key,
	.release = ss_release,
};

int lyr_hash_source_stack(const lyr_stack *s, const char *const *layer_ids,
			  lyr_hash_source *ret)
{
	stack_source *ss = calloc(1, sizeof *ss);
	if (!ss)
		return -ENOMEM;
	ss->s = s;
	ss->n = lyr_stack_layers(s);
	if (layer_ids) {
		ss->ids = calloc(ss->n, sizeof *ss->ids);
		if (!ss->ids) {
			free(ss);
			return -ENOMEM;
		}
		for (size_t i = 0; i < ss->n; i++) {
			if (layer_ids[i] && !(ss->ids[i] = strdup(layer_ids[i]))) {
				for (size_t j = 0; j < i; j++)
					free(ss->ids[j]);
				free(ss->ids);
				free(ss);
				return -ENOMEM;
			}
		}
	}
	ret->ops = &stack_ops;
	ret->ctx = ss;
	return 0;
}

void lyr_hash_source_stack_free(lyr_hash_source *src)
{
	if (!src || !src->ctx)
		return;
	stack_source *ss = src->ctx;
	for (size_t i = 0; ss->ids && i < ss->n; i++)
		free(ss->ids[i]);
	free(ss->ids);
	free(ss);
	src->ctx = NULL;
}
