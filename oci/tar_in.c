/* Layer tars in: one OCI layer tar extracted into a layer's diff root, entry by entry.
 *
 * Every entry is placed by walking its parent directories from the root one component at a
 * time with O_NOFOLLOW (never by a path string handed to the kernel whole), so a symlink made
 * by an earlier entry can never redirect a later write, and names are refused before anything
 * is made when they are absolute, climb with "..", or use the overlay's marker names.  The
 * final name is always created fresh (O_EXCL, mknodat, symlinkat, linkat without following),
 * replacing what an earlier entry of this tar put there, as tar does.  Directories get their
 * permission bits and times last, after every child is in place (a child changes its parent's
 * mtime, and a read-only directory would refuse children).  Nothing here keeps state beyond
 * one call; sizes are those of the tar (no limits besides the file system's). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/oci.h"
#include "layerfs/stack.h"
#include "layerfs/tree.h"
#include "oci-int.h"

/* A directory whose mode and times are applied at the end. */
typedef struct dir_fix {
	char *path; /* relative to the root; "" is the root */
	mode_t mode;
	struct timespec times[2];
} dir_fix;

typedef struct extractor {
	struct archive *a;
	int root;
	bool privileged;
	const char *ovl; /* "trusted.overlay." or "user.overlay." */
	dir_fix *dirs;
	size_t ndirs, cap;
	lyr_oci_error *err;
	const lyr_progress *progress;
	uint64_t files, bytes;
	const bool *src_eof; /* the stream below the tar reader has ended (NULL: unknown) */
	bool ended;	     /* it ended right after an entry's data: the end of the tar */
} extractor;

static int fail(extractor *x, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(extractor *x, int r, const char *fmt, ...)
{
	if (x->err) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->err->why, sizeof x->err->why, fmt, ap);
		va_end(ap);
	}
	return r;
}

static int dir_fix_add(extractor *x, const char *path, mode_t mode, const struct timespec *times)
{
	if (x->ndirs == x->cap) {
		size_t ncap = x->cap ? x->cap * 2 : 64;
		dir_fix *nv = realloc(x->dirs, ncap * sizeof *nv);
		if (!nv)
			return -ENOMEM;
		x->dirs = nv;
		x->cap = ncap;
	}
	char *p = strdup(path);
	if (!p)
		return -ENOMEM;
	x->dirs[x->ndirs++] = (dir_fix){p, mode & 07777, {times[0], times[1]}};
	return 0;
}

/* Normalises the entry name NAME into OUT (PATH_MAX bytes): components joined by '/', no "."
 * or empty components, leading '/' dropped; "" is the root.  Refuses ".." components. */
static int normalise(extractor *x, const char *name, char *out)
{
	if (!name || !*name)
		return fail(x, -EINVAL, "the entry has no name");
	/* "/x" is "x", as tar and containerd read it: every name is below the layer's root
	 * anyway, and real layers carry "/" for the root (umoci insert writes one). */
	size_t len = 0;
	out[0] = '\0';
	const char *p = name;
	while (*p) {
		const char *e = strchrnul(p, '/');
		size_t n = (size_t)(e - p);
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return fail(x, -EINVAL, "'..' in the name would leave the layer");
		if (n > NAME_MAX)
			return fail(x, -ENAMETOOLONG, "a name component is longer than %d bytes",
				    NAME_MAX);
		if (n && !(n == 1 && p[0] == '.')) {
			if (len + n + 2 > PATH_MAX)
				return fail(x, -ENAMETOOLONG, "the name is longer than %d bytes",
					    PATH_MAX);
			if (len)
				out[len++] = '/';
			memcpy(out + len, p, n);
			len += n;
			out[len] = '\0';
		}
		p = *e ? e + 1 : e;
	}
	return 0;
}

/* Splits PATH ("" excluded) into its directory part and last name, opening the directory by
 * walking from the root without following symlinks.  With CREATE, missing directories are
 * made (mode 0755, mtime 0 at the end).  *RET_DIR is a new fd; RET_NAME points into PATH. */
