/* Namespace changes: create (files, directories, nodes, symlinks, hard links), unlink, rmdir and
 * rename.  Everything changes the upper layer only: a name that the lower layers hold is removed
 * by a whiteout (a 0/0 character device), a directory created over a whiteout is made opaque, and
 * a directory with lower parts that moves gets an absolute overlay.redirect to where its lower
 * parts are, so renaming a lower directory copies no data and never fails with EXDEV.  Whatever
 * the lower layers hold at the name a directory moves to stays hidden: a directory of the upper
 * only is made opaque there, and a redirect replaces the name for the layers below.  A lower
 * file that is renamed or linked gets a metadata-only copy-up (see copy_up.c); one that is
 * unlinked gets only a whiteout.
 *
 * Locking: cu_locks of the objects involved first (an object being copied up cannot move), then
 * the parent directories' rwlocks exclusively (address order when two), then the children's. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ovl.h"

/* 1 when DIRFD holds a whiteout at NAME, 0 when nothing, -EEXIST when something else. */
static int upper_slot(int dirfd, const char *name)
{
	struct stat st;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : -errno;
	return lyr_stack_is_whiteout(&st) ? 1 : -EEXIST;
}

static int set_opaque(struct ovl_fs *fs, int fd)
{
	return ovl_set_private_xattr(fs, fd, LYR_OVL_OPAQUE, "y", 1);
}

static void lock_pair(struct ovl_inode *a, struct ovl_inode *b)
{
	if (a == b) {
		pthread_rwlock_wrlock(&a->lock);
		return;
	}
	if ((uintptr_t)a > (uintptr_t)b) {
		struct ovl_inode *t = a;
		a = b;
		b = t;
	}
	pthread_rwlock_wrlock(&a->lock);
	pthread_rwlock_wrlock(&b->lock);
}

static void unlock_pair(struct ovl_inode *a, struct ovl_inode *b)
{
	pthread_rwlock_unlock(&a->lock);
	if (a != b)
		pthread_rwlock_unlock(&b->lock);
}

static int make_object(struct ovl_fs *fs, int dirfd, const char *name,
		       const struct ovl_create_args *a, int link_fd, int *ret_fd)
{
	mode_t perm = a->mode & 07777;
	switch (a->mode & S_IFMT) {
	case S_IFDIR:
		return mkdirat(dirfd, name, perm) < 0 ? -errno : 0;
	case S_IFLNK:
		return symlinkat(a->link, dirfd, name) < 0 ? -errno : 0;
	case S_IFREG:
		if (a->link_src) {
			char proc[64];
			ovl_proc_path(link_fd, proc);
			return linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) < 0 ? -errno
											  : 0;
		}
		if (a->open_flags >= 0) {
			int fd =
			    openat(dirfd, name,
				   (a->open_flags & ~O_TRUNC) | O_CREAT | O_EXCL | O_CLOEXEC, perm);
			if (fd < 0)
				return -errno;
			*ret_fd = fd;
			return 0;
		}
		/* fallthrough */
	default:
		(void)fs;
		return mknodat(dirfd, name, a->mode, a->rdev) < 0 ? -errno : 0;
	}
}

/* Gives a new object the caller's ownership: OBJ in DIRFD, or the file open at DIRFD when OBJ is
 * NULL.  The group is the parent's when the parent (attributes PST) is set-group-ID. */
static int set_owner(struct ovl_fs *fs, const struct stat *pst, const struct ovl_create_args *a,
		     int dirfd, const char *obj)
{
	gid_t gid = (pst->st_mode & S_ISGID) ? pst->st_gid : a->gid;
	/* what the upper's filesystem gave it already (the daemon's ids, or the set-group-ID
	 * parent's group, by the same rule) */
	if (a->uid == fs->uid && gid == ((pst->st_mode & S_ISGID) ? pst->st_gid : fs->gid))
		return 0;
	int r = obj ? fchownat(dirfd, obj, a->uid, gid, AT_SYMLINK_NOFOLLOW)
		    : fchown(dirfd, a->uid, gid);
	if (r < 0 && (fs->privileged || errno != EPERM))
		return -errno;
	/* chown drops set-id bits of non-directories; put back what was asked for */
	if ((a->mode & 06000) && !S_ISDIR(a->mode) && !S_ISLNK(a->mode) &&
	    (obj ? fchmodat(dirfd, obj, a->mode & 07777, 0) : fchmod(dirfd, a->mode & 07777)) < 0)
		return -errno;
	return 0;
}

