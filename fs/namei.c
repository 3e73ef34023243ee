/* Lookup of names in merged directories, and the paths redirects record.  The layer rules are
 * lyr_stack_lookup's; this file ties their results to inodes and entry replies. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ovl.h"
#include "stack/stack_private.h"

int ovl_check_name(const char *name, bool creating)
{
	size_t len = strlen(name);
	if (len > OVL_NAME_MAX)
		return -ENAMETOOLONG;
	if (len == 0 || strchr(name, '/'))
		return -EINVAL;
	if (lyr_stack_is_marker_name(name))
		return creating ? -EINVAL : -ENOENT;
	return 0;
}

int ovl_lookup_node(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
		    lyr_stack_node *ret)
{
	return lyr_stack_lookup(fs->stack, &parent->node, name, ret);
}

void ovl_fill_entry(struct ovl_fs *fs, struct ovl_inode *in, const struct stat *st,
		    struct fuse_entry_param *e)
{
	memset(e, 0, sizeof(*e));
	e->ino = ovl_inode_id(fs, in);
	e->attr = *st;
	e->attr_timeout = fs->timeout;
	e->entry_timeout = fs->timeout;
}

int ovl_lookup(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
	       struct fuse_entry_param *e)
{
	int r = ovl_check_name(name, false);
	if (r < 0)
		return r;
	lyr_stack_node node;
	pthread_rwlock_rdlock(&parent->lock);
	/* most lookups are for a stat (readdirplus, find, ls -l): a plain file is not opened
	 * until something needs its fd (ovl_inode_rdlock opens it by name then); with
	 * xattr_permissions every stat reads an xattr of it, so it is opened at once */
	r = fs->override_xattr ? ovl_lookup_node(fs, parent, name, &node)
			       : lyr_stack_lookup_lazy(fs->stack, &parent->node, name, &node);
	pthread_rwlock_unlock(&parent->lock);
	if (r == -EIO)
		ovl_log("'%s': a metacopy file whose data is missing in the layers below", name);
	if (r < 0)
		return r;
	int indexed = ovl_index_lookup(fs, &node);
	if (indexed < 0) {
		lyr_stack_node_clear(&node);
		return indexed;
	}
	struct ovl_inode *in;
	struct stat known = node.st;
	r = ovl_inode_get(fs, parent, name, &node, true, &in);
	if (r < 0) {
		lyr_stack_node_clear(&node);
		return r;
	}
	if (indexed) {
		pthread_rwlock_wrlock(&in->lock);
		in->indexed = true;
		pthread_rwlock_unlock(&in->lock);
	}
	struct stat st;
	r = ovl_getattr_known(fs, in, &known, &st);
	if (r < 0) {
		ovl_inode_forget(fs, in, 1);
		return r;
	}
	ovl_fill_entry(fs, in, &st, e);
	ovl_inode_evict(fs);
	return 0;
}

#define INDEX_NLINK "layerfs.nlink"

static void index_name(uint64_t ino, char name[24])
{
	snprintf(name, 24, "%llu", (unsigned long long)ino);
}

int ovl_index_lookup(struct ovl_fs *fs, lyr_stack_node *node)
{
	if (fs->index_fd < 0 || node->layer < fs->first_lower || !S_ISREG(node->st.st_mode) ||
	    node->st.st_nlink < 2 || !atomic_load_explicit(&fs->index_used, memory_order_acquire))
		return 0;
	char name[24];
	index_name(node->ino, name);
	int fd = openat(fs->index_fd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	lyr_stack_node n;
	memset(&n, 0, sizeof(n));
	n.fd = fd;
	n.data_fd = -1;
	n.layer = 0;
	n.ino = node->ino;
	if (fstatat(fd, "", &n.st, AT_EMPTY_PATH) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	if (lyr_stack_is_metacopy(fd) == 1) {
		/* the data is where the redirect of the copy says */
		char redirect[4096];
		ssize_t rl = lyr_stack_xattr_get(fd, LYR_OVL_REDIRECT, redirect, sizeof(redirect));
		lyr_stack_node d;
		int r = rl > 0 && (size_t)rl < sizeof(redirect)
			    ? lyr_stack_resolve(fs->stack, fs->first_lower, redirect, &d)
			    : -EIO;
		if (r < 0 || !S_ISREG(d.st.st_mode)) {
			if (r == 0)
				lyr_stack_node_clear(&d);
			close(fd);
			return r < 0 ? r : -EIO;
		}
		n.metacopy = true;
		n.data_layer = d.data_fd >= 0 ? d.data_layer : d.layer;
		n.data_fd = d.data_fd >= 0 ? LYR_TAKE_FD(d.data_fd) : LYR_TAKE_FD(d.fd);
		n.st.st_blocks = d.st.st_blocks;
		lyr_stack_node_clear(&d);
	}
	n.lower_path = node->lower_path;
	node->lower_path = NULL;
	lyr_stack_node_clear(node);
	*node = n;
	return 1;
}

void ovl_index_nlink_add(struct ovl_fs *fs, struct ovl_inode *in, int delta)
{
	if (!in->indexed || in->node.fd < 0)
		return;
	char v[32];
	ssize_t n = lyr_stack_xattr_get(in->node.fd, INDEX_NLINK, v, sizeof(v));
	long cur = n > 0 ? strtol(v, NULL, 10) : 1;
	cur += delta;
	if (cur < 0)
		cur = 0;
	int len = snprintf(v, sizeof(v), "%ld", cur);
	ovl_set_private_xattr(fs, in->node.fd, INDEX_NLINK, v, (size_t)len);
}

int ovl_lower_has(struct ovl_fs *fs, struct ovl_inode *parent, const char *name)
{
	if (!fs->has_upper)
		return 1;
	lyr_stack_node n;
	int r = lyr_stack_lookup_from(fs->stack, &parent->node, 1, name, &n);
	if (r == -ENOENT)
		return 0;
	if (r < 0)
		return r == -EIO ? 1 : r;
	lyr_stack_node_clear(&n);
	return 1;
}

int ovl_lower_path(struct ovl_fs *fs, struct ovl_inode *in, char **ret)
{
	if (in == fs->root) {
		*ret = strdup("");
		return *ret ? 0 : -ENOMEM;
	}
	char redirect[4096] = "";
	int r = ovl_inode_rdlock(fs, in);
	if (r < 0)
		return r;
	struct ovl_inode *parent = in->parent;
	char *name = in->name ? strdup(in->name) : NULL;
	if (parent)
		ovl_inode_ref(fs, parent);
	if (fs->has_upper && in->node.layer == 0 &&
	    (lyr_stack_marks(in->node.fd) & LYR_MARK_REDIRECT)) {
		ssize_t n =
		    lyr_stack_xattr_get(in->node.fd, LYR_OVL_REDIRECT, redirect, sizeof(redirect));
		if (n <= 0 || (size_t)n >= sizeof(redirect))
			redirect[0] = '\0';
	}
	pthread_rwlock_unlock(&in->lock);
	if (redirect[0] == '/') {
		*ret = strdup(redirect);
		r = *ret ? 0 : -ENOMEM;
		goto out;
	}
	if (!parent || !name) {
		r = -ENOENT;
		goto out;
	}
	char *pp;
	r = ovl_lower_path(fs, parent, &pp);
	if (r < 0)
		goto out;
	r = asprintf(ret, "%s/%s", pp, redirect[0] ? redirect : name) < 0 ? -ENOMEM : 0;
	free(pp);
out:
	free(name);
	if (parent)
		ovl_inode_unref(fs, parent);
	return r;
}
