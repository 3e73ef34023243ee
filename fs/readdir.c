/* Merged directory reading.  The first read of a handle takes a snapshot of the merged listing
 * (lyr_stack_list_dir) with the st_ino each entry shows, so every entry appears exactly once and an
 * offset (the index in the snapshot plus one) stays valid for the life of the handle whatever
 * happens to the directory; a rewind to offset 0 takes a fresh snapshot, as rewinddir(3) promises.
 * The snapshot is guarded by the handle's mutex; the directory's rwlock is held only while listing.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "ovl.h"
#include "stack/stack_private.h"

static void entries_free(struct ovl_dirent *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(e[i].name);
	free(e);
}

/* The st_ino an entry of the listing shows: its origin xattr, else its layer's inode number.
 * DEV caches the device of the part last used (*DEV_LAYER is its layer), as the entries of one
 * read mostly come from the same part. */
static uint64_t entry_ino(struct ovl_fs *fs, const lyr_stack_node *dir, const lyr_stack_dirent *de,
			  unsigned *dev_layer, dev_t *dev)
{
	int partfd = -1;
	for (unsigned i = 0; i < dir->nparts; i++)
		if (dir->parts[i].layer == de->layer)
			partfd = dir->parts[i].fd;
	if (partfd < 0)
		return de->raw_ino;
	if (*dev_layer != de->layer) {
		struct stat st;
		if (fstatat(partfd, "", &st, AT_EMPTY_PATH) < 0)
			return de->raw_ino;
		*dev = st.st_dev;
		*dev_layer = de->layer;
	}
	uint64_t origin = 0;
	/* one listxattrat tells whether there is anything to read: most entries carry none */
	if (de->type != DT_LNK && (lyr_stack_marks_at(partfd, de->name, -1) & LYR_MARK_INO)) {
		char path[64 + 256 + 2], v[32];
		snprintf(path, sizeof(path), "/proc/self/fd/%d/%s", partfd, de->name);
		static const char *const ns[] = {"trusted.overlay." LYR_OVL_INO,
						 "user.overlay." LYR_OVL_INO};
		for (size_t k = 0; k < LYR_ARRAY_SIZE(ns) && !origin; k++) {
			ssize_t n = lgetxattr(path, ns[k], v, sizeof(v) - 1);
			if (n > 0) {
				v[n] = '\0';
				origin = strtoull(v, NULL, 10);
			}
		}
	}
	return lyr_stack_ino(fs->stack, *dev, de->raw_ino, origin);
}

static int load(struct ovl_fs *fs, struct ovl_inode *dir, struct ovl_dir *d)
{
	lyr_stack_list l;
	pthread_rwlock_rdlock(&dir->lock);
	int r = lyr_stack_list_dir(fs->stack, &dir->node, &l);
	if (r < 0) {
		pthread_rwlock_unlock(&dir->lock);
		return r;
	}
	struct ovl_dirent *e = calloc(l.n + 2, sizeof(*e));
	if (!e) {
		pthread_rwlock_unlock(&dir->lock);
		lyr_stack_list_clear(&l);
		return -ENOMEM;
	}
	e[0] = (struct ovl_dirent){
	    .name = strdup("."), .ino = dir->ino, .type = DT_DIR, .ino_known = true};
	e[1] = (struct ovl_dirent){.name = strdup(".."),
				   .ino = dir->parent ? dir->parent->ino : dir->ino,
				   .type = DT_DIR,
				   .ino_known = true};
	for (size_t i = 0; i < l.n; i++) {
		e[i + 2].name = l.entries[i].name;
		l.entries[i].name = NULL;
		e[i + 2].type = l.entries[i].type;
		e[i + 2].layer = l.entries[i].layer;
		e[i + 2].raw_ino = l.entries[i].raw_ino;
	}
	pthread_rwlock_unlock(&dir->lock);
	size_t n = l.n + 2;
	lyr_stack_list_clear(&l);
	if (!e[0].name || !e[1].name) {
		entries_free(e, n);
		return -ENOMEM;
	}
	entries_free(d->entries, d->n);
	d->entries = e;
	d->n = n;
	return 0;
}