static int open_parent(extractor *x, const char *path, bool create, int *ret_dir,
		       const char **ret_name)
{
	int cur = dup(x->root);
	if (cur < 0)
		return -errno;
	const char *p = path;
	for (;;) {
		const char *slash = strchr(p, '/');
		if (!slash)
			break;
		char comp[NAME_MAX + 1];
		size_t n = (size_t)(slash - p);
		memcpy(comp, p, n);
		comp[n] = '\0';
		if (lyr_stack_is_marker_name(comp)) {
			close(cur);
			return fail(x, -EINVAL,
				    "directory '%.*s' has an overlay marker name (.wh.*)",
				    (int)(slash - path), path);
		}
		int next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (next < 0 && errno == ENOENT && create) {
			static const struct timespec zero[2] = {{0, 0}, {0, 0}};
			char sub[PATH_MAX];
			snprintf(sub, sizeof sub, "%.*s", (int)(slash - path), path);
			if (mkdirat(cur, comp, 0700) < 0 || dir_fix_add(x, sub, 0755, zero) < 0) {
				int e = errno;
				close(cur);
				return fail(x, -e, "making directory '%s': %s", sub, strerror(e));
			}
			next = openat(cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		}
		if (next < 0) {
			int e = errno;
			struct stat st;
			bool link = fstatat(cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
				    S_ISLNK(st.st_mode);
			close(cur);
			if (link)
				return fail(
				    x, -EINVAL,
				    "'%.*s' is a symlink made by an earlier entry: refusing to "
				    "write through it",
				    (int)(slash - path), path);
			if (e == ENOTDIR)
				return fail(x, -EINVAL, "'%.*s' is not a directory",
					    (int)(slash - path), path);
			return fail(x, -e, "'%.*s': %s", (int)(slash - path), path, strerror(e));
		}
		close(cur);
		cur = next;
		p = slash + 1;
	}
	*ret_dir = cur;
	*ret_name = p;
	return 0;
}

/* Makes room for a new entry NAME in DIR: what an earlier entry put there goes, except a
 * directory that a directory entry only updates (*RET_KEEP). */
static int clear_slot(extractor *x, int dir, const char *name, bool want_dir, bool *ret_keep)
{
	struct stat st;
	*ret_keep = false;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
		return errno == ENOENT ? 0 : fail(x, -errno, "%s", strerror(errno));
	if (S_ISDIR(st.st_mode)) {
		if (want_dir) {
			*ret_keep = true;
			return 0;
		}
		int r = lyr_tree_remove(dir, name);
		return r < 0 ? fail(x, r, "replacing a directory: %s", strerror(-r)) : 0;
	}
	return unlinkat(dir, name, 0) < 0 ? fail(x, -errno, "%s", strerror(errno)) : 0;
}

static void proc_path(int dir, const char *name, char *out, size_t len)
{
	snprintf(out, len, "/proc/self/fd/%d/%s", dir, name);
}

static bool overlay_xattr(const char *name)
{
	return strncmp(name, "trusted.overlay.", 16) == 0 ||
	       strncmp(name, "user.overlay.", 13) == 0;
}

/* Owner, permission bits (not for directories: at the end) and xattrs of the new entry NAME
 * in DIR, in the order that keeps them all: chown clears setuid bits and capabilities. */
static int set_meta(extractor *x, int dir, const char *name, struct archive_entry *e, bool is_dir)
{
	mode_t type = archive_entry_filetype(e);
	char pp[PATH_MAX + 64];
	proc_path(dir, name, pp, sizeof pp);
	if (x->privileged &&
	    fchownat(dir, name, (uid_t)archive_entry_uid(e), (gid_t)archive_entry_gid(e),
		     AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) < 0)
		return fail(x, -errno, "setting the owner: %s", strerror(errno));
	if (!is_dir && type != AE_IFLNK && fchmodat(dir, name, archive_entry_perm(e), 0) < 0)
		return fail(x, -errno, "setting the mode: %s", strerror(errno));
	const char *xn;
	const void *xv;
	size_t xs;
	archive_entry_xattr_reset(e);
	while (archive_entry_xattr_next(e, &xn, &xv, &xs) == ARCHIVE_OK) {
		if (overlay_xattr(xn))
			return fail(x, -EINVAL,
				    "xattr '%s' is an overlay marker, which a layer would obey",
				    xn);
		if (lsetxattr(pp, xn, xv, xs, 0) < 0)
			return fail(x, -errno, "setting xattr '%s': %s", xn, strerror(errno));
	}
	return 0;
}

static void entry_times(struct archive_entry *e, struct timespec t[2])
{
	t[1] = (struct timespec){archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
	t[0] = archive_entry_atime_is_set(e)
		   ? (struct timespec){archive_entry_atime(e), archive_entry_atime_nsec(e)}
		   : t[1];
}

static int set_times(extractor *x, int dir, const char *name, struct archive_entry *e)
{
	struct timespec t[2];
	entry_times(e, t);
	if (utimensat(dir, name, t, AT_SYMLINK_NOFOLLOW) < 0)
		return fail(x, -errno, "setting times: %s", strerror(errno));
	return 0;
}

static int write_data(extractor *x, int fd, struct archive_entry *e)
{
	const void *buf;
	size_t size;
	la_int64_t off, end = 0;
	for (;;) {
		int r = archive_read_data_block(x->a, &buf, &size, &off);
		if (r == ARCHIVE_EOF)
			break;
		/* A stream that ends right after the last entry's data, without the padding and
		 * the end-of-archive blocks, lost nothing: Go's archive/tar (and so Docker,
		 * containerd and umoci, whose `insert` writes such layers) reads it as the end. */
		if (r < ARCHIVE_OK && x->src_eof && *x->src_eof && archive_entry_size_is_set(e) &&
		    end >= archive_entry_size(e)) {
			x->ended = true;
			break;
		}
		if (r < ARCHIVE_OK)
			return fail(x, -EBADMSG, "reading its data: %s",
				    archive_error_string(x->a));
		if (off + (la_int64_t)size > end)
			end = off + (la_int64_t)size;
		for (size_t done = 0; done < size;) {
			ssize_t w =
			    pwrite(fd, (const char *)buf + done, size - done, off + (off_t)done);
			if (w < 0)
				return fail(x, -errno, "writing: %s", strerror(errno));
			done += (size_t)w;
		}
		x->bytes += size;
	}
	/* a sparse file's trailing hole, and the size of a file of holes only */
	if (archive_entry_size_is_set(e) && ftruncate(fd, archive_entry_size(e)) < 0)
		return fail(x, -errno, "setting its size: %s", strerror(errno));
	return 0;
}

/* ".wh.NAME" in DIR: whiteout of NAME in the layers below; ".wh..wh..opq": DIR is opaque. */
static int whiteout(extractor *x, int dir, const char *marker, struct archive_entry *e)
{
	if (strcmp(marker, LYR_WH_OPAQUE) == 0) {
		if (fsetxattr(dir,
			      x->ovl[0] == 't' ? "trusted.overlay." LYR_OVL_OPAQUE
					       : "user.overlay." LYR_OVL_OPAQUE,
			      "y", 1, 0) < 0)
			return fail(x, -errno, "marking the directory opaque: %s", strerror(errno));
		return 0;
	}
	const char *name = marker + strlen(LYR_WH_PREFIX);
	if (!*name || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
	    lyr_stack_is_marker_name(name))
		return fail(x, -EINVAL, "not an OCI whiteout (AUFS metadata is not supported)");
	struct stat st;
	if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
		return 0; /* this layer has NAME: it hides the layers below already */
	if (mknodat(dir, name, S_IFCHR | 0000, makedev(0, 0)) < 0)
		return fail(x, -errno, "making the whiteout: %s", strerror(errno));
	int r = 0;
	if (x->privileged && fchownat(dir, name, (uid_t)archive_entry_uid(e),
				      (gid_t)archive_entry_gid(e), AT_SYMLINK_NOFOLLOW) < 0)
		r = -errno;
	if (r == 0 && fchmodat(dir, name, archive_entry_perm(e), 0) < 0)
		r = -errno;
	if (r < 0)
		return fail(x, r, "the whiteout's attributes: %s", strerror(-r));
	return set_times(x, dir, name, e);
}

static int hard_link(extractor *x, int dir, const char *name, const char *target_name)
{
	char target[PATH_MAX];
	int r = normalise(x, target_name, target);
	if (r < 0) {
		char why[sizeof x->err->why] = "";
		if (x->err)
			snprintf(why, sizeof why, "%s", x->err->why);
		return fail(x, r, "hard link to '%s': %s", target_name, why);
	}
	if (!*target)
		return fail(x, -EINVAL, "hard link to the layer's root");
	int tdir;
	const char *tname;
	r = open_parent(x, target, false, &tdir, &tname);
	if (r < 0) {
		if (r == -ENOENT)
			return fail(x, -EINVAL, "hard link to '%s', which no earlier entry made",
				    target_name);
		return r;
	}
	struct stat st;
	if (fstatat(tdir, tname, &st, AT_SYMLINK_NOFOLLOW) < 0) {
		close(tdir);
		return fail(x, -EINVAL, "hard link to '%s', which no earlier entry made",
			    target_name);
	}
	if (S_ISDIR(st.st_mode) || lyr_stack_is_whiteout(&st)) {
		close(tdir);
		return fail(x, -EINVAL, "hard link to '%s', which is a %s", target_name,
			    S_ISDIR(st.st_mode) ? "directory" : "whiteout");
	}
	r = linkat(tdir, tname, dir, name, 0) < 0 ? -errno : 0;
	close(tdir);
	if (r < 0)
		return fail(x, r, "hard link to '%s': %s", target_name, strerror(-r));
	return 0;
}

static int make_entry(extractor *x, int dir, const char *name, struct archive_entry *e)
{
	mode_t type = archive_entry_filetype(e);
	const char *hl = archive_entry_hardlink(e);
	bool keep;
	int r = clear_slot(x, dir, name, !hl && type == AE_IFDIR, &keep);
	if (r < 0)
		return r;
	if (hl)
		return hard_link(x, dir, name, hl);
	switch (type) {
	case AE_IFDIR:
		if (!keep && mkdirat(dir, name, 0700) < 0)
			return fail(x, -errno, "making the directory: %s", strerror(errno));
		return set_meta(x, dir, name, e, true);
	case AE_IFREG: {
		int fd =
		    openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd < 0)
			return fail(x, -errno, "creating the file: %s", strerror(errno));
		r = write_data(x, fd, e);
		close(fd);
		x->files++;
		lyr_progress_report(x->progress, x->files, x->bytes);
		break;
	}
	case AE_IFLNK: {
		const char *target = archive_entry_symlink(e);
		if (symlinkat(target ? target : "", dir, name) < 0)
			return fail(x, -errno, "making the symlink: %s", strerror(errno));
		break;
	}
	case AE_IFIFO:
		if (mknodat(dir, name, S_IFIFO | 0600, 0) < 0)
			return fail(x, -errno, "making the fifo: %s", strerror(errno));
		break;
	case AE_IFCHR:
	case AE_IFBLK: {
		dev_t dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
		if (type == AE_IFCHR && dev == 0)
			return fail(x, -EINVAL,
				    "a character device 0/0 is a whiteout marker in the store; "
				    "OCI tars use .wh. names");
		if (mknodat(dir, name, (type == AE_IFCHR ? S_IFCHR : S_IFBLK) | 0600, dev) < 0) {
			if (errno == EPERM)
				return fail(x, -EPERM, "creating a device needs root (CAP_MKNOD)");
			return fail(x, -errno, "making the device: %s", strerror(errno));
		}
		break;
	}
	default:
		return fail(x, -EINVAL, "entry type 0%o cannot be stored", (unsigned)type);
	}
	if (r < 0)
		return r;
	r = set_meta(x, dir, name, e, false);
	return r < 0 ? r : set_times(x, dir, name, e);
}

static int extract_one(extractor *x, struct archive_entry *e)
{
	char path[PATH_MAX];
	int r = normalise(x, archive_entry_pathname(e), path);
	if (r < 0)
		return r;
	struct timespec t[2];
	entry_times(e, t);
	if (!*path) { /* the root itself */
		if (archive_entry_filetype(e) != AE_IFDIR || archive_entry_hardlink(e))
			return fail(x, -EINVAL, "the layer's root must be a directory");
		r = set_meta(x, x->root, "", e, true);
		return r < 0 ? r : dir_fix_add(x, "", archive_entry_perm(e), t);
	}
	int dir;
	const char *name;
	r = open_parent(x, path, true, &dir, &name);
	if (r < 0)
		return r;
	if (lyr_stack_is_marker_name(name))
		r = archive_entry_filetype(e) == AE_IFREG && !archive_entry_hardlink(e)
			? whiteout(x, dir, name, e)
			: fail(x, -EINVAL, "a marker name (.wh.*) that is not a regular file");
	else
		r = make_entry(x, dir, name, e);
	if (r >= 0 && archive_entry_filetype(e) == AE_IFDIR && !archive_entry_hardlink(e))
		r = dir_fix_add(x, path, archive_entry_perm(e), t);
	close(dir);
	return r;
}

/* Directories' permission bits and times, in tar order (a later entry for the same directory
 * wins).  A directory a later entry replaced is skipped. */
static int finish_dirs(extractor *x)
{
	for (size_t i = 0; i < x->ndirs; i++) {
		dir_fix *d = &x->dirs[i];
		int dir = dup(x->root);
		const char *name = "";
		if (dir < 0)
			return -errno;
		if (*d->path) {
			close(dir);
			if (open_parent(x, d->path, false, &dir, &name) < 0)
				continue;
		}
		struct stat st;
		int r = 0;
		if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH) == 0 &&
		    S_ISDIR(st.st_mode) &&
		    (fchmodat(dir, *name ? name : ".", d->mode, 0) < 0 ||
		     utimensat(dir, *name ? name : ".", d->times, AT_SYMLINK_NOFOLLOW) < 0))
			r = -errno;
		close(dir);
		if (r < 0) {
			if (x->err)
				snprintf(x->err->entry, sizeof x->err->entry, "%s", d->path);
			return fail(x, r, "setting the directory's mode and times: %s",
				    strerror(-r));
		}
	}
	return 0;
}

