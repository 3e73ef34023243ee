/* Lookup of names in merged directories, and the paths redirects record.  The layer rules are
 * lyr_stack_lookup's; this file ties their results to inodes and entry replies. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ovl.h"

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
	r = ovl_lookup_node(fs, parent, name, &node);
	pthread_rwlock_unlock(&parent->lock);
	if (r < 0)
		return r;
	struct ovl_inode *in;
	r = ovl_inode_get(fs, parent, name, &node, true, &in);
	if (r < 0) {
		lyr_stack_node_clear(&node);
		return r;
	}
	struct stat st;
	r = ovl_getattr(fs, in, &st);
	if (r < 0) {
		ovl_inode_forget(fs, in, 1);
		return r;
	}
	ovl_fill_entry(fs, in, &st, e);
	return 0;
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
	pthread_rwlock_rdlock(&in->lock);
	struct ovl_inode *parent = in->parent;
	char *name = in->name ? strdup(in->name) : NULL;
	if (parent)
		ovl_inode_ref(fs, parent);
	if (fs->has_upper && in->node.layer == 0) {
		ssize_t n = lyr_stack_xattr_get(in->node.fd, LYR_OVL_REDIRECT, redirect,
						sizeof(redirect));
		if (n <= 0 || (size_t)n >= sizeof(redirect))
			redirect[0] = '\0';
	}
	pthread_rwlock_unlock(&in->lock);
	int r;
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