static int prepare_move(struct ovl_fs *fs, struct ovl_inode *in, const char *name, bool samedir);

int ovl_create(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
	       const struct ovl_create_args *asked, struct fuse_entry_param *e, int *ret_fd)
{
	/* what is made: the mode asked for, limited by the umask or by the parent's default ACL */
	struct ovl_create_args made = *asked;
	const struct ovl_create_args *a = &made;
	_cleanup_(ovl_acl_new_clear) struct ovl_acl_new acl = {0};
	int r = ovl_check_name(name, true);
	if (r < 0)
		return r;
	if (S_ISCHR(a->mode) && a->rdev == 0)
		return -EPERM; /* would be a whiteout */
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	_cleanup_close_ int link_fd = -1;
	if (a->link_src) {
		if (S_ISDIR(a->link_src->type))
			return -EPERM;
		/* a metacopy's new name is elsewhere: it needs a redirect to its data */
		if ((r = prepare_move(fs, a->link_src, NULL, false)) < 0)
			return r;
		/* an fd of our own: the parent is locked below, the source's parent may be the same
		 */
		if ((r = ovl_inode_rdlock(fs, a->link_src)) < 0)
			return r;
		link_fd = fcntl(a->link_src->node.fd, F_DUPFD_CLOEXEC, 3);
		pthread_rwlock_unlock(&a->link_src->lock);
		if (link_fd < 0)
			return -errno;
	}
	if ((r = ovl_copy_up_dir(fs, parent)) < 0)
		return r;

	int fd = -1;
	char tmp[32] = "";
	bool is_link = a->link_src != NULL;
	struct ovl_wscope ws = {0};
	lyr_stack_node node;
	pthread_rwlock_wrlock(&parent->lock);
	/* the parent has an upper part (copied up above): anything there decides; else the
	 * layers below, unless the upper's marker hides them */
	int upper = parent->node.parts[0].fd;
	int wh = upper_slot(upper, name);
	if ((r = wh) < 0)
		goto unlock;
	/* an OCI/AUFS ".wh.NAME" in an upper another overlay wrote hides the name as a whiteout
	 * device does: a directory made there must be opaque too, or the lower copy it hides would
	 * merge with it once the marker is no longer looked at (a name found in the upper is) */
	bool marked =
	    !wh && parent->node.nparts > 1 && lyr_stack_aufs_whiteout(fs->stack, 0, upper, name);
	if (!wh && !marked && parent->node.nparts > 1) {
		int lower = ovl_lower_has(fs, parent, name);
		if ((r = lower < 0 ? lower : lower ? -EEXIST : 0) < 0)
			goto unlock;
	}
	bool opaque = S_ISDIR(a->mode) && (wh || marked);
	/* what replaces a whiteout, or is made opaque, is built in the work dir and moved in
	 * complete */
	bool in_work = wh || opaque;
	if (!is_link) {
		if ((r = ovl_acl_prepare(fs, parent, upper, asked->mode, asked->umask, &acl)) < 0)
			goto unlock;
		made.mode = (asked->mode & S_IFMT) | acl.mode;
	}
	ovl_writable_add(fs, &ws, upper);
	int dirfd = upper;
	const char *obj = name;
	if (in_work) {
		ovl_tmp_name(fs, tmp);
		dirfd = fs->work_fd;
		obj = tmp;
	}
	if ((r = make_object(fs, dirfd, obj, a, link_fd, &fd)) < 0) {
		tmp[0] = '\0';
		goto unlock;
	}
	if (!is_link && (r = set_owner(fs, &parent->node.st, a, dirfd, obj)) < 0)
		goto undo;
	/* made in the work dir, the object inherited nothing: ACLs are set either way */
	if (!is_link && acl.parent_default) {
		_cleanup_close_ int ofd = openat(dirfd, obj, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (ofd < 0 || (r = ovl_acl_apply(fs, ofd, &acl)) < 0) {
			r = ofd < 0 ? -errno : r;
			goto undo;
		}
	}
	if (is_link && a->link_src->unlinked) {
		/* an O_TMPFILE file getting its first name (the kernel links no other unlinked
		 * file): from now on it is found by that name like any other */
		pthread_rwlock_wrlock(&a->link_src->lock);
		a->link_src->unlinked = false;
		a->link_src->linkable = false;
		a->link_src->pinned = false;
		r = ovl_inode_set_name(fs, a->link_src, parent, name);
		pthread_rwlock_unlock(&a->link_src->lock);
		if (r < 0)
			goto undo;
	}
	/* a new directory beside lower ones is marked opaque as kernel overlayfs marks it (with
	 * redirect_dir or metacopy on), so a change commits to the same layer from either.
	 * Nothing is below its name: a crash before the marker changes nothing shown. */
	if (!in_work && S_ISDIR(a->mode) && parent->node.nparts > 1) {
		_cleanup_close_ int dfd = openat(dirfd, obj, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || set_opaque(fs, dfd) < 0) {
			r = dfd < 0 ? -errno : -EIO;
			goto undo;
		}
	}
	if (in_work) {
		if (opaque) {
			_cleanup_close_ int dfd =
			    openat(dirfd, obj, O_PATH | O_DIRECTORY | O_CLOEXEC);
			if (dfd < 0 || set_opaque(fs, dfd) < 0) {
				r = dfd < 0 ? -errno : -EIO;
				goto undo;
			}
		}
		if (wh && S_ISDIR(a->mode)) {
			/* a directory cannot replace a device: swap them, then drop the whiteout */
			if (renameat2(fs->work_fd, tmp, upper, name, RENAME_EXCHANGE) < 0) {
				r = -errno;
				goto undo;
			}
			unlinkat(fs->work_fd, tmp, 0);
		} else if (renameat(fs->work_fd, tmp, upper, name) < 0) {
			r = -errno;
			goto undo;
		}
		tmp[0] = '\0';
	}
	/* a new object in the upper has nothing below it; a new name of an existing object is
	 * that object, found as a lookup finds it (an index copy, say) */
	r = is_link ? ovl_lookup_node(fs, parent, name, &node)
		    : lyr_stack_node_made(fs->stack, &parent->node, name, &node);
	ovl_writable_end(&ws);
	/* the parent's own attributes (mtime, nlink) come from its topmost part: refresh it */
	fstatat(parent->node.fd, "", &parent->node.st, AT_EMPTY_PATH);
	pthread_rwlock_unlock(&parent->lock);
	if (r < 0)
		goto fail;
	struct ovl_inode *in;
	struct stat known = node.st;
	if ((r = ovl_inode_get(fs, parent, name, &node, true, &in)) < 0) {
		lyr_stack_node_clear(&node);
		goto fail;
	}
	if (is_link && in->indexed) {
		pthread_rwlock_wrlock(&in->lock);
		ovl_index_nlink_add(fs, in, +1);
		pthread_rwlock_unlock(&in->lock);
	}
	struct stat st;
	if ((r = is_link ? ovl_getattr(fs, in, &st) : ovl_getattr_known(fs, in, &known, &st)) < 0) {
		ovl_inode_forget(fs, in, 1);
		goto fail;
	}
	ovl_fill_entry(fs, in, &st, e);
	/* a new inode holds an fd: make room among the idle ones, as lookup does (an untar
	 * creates far more files than the fd limit allows open) */
	ovl_inode_evict(fs);
	if (ret_fd)
		*ret_fd = fd;
	else if (fd >= 0)
		close(fd);
	return 0;
undo:
	if (S_ISDIR(a->mode))
		unlinkat(dirfd, obj, AT_REMOVEDIR);
	else
		unlinkat(dirfd, obj, 0);
	tmp[0] = '\0';
unlock:
	ovl_writable_end(&ws);
	pthread_rwlock_unlock(&parent->lock);
fail:
	if (tmp[0])
		unlinkat(fs->work_fd, tmp, 0);
	if (fd >= 0)
		close(fd);
	return r;
}

int ovl_tmpfile(struct ovl_fs *fs, struct ovl_inode *parent, const struct ovl_create_args *a,
		struct fuse_entry_param *e, int *ret_fd)
{
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	if (!S_ISDIR(parent->type))
		return -ENOTDIR;
	/* the file lives in the work dir, on the upper's filesystem, so that a link gives it a
	 * name in the upper; made linkable (no O_EXCL): the kernel refuses links itself when the
	 * caller asked for O_EXCL */
	_cleanup_(ovl_acl_new_clear) struct ovl_acl_new acl = {0};
	pthread_rwlock_rdlock(&parent->lock);
	struct stat pst = parent->node.st;
	int r = ovl_acl_prepare(fs, parent, parent->node.fd, a->mode, a->umask, &acl);
	pthread_rwlock_unlock(&parent->lock);
	if (r < 0)
		return r;
	struct ovl_create_args made = *a;
	made.mode = (a->mode & S_IFMT) | acl.mode;
	int keep = O_ACCMODE | O_APPEND | O_NONBLOCK | O_DSYNC | O_SYNC | O_NOATIME;
	_cleanup_close_ int fd = openat(
	    fs->work_fd, ".", (a->open_flags & keep) | O_TMPFILE | O_CLOEXEC, made.mode & 07777);
	if (fd < 0)
		return errno == EISDIR ? -EOPNOTSUPP : -errno;
	if ((r = set_owner(fs, &pst, &made, fd, NULL)) < 0)
		return r;
	/* the work dir gives it nothing: the parent's default ACL is set here */
	if (acl.parent_default && (r = ovl_acl_apply(fs, fd, &acl)) < 0)
		return r;
	lyr_stack_node node;
	memset(&node, 0, sizeof(node));
	node.data_fd = -1;
	node.fd = ovl_reopen(fd, O_PATH);
	if (node.fd < 0)
		return node.fd;
	if (fstat(node.fd, &node.st) < 0) {
		r = -errno;
		close(node.fd);
		return r;
	}
	node.ino = lyr_stack_ino(fs->stack, node.st.st_dev, node.st.st_ino, 0);
	struct ovl_inode *in;
	if ((r = ovl_inode_get(fs, NULL, NULL, &node, true, &in)) < 0) {
		lyr_stack_node_clear(&node);
		return r;
	}
	/* no name finds it: it keeps its fd, and shows st_nlink 0 until linked */
	pthread_rwlock_wrlock(&in->lock);
	in->unlinked = true;
	in->linkable = true;
	in->pinned = true;
	pthread_rwlock_unlock(&in->lock);
	struct stat st;
	if ((r = ovl_getattr(fs, in, &st)) < 0) {
		ovl_inode_forget(fs, in, 1);
		return r;
	}
	ovl_fill_entry(fs, in, &st, e);
	*ret_fd = LYR_TAKE_FD(fd);
	return 0;
}

/* Moves NAME out of DIRFD into the work dir, leaving a whiteout when WHITEOUT, and removes it. */
static int remove_upper(struct ovl_fs *fs, int dirfd, const char *name, bool whiteout, bool dir)
{
	if (!whiteout && !dir)
		return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
	char tmp[32];
	ovl_tmp_name(fs, tmp);
	if (renameat2(dirfd, name, fs->work_fd, tmp, whiteout ? RENAME_WHITEOUT : 0) < 0) {
		if (errno != EINVAL || !whiteout)
			return -errno;
		/* no RENAME_WHITEOUT on this filesystem: move, then whiteout (not atomic) */
		if (renameat(dirfd, name, fs->work_fd, tmp) < 0)
			return -errno;
		int r = ovl_make_whiteout(fs, dirfd, name);
		if (r < 0) {
			renameat(fs->work_fd, tmp, dirfd, name);
			return r;
		}
	}
	return dir ? ovl_remove_tree(fs->work_fd, tmp)
		   : (unlinkat(fs->work_fd, tmp, 0) < 0 ? -errno : 0);
}

static struct ovl_inode *inode_for(struct ovl_fs *fs, struct ovl_inode *parent, const char *name,
				   const lyr_stack_node *node)
{
	struct ovl_inode *in = ovl_inode_find(fs, node->ino);
	if (in)
		return in;
	lyr_stack_node copy;
	if (lyr_stack_node_dup(node, &copy) < 0)
		return NULL;
	if (ovl_inode_get(fs, parent, name, &copy, false, &in) < 0) {
		lyr_stack_node_clear(&copy);
		return NULL;
	}
	return in;
}

static int merged_empty(struct ovl_fs *fs, const lyr_stack_node *dir)
{
	lyr_stack_list l;
	int r = lyr_stack_list_dir(fs->stack, dir, &l);
	if (r < 0)
		return r;
	r = l.n ? -ENOTEMPTY : 0;
	lyr_stack_list_clear(&l);
	return r;
}

int ovl_unlink(struct ovl_fs *fs, struct ovl_inode *parent, const char *name, bool dir)
{
	int r = ovl_check_name(name, false);
	if (r < 0)
		return r;
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	if ((r = ovl_copy_up_dir(fs, parent)) < 0)
		return r;
	lyr_stack_node node;
	pthread_rwlock_rdlock(&parent->lock);
	/* what goes is named, not opened: a plain file needs no fd of its own here */
	r = lyr_stack_lookup_lazy(fs->stack, &parent->node, name, &node);
	pthread_rwlock_unlock(&parent->lock);
	if (r < 0)
		return r;
	if (dir && !S_ISDIR(node.st.st_mode))
		r = -ENOTDIR;
	else if (!dir && S_ISDIR(node.st.st_mode))
		r = -EISDIR;
	else if (dir)
		r = merged_empty(fs, &node);
	if (r < 0) {
		lyr_stack_node_clear(&node);
		return r;
	}
	struct ovl_inode *child = ovl_inode_find(fs, node.ino);
	if (child)
		pthread_mutex_lock(&child->cu_lock);
	/* a member of a lower hard-link group: keep the group's link count in the index (a
	 * metadata-only copy, no data) so the other names show the right count */
	if (child && node.layer != 0 && S_ISREG(node.st.st_mode) && node.st.st_nlink > 1 &&
	    fs->index_fd >= 0 && (r = ovl_copy_up(fs, child, OVL_COPY_META)) < 0) {
		pthread_mutex_unlock(&child->cu_lock);
		ovl_inode_unref(fs, child);
		lyr_stack_node_clear(&node);
		return r;
	}
	pthread_rwlock_wrlock(&parent->lock);
	/* look again: a copy-up may have finished meanwhile; an upper object that is still the
	 * one at the name needs no second lookup */
	struct stat now;
	if (node.layer != 0 || fstatat(parent->node.parts[0].fd, name, &now, AT_SYMLINK_NOFOLLOW) ||
	    now.st_ino != node.st.st_ino || now.st_dev != node.st.st_dev) {
		lyr_stack_node_clear(&node);
		r = ovl_lookup_node(fs, parent, name, &node);
		if (r < 0)
			goto out;
	} else {
		node.st = now;
	}
	int lower = ovl_lower_has(fs, parent, name);
	if ((r = lower) < 0)
		goto out;
	int upper = parent->node.parts[0].fd;
	struct ovl_wscope ws = {0};
	ovl_writable_add(fs, &ws, upper);
	if (dir && node.layer == 0)
		ovl_writable_add(fs, &ws, node.fd); /* it moves to the work dir: its ".." changes */
	if (child) {
		pthread_rwlock_wrlock(&child->lock);
		/* its name is going: from now on it lives by its fd */
		if (child->parent == parent && child->name && strcmp(child->name, name) == 0 &&
		    (r = ovl_inode_pin(fs, child)) < 0) {
			pthread_rwlock_unlock(&child->lock);
			ovl_writable_end(&ws);
			goto out;
		}
	}
	if (node.layer == 0)
		r = remove_upper(fs, upper, name, lower, dir);
	else
		r = ovl_make_whiteout(fs, upper, name);
	if (r == 0) {
		fstatat(parent->node.fd, "", &parent->node.st, AT_EMPTY_PATH);
		struct stat st;
		if (child && child->indexed)
			ovl_index_nlink_add(fs, child, -1);
		else if (child && (dir || node.st.st_nlink <= 1 ||
				   (child->node.fd >= 0 &&
				    fstatat(child->node.fd, "", &st, AT_EMPTY_PATH) == 0 &&
				    st.st_nlink == 0)))
			child->unlinked = true;
	}
	if (child)
		pthread_rwlock_unlock(&child->lock);
	ovl_writable_end(&ws);
out:
	pthread_rwlock_unlock(&parent->lock);
	lyr_stack_node_clear(&node);
	if (child) {
		pthread_mutex_unlock(&child->cu_lock);
		ovl_inode_unref(fs, child);
	}
	return r;
}

/* Makes IN, found as NAME in PARENT (RAW: what NAME resolves to without the index), use that
 * name for the copy-up a move needs: a lower hard-link partner may carry another name, and a
 * group already in the index gets NAME linked to its upper copy. */
static int claim_name(struct ovl_fs *fs, struct ovl_inode *in, struct ovl_inode *parent,
		      const char *name, const lyr_stack_node *raw)
{
	if (S_ISDIR(in->type) || raw->layer == 0)
		return 0;
	int r = 0;
	pthread_rwlock_wrlock(&parent->lock);
	pthread_rwlock_wrlock(&in->lock);
	if (in->node.layer != 0) {
		r = ovl_inode_set_name(fs, in, parent, name);
	} else if (in->indexed) {
		char idx[24];
		snprintf(idx, sizeof(idx), "%llu", (unsigned long long)in->ino);
		struct ovl_wscope ws = {0};
		ovl_writable_add(fs, &ws, parent->node.parts[0].fd);
		r = linkat(fs->index_fd, idx, parent->node.parts[0].fd, name, 0) < 0 ? -errno : 0;
		ovl_writable_end(&ws);
		if (r == 0)
			r = ovl_inode_set_name(fs, in, parent, name);
	}
	pthread_rwlock_unlock(&in->lock);
	pthread_rwlock_unlock(&parent->lock);
	return r;
}

/* True when the redirect the object at FD has (if any) stays right through a move: an
 * absolute one always, a relative one (a name beside it) only within its directory. */
static bool kept_redirect(int fd, bool samedir)
{
	char v[4096];
	ssize_t n = lyr_stack_xattr_get(fd, LYR_OVL_REDIRECT, v, sizeof(v));
	return n != -ENODATA && (samedir || (n > 0 && v[0] == '/'));
}

/* Readies IN (seen at its current name NAME) to move: a lower non-directory is copied up
 * metadata only; a directory with lower parts gets an upper copy with a redirect to them; an
 * upper metacopy gets a redirect to its data.  A new redirect is written as kernel overlayfs
 * writes it: the old name when the move stays in the same directory (SAMEDIR), else the
 * absolute path of the lower copy. */
static int prepare_move(struct ovl_fs *fs, struct ovl_inode *in, const char *name, bool samedir)
{
	int r;
	_cleanup_free_ char *path = NULL;
	if (!S_ISDIR(in->type)) {
		if ((r = ovl_inode_rdlock(fs, in)) < 0)
			return r;
		bool lower = in->node.layer != 0;
		pthread_rwlock_unlock(&in->lock);
		if (lower && (r = ovl_copy_up(fs, in, OVL_COPY_META)) < 0)
			return r;
		if ((r = ovl_inode_rdlock(fs, in)) < 0)
			return r;
		bool meta = in->node.metacopy;
		bool keep = meta && kept_redirect(in->node.fd, samedir);
		pthread_rwlock_unlock(&in->lock);
		if (!meta || keep)
			return 0;
		if (!samedir && (r = ovl_lower_path(fs, in, &path)) < 0)
			return r;
		const char *value = samedir ? name : path;
		if ((r = ovl_inode_rdlock(fs, in)) < 0)
			return r;
		r = ovl_set_private_xattr(fs, in->node.fd, LYR_OVL_REDIRECT, value, strlen(value));
		pthread_rwlock_unlock(&in->lock);
		return r;
	}
	pthread_rwlock_rdlock(&in->lock);
	bool has_lower = false;
	for (unsigned i = 0; i < in->node.nparts; i++)
		if (in->node.parts[i].layer != 0)
			has_lower = true;
	pthread_rwlock_unlock(&in->lock);
	if (!has_lower)
		return 0;
	if ((r = ovl_lower_path(fs, in, &path)) < 0)
		return r;
	if ((r = ovl_copy_up_dir(fs, in)) < 0)
		return r;
	pthread_rwlock_rdlock(&in->lock);
	int fd = in->node.fd;
	const char *value = samedir ? name : path;
	if (!kept_redirect(fd, samedir))
		r = ovl_set_private_xattr(fs, fd, LYR_OVL_REDIRECT, value, strlen(value));
	pthread_rwlock_unlock(&in->lock);
	return r;
}

/* A directory of the upper only, moving onto a name the lower layers hold (whited out, or hidden
 * only by the directory being replaced), must not merge with them: make it opaque, unless the
 * marker is there already.  The node's opaque flag does not tell: a directory just made says
 * "nothing below" without a marker, because nothing was below its name then.  A directory with
 * lower parts needs nothing here: its redirect (prepare_move) names where its lower parts are, so
 * the lower layers' copy of the new name never merges with it.  Called with its parent locked. */
static int guard_pure_dir(struct ovl_fs *fs, struct ovl_inode *in, struct ovl_inode *newparent,
			  const char *newname)
{
	if (!S_ISDIR(in->type) || in->node.nparts != 1 || in->node.layer != 0)
		return 0;
	int lower = ovl_lower_has(fs, newparent, newname);
	if (lower <= 0)
		return lower;
	int opaque = lyr_stack_dir_opaque(in->node.fd);
	if (opaque != 0)
		return opaque < 0 ? opaque : 0;
	return set_opaque(fs, in->node.fd);
}

static int refresh(struct ovl_fs *fs, struct ovl_inode *in, struct ovl_inode *parent,
		   const char *name)
{
	lyr_stack_node node;
	int r = ovl_lookup_node(fs, parent, name, &node);
	if (r < 0)
		return r;
	pthread_rwlock_wrlock(&in->lock);
	ovl_inode_set_node(fs, in, &node);
	in->pinned = false; /* found by its new name again */
	r = ovl_inode_set_name(fs, in, parent, name);
	pthread_rwlock_unlock(&in->lock);
	return r;
}

int ovl_rename(struct ovl_fs *fs, struct ovl_inode *p1, const char *n1, struct ovl_inode *p2,
	       const char *n2, unsigned flags)
{
	int r;
	if ((r = ovl_check_name(n1, false)) < 0 || (r = ovl_check_name(n2, true)) < 0)
		return r;
	if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) ||
	    (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE))
		return -EINVAL;
	if (!fs->has_upper || fs->read_only)
		return -EROFS;
	if ((r = ovl_copy_up_dir(fs, p1)) < 0 || (r = ovl_copy_up_dir(fs, p2)) < 0)
		return r;

	lyr_stack_node sn, tn;
	bool have_t;
	pthread_rwlock_rdlock(&p1->lock);
	r = ovl_lookup_node(fs, p1, n1, &sn);
	pthread_rwlock_unlock(&p1->lock);
	if (r < 0)
		return r;
	pthread_rwlock_rdlock(&p2->lock);
	r = ovl_lookup_node(fs, p2, n2, &tn);
	pthread_rwlock_unlock(&p2->lock);
	have_t = r == 0;
	if (r < 0 && r != -ENOENT) {
		lyr_stack_node_clear(&sn);
		return r;
	}
	struct ovl_inode *s = NULL, *t = NULL;
	if (have_t && tn.ino == sn.ino) {
		/* same object under both names (hard links): nothing to do */
		r = 0;
		goto out_nodes;
	}
	if (flags & RENAME_NOREPLACE && have_t) {
		r = -EEXIST;
		goto out_nodes;
	}
	if (flags & RENAME_EXCHANGE && !have_t) {
		r = -ENOENT;
		goto out_nodes;
	}
	if (have_t && !(flags & RENAME_EXCHANGE)) {
		if (S_ISDIR(sn.st.st_mode) && !S_ISDIR(tn.st.st_mode)) {
			r = -ENOTDIR;
			goto out_nodes;
		}
		if (!S_ISDIR(sn.st.st_mode) && S_ISDIR(tn.st.st_mode)) {
			r = -EISDIR;
			goto out_nodes;
		}
		if (S_ISDIR(tn.st.st_mode) && (r = merged_empty(fs, &tn)) < 0)
			goto out_nodes;
	}
	s = inode_for(fs, p1, n1, &sn);
	if (have_t)
		t = inode_for(fs, p2, n2, &tn);
	if (!s || (have_t && !t)) {
		r = -ENOMEM;
		goto out_nodes;
	}
	struct ovl_inode *first = s, *second = t;
	if (t && (uintptr_t)t < (uintptr_t)s) {
		first = t;
		second = s;
	}
	pthread_mutex_lock(&first->cu_lock);
	if (second)
		pthread_mutex_lock(&second->cu_lock);

	if ((r = claim_name(fs, s, p1, n1, &sn)) < 0 || (r = prepare_move(fs, s, n1, p1 == p2)) < 0)
		goto out_cu;
	if (flags & RENAME_EXCHANGE &&
	    ((r = claim_name(fs, t, p2, n2, &tn)) < 0 || (r = prepare_move(fs, t, n2, p1 == p2)) < 0))
		goto out_cu;

	lock_pair(p1, p2);
	int up1 = p1->node.parts[0].fd, up2 = p2->node.parts[0].fd;
	char tmp_t[32] = "";
	struct ovl_wscope ws = {0};
	ovl_writable_add(fs, &ws, up1);
	ovl_writable_add(fs, &ws, up2);
	/* a directory that changes parent has its ".." rewritten */
	if (p1 != p2 && S_ISDIR(s->type))
		ovl_writable_add(fs, &ws, s->node.fd);
	if (t && S_ISDIR(t->type))
		ovl_writable_add(fs, &ws, t->node.fd);
	if (flags & RENAME_EXCHANGE) {
		if ((r = guard_pure_dir(fs, s, p2, n2)) < 0 ||
		    (r = guard_pure_dir(fs, t, p1, n1)) < 0)
			goto out_locked;
		if (renameat2(up1, n1, up2, n2, RENAME_EXCHANGE) < 0) {
			r = -errno;
			goto out_locked;
		}
	} else {
		if (t) {
			pthread_rwlock_wrlock(&t->lock);
			r = t->parent == p2 && t->name && strcmp(t->name, n2) == 0
				? ovl_inode_pin(fs, t)
				: 0;
			pthread_rwlock_unlock(&t->lock);
			if (r < 0)
				goto out_locked;
		}
		int old_lower = ovl_lower_has(fs, p1, n1);
		if ((r = old_lower) < 0 || (r = guard_pure_dir(fs, s, p2, n2)) < 0)
			goto out_locked;
		int slot = upper_slot(up2, n2);
		if (slot == -EEXIST && S_ISDIR(tn.st.st_mode)) {
			/* the upper copy of the replaced directory holds whiteouts: move it away */
			ovl_tmp_name(fs, tmp_t);
			if (renameat(up2, n2, fs->work_fd, tmp_t) < 0) {
				r = -errno;
				tmp_t[0] = '\0';
				goto out_locked;
			}
			slot = 0;
		}
		if (slot == 1 && S_ISDIR(sn.st.st_mode)) {
			/* a directory cannot replace the whiteout device: swap them */
			if (renameat2(up1, n1, up2, n2, RENAME_EXCHANGE) < 0) {
				r = -errno;
				goto out_locked;
			}
			if (!old_lower)
				unlinkat(up1, n1, 0);
		} else if (renameat2(up1, n1, up2, n2, old_lower ? RENAME_WHITEOUT : 0) < 0) {
			if (errno != EINVAL || !old_lower) {
				r = -errno;
				goto out_locked;
			}
			if (renameat(up1, n1, up2, n2) < 0) {
				r = -errno;
				goto out_locked;
			}
			if ((r = ovl_make_whiteout(fs, up1, n1)) < 0)
				goto out_locked;
		}
	}
	r = 0;
	fstatat(p1->node.fd, "", &p1->node.st, AT_EMPTY_PATH);
	if (p2 != p1)
		fstatat(p2->node.fd, "", &p2->node.st, AT_EMPTY_PATH);
	refresh(fs, s, p2, n2);
	if (t && flags & RENAME_EXCHANGE) {
		refresh(fs, t, p1, n1);
	} else if (t) {
		pthread_rwlock_wrlock(&t->lock);
		struct stat st;
		if (t->indexed)
			ovl_index_nlink_add(fs, t, -1);
		else if (S_ISDIR(t->type) || tn.st.st_nlink <= 1 ||
			 (t->node.fd >= 0 && fstatat(t->node.fd, "", &st, AT_EMPTY_PATH) == 0 &&
			  st.st_nlink == 0))
			t->unlinked = true;
		pthread_rwlock_unlock(&t->lock);
	}
out_locked:
	ovl_writable_end(&ws);
	unlock_pair(p1, p2);
	if (tmp_t[0])
		ovl_remove_tree(fs->work_fd, tmp_t);
out_cu:
	if (second)
		pthread_mutex_unlock(&second->cu_lock);
	pthread_mutex_unlock(&first->cu_lock);
out_nodes:
	if (s)
		ovl_inode_unref(fs, s);
	if (t)
		ovl_inode_unref(fs, t);
	lyr_stack_node_clear(&sn);
	if (have_t)
		lyr_stack_node_clear(&tn);
	return r;
}