/* The namespace the overlay's markers take in this store: trusted.overlay. with
 * CAP_SYS_ADMIN, else user.overlay. (as fs/ decides for commits). */
static const char *marker_namespace(int root)
{
	if (fsetxattr(root, "trusted.overlay.layerfs.probe", "1", 1, 0) == 0) {
		fremovexattr(root, "trusted.overlay.layerfs.probe");
		return "trusted.overlay.";
	}
	return "user.overlay.";
}

/* The raw stream, read from an fd; EOF noted. */
typedef struct fd_in {
	int fd;
	bool eof;
	char buf[1 << 17];
} fd_in;

static la_ssize_t fd_read(struct archive *a, void *ctx, const void **buf)
{
	fd_in *in = ctx;
	ssize_t n = read(in->fd, in->buf, sizeof in->buf);
	if (n < 0) {
		archive_set_error(a, errno, "reading: %s", strerror(errno));
		return -1;
	}
	in->eof = n == 0;
	*buf = in->buf;
	return n;
}

int lyr_oci_tar_extract(int fd, int dirfd, const lyr_oci_root *root, const lyr_progress *progress,
			lyr_oci_error *err)
{
	if (oci_libs_load(err) < 0)
		return -ENOSYS;
	struct archive *a = archive_read_new();
	if (!a)
		return -ENOMEM;
	/* tar in all its dialects only; compression told apart by the bytes */
	archive_read_support_format_tar(a);
	archive_read_support_format_gnutar(a);
	archive_read_support_filter_gzip(a);
	archive_read_support_filter_zstd(a);
	archive_read_support_filter_none(a);
	int r = 0;
	fd_in in = {.fd = fd};
	if (archive_read_open(a, &in, NULL, fd_read, NULL) != ARCHIVE_OK) {
		if (err) {
			err->entry[0] = '\0';
			snprintf(err->why, sizeof err->why, "%s", archive_error_string(a));
		}
		r = -EBADMSG;
	}
	if (r == 0)
		r = oci_tar_extract(a, &in.eof, dirfd, root, progress, err);
	archive_read_free(a);
	return r;
}