int ovl_dir_open(struct ovl_fs *fs, struct ovl_inode *dir, struct ovl_dir **ret)
{
	struct ovl_dir *d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	(void)dir; /* the snapshot is taken by the first read: a kernel that kept the listing
		    * from an earlier open never asks */
	pthread_mutex_lock(&fs->dirs_lock);
	d->next = fs->dirs;
	if (fs->dirs)
		fs->dirs->prev = d;
	fs->dirs = d;
	pthread_mutex_unlock(&fs->dirs_lock);
	*ret = d;
	return 0;
}

void ovl_dir_free(struct ovl_fs *fs, struct ovl_dir *d)
{
	if (!d)
		return;
	pthread_mutex_lock(&fs->dirs_lock);
	if (d->prev)
		d->prev->next = d->next;
	else
		fs->dirs = d->next;
	if (d->next)
		d->next->prev = d->prev;
	pthread_mutex_unlock(&fs->dirs_lock);
	entries_free(d->entries, d->n);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* The inode number readdir gives ENT of DIR (computed once). */
static ino_t dirent_ino(struct ovl_fs *fs, struct ovl_inode *dir, struct ovl_dirent *ent,
			unsigned *dev_layer, dev_t *dev)
{
	if (!ent->ino_known) {
		pthread_rwlock_rdlock(&dir->lock);
		ent->ino =
		    entry_ino(fs, &dir->node,
			      &(lyr_stack_dirent){ent->name, ent->layer, ent->type, ent->raw_ino},
			      dev_layer, dev);
		pthread_rwlock_unlock(&dir->lock);
		ent->ino_known = true;
	}
	return ent->ino;
}

int ovl_dir_read(struct ovl_fs *fs, fuse_req_t req, struct ovl_inode *dir, struct ovl_dir *d,
		 char *buf, size_t size, off_t off, bool plus)
{
	pthread_mutex_lock(&d->lock);
	int r = 0;
	if (!d->entries || (off == 0 && d->read_once))
		r = load(fs, dir, d);
	d->read_once = true;
	size_t pos = 0;
	unsigned dev_layer = UINT_MAX;
	dev_t dev = 0;
	for (size_t i = (size_t)(off < 0 ? 0 : off); r == 0 && i < d->n; i++) {
		struct ovl_dirent *ent = &d->entries[i];
		size_t used;
		if (plus) {
			struct fuse_entry_param e;
			bool looked_up = false;
			if (i < 2) {
				memset(&e, 0, sizeof(e));
				e.attr.st_ino = ent->ino;
				e.attr.st_mode = S_IFDIR;
			} else {
				int lr = ovl_lookup(fs, dir, ent->name, &e);
				if (lr == -ENOENT)
					continue; /* gone since the snapshot */
				looked_up = lr == 0;
				if (lr < 0) {
					/* an entry that cannot be looked up (a malformed
					 * metacopy, say) is listed without attributes (node 0:
					 * the kernel emits the name only); its own lookup then
					 * gives the error, and the entries after it are listed */
					memset(&e, 0, sizeof(e));
					e.attr.st_ino = dirent_ino(fs, dir, ent, &dev_layer, &dev);
					e.attr.st_mode = (mode_t)DTTOIF(ent->type);
				}
			}
			used = fuse_add_direntry_plus(req, buf + pos, size - pos, ent->name, &e,
						      (off_t)i + 1);
			if (used > size - pos) {
				if (looked_up)
					ovl_inode_forget(fs, ovl_inode_from_id(fs, e.ino), 1);
				break;
			}
		} else {
			struct stat st = {.st_ino = dirent_ino(fs, dir, ent, &dev_layer, &dev),
					  .st_mode = (mode_t)DTTOIF(ent->type)};
			used = fuse_add_direntry(req, buf + pos, size - pos, ent->name, &st,
						 (off_t)i + 1);
			if (used > size - pos)
				break;
		}
		pos += used;
	}
	pthread_mutex_unlock(&d->lock);
	return r < 0 ? r : (int)pos;
}

void ovl_dir_free_all(struct ovl_fs *fs)
{
	while (fs->dirs)
		ovl_dir_free(fs, fs->dirs);
}