int oci_tar_extract(struct archive *a, const bool *src_eof, int dirfd, const lyr_oci_root *root,
		    const lyr_progress *progress, lyr_oci_error *err)
{
	extractor x = {.a = a,
		       .root = dirfd,
		       .privileged = geteuid() == 0,
		       .err = err,
		       .progress = progress,
		       .src_eof = src_eof};
	if (err)
		err->entry[0] = err->why[0] = '\0';
	x.ovl = marker_namespace(dirfd);
	struct timespec rt[2] = {root->mtime, root->mtime};
	if (x.privileged && fchown(dirfd, root->uid, root->gid) < 0)
		return fail(&x, -errno, "setting the root's owner: %s", strerror(errno));
	int r = dir_fix_add(&x, "", root->mode, rt);
	if (r < 0)
		return r;
	struct archive_entry *e;
	char last[sizeof err->entry] = "";
	for (;;) {
		int ar = archive_read_next_header(x.a, &e);
		if (ar == ARCHIVE_EOF)
			break;
		if (ar < ARCHIVE_WARN || (ar == ARCHIVE_WARN && !e)) {
			if (err)
				snprintf(err->entry, sizeof err->entry, "%s", last);
			r = fail(&x, -EBADMSG, "%s%s", last[0] ? "after this entry: " : "",
				 archive_error_string(x.a) ? archive_error_string(x.a)
							   : "not a tar stream");
			goto out;
		}
		const char *pn = archive_entry_pathname(e);
		snprintf(last, sizeof last, "%s", pn ? pn : "");
		if (err)
			snprintf(err->entry, sizeof err->entry, "%s", last);
		r = extract_one(&x, e);
		if (r < 0)
			goto out;
		if (x.ended)
			break;
	}
	if (err)
		err->entry[0] = '\0';
	r = finish_dirs(&x);
out:
	for (size_t i = 0; i < x.ndirs; i++)
		free(x.dirs[i].path);
	free(x.dirs);
	return r;
}
