/* Tests of the layer-stack rules (fs/stack), on plain directories, without FUSE. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "layerfs/stack.h"
#include "testutil.h"

static char *root;
static char *l0, *l1, *l2;
static lyr_stack *stack;

static void mk_whiteout(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(mknod(p, S_IFCHR | 0600, makedev(0, 0)), 0, "mknod %s: %s", p,
		     strerror(errno));
}

static void mk_dir(const char *dir, const char *rel)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(lyr_mkdir_p(p, 0755), 0);
}

static void set_x(const char *dir, const char *rel, const char *name, const char *value)
{
	_cleanup_free_ char *p = tu_path(dir, rel);
	cr_assert_eq(lsetxattr(p, name, value, strlen(value), 0), 0, "setxattr %s: %s", p,
		     strerror(errno));
}

/* l0 (top): a whiteout for "gone", ".wh.oci" marker, opaque dir "opq", dir "merged" with a file,
 *           redirect dir "moved" -> "/orig", metacopy "meta" (data below), file "shadow" over a
 * dir. l1:       "gone", "oci", "opq/hidden", "merged/b", "orig/x", "meta" (data), "shadow/inner",
 * "aufs/" with ".wh..wh..opq", "keep". l2:       "merged/c", "aufs/below", "opq/also" */
static void setup(void)
{
	root = tu_mkdtemp();
	l0 = tu_path(root, "l0");
	l1 = tu_path(root, "l1");
	l2 = tu_path(root, "l2");
	mk_dir(l0, "");
	mk_dir(l1, "");
	mk_dir(l2, "");
	mk_whiteout(l0, "gone");
	tu_write(l0, ".wh.oci", "");
	mk_dir(l0, "opq");
	set_x(l0, "opq", "user.overlay.opaque", "y");
	tu_write(l0, "merged/a", "A");
	mk_dir(l0, "moved");
	set_x(l0, "moved", "user.overlay.redirect", "/orig");
	tu_write(l0, "meta", "");
	set_x(l0, "meta", "user.overlay.metacopy", "");
	tu_write(l0, "shadow", "file");

	tu_write(l1, "gone", "g");
	tu_write(l1, "oci", "o");
	tu_write(l1, "opq/hidden", "h");
	tu_write(l1, "merged/b", "B");
	tu_write(l1, "orig/x", "X");
	tu_write(l1, "meta", "0123456789");
	tu_write(l1, "shadow/inner", "i");
	tu_write(l1, "aufs/.wh..wh..opq", "");
	tu_write(l1, "aufs/mine", "m");
	tu_write(l1, "keep", "k");

	tu_write(l2, "merged/c", "C");
	tu_write(l2, "aufs/below", "b");
	tu_write(l2, "opq/also", "a");
	tu_write(l2, "orig/y", "Y");

	const char *dirs[] = {l0, l1, l2};
	cr_assert_eq(lyr_stack_open(dirs, 3, NULL, &stack), 0);
}

static void teardown(void)
{
	lyr_stack_free(stack);
	tu_rmtree_unmounted(root);
	free(root);
	free(l0);
	free(l1);
	free(l2);
}

TestSuite(fs_stack, .init = setup, .fini = teardown);

static int lookup(const char *path, lyr_stack_node *n)
{
	return lyr_stack_resolve(stack, 0, path, n);
}

static char *listing(const char *path)
{
	lyr_stack_node n;
	cr_assert_eq(lookup(path, &n), 0, "lookup %s", path);
	lyr_stack_list l;
	cr_assert_eq(lyr_stack_list_dir(stack, &n, &l), 0);
	/* names sorted, joined with ',' and each followed by ':' and the layer */
	for (size_t i = 0; i < l.n; i++)
		for (size_t j = i + 1; j < l.n; j++)
			if (strcmp(l.entries[i].name, l.entries[j].name) > 0) {
				lyr_stack_dirent t = l.entries[i];
				l.entries[i] = l.entries[j];
				l.entries[j] = t;
			}
	char *out = calloc(1, 4096);
	for (size_t i = 0; i < l.n; i++) {
		char item[300];
		snprintf(item, sizeof(item), "%s%s:%u", i ? "," : "", l.entries[i].name,
			 l.entries[i].layer);
		strcat(out, item);
	}
	lyr_stack_list_clear(&l);
	lyr_stack_node_clear(&n);
	return out;
}

Test(fs_stack, root_listing_hides_whiteouts_and_markers)
{
	_cleanup_free_ char *s = listing("/");
	cr_assert_str_eq(s, "aufs:1,keep:1,merged:0,meta:0,moved:0,opq:0,orig:1,shadow:0");
}

Test(fs_stack, whiteouts_hide_lower_files)
{
	lyr_stack_node n;
	cr_assert_eq(lookup("/gone", &n), -ENOENT);
	cr_assert_eq(lookup("/oci", &n), -ENOENT);
	cr_assert_eq(lookup("/.wh.oci", &n), -ENOENT);
	cr_assert_eq(lookup("/keep", &n), 0);
	cr_assert_eq(n.layer, 1);
	cr_assert_eq(n.st.st_size, 1);
	lyr_stack_node_clear(&n);
}

Test(fs_stack, opaque_directories_end_the_merge)
{
	_cleanup_free_ char *a = listing("/opq");
	cr_assert_str_eq(a, "");
	_cleanup_free_ char *b = listing("/aufs");
	cr_assert_str_eq(b, "mine:1");
	lyr_stack_node n;
	cr_assert_eq(lookup("/aufs/below", &n), -ENOENT);
}

Test(fs_stack, directories_merge_across_layers)
{
	_cleanup_free_ char *s = listing("/merged");
	cr_assert_str_eq(s, "a:0,b:1,c:2");
	lyr_stack_node n;
	cr_assert_eq(lookup("/merged", &n), 0);
	cr_assert_eq(n.nparts, 3);
	cr_assert_str_eq(n.parts[2].path, "/merged");
	lyr_stack_node_clear(&n);
}

Test(fs_stack, redirect_merges_the_old_directory)
{
	_cleanup_free_ char *s = listing("/moved");
	cr_assert_str_eq(s, "x:1,y:2");
	lyr_stack_node n;
	cr_assert_eq(lookup("/moved/y", &n), 0);
	cr_assert_eq(n.layer, 2);
	cr_assert_str_eq(n.lower_path, "/orig/y");
	lyr_stack_node_clear(&n);
}

Test(fs_stack, metacopy_takes_data_from_below)
{
	lyr_stack_node n;
	cr_assert_eq(lookup("/meta", &n), 0);
	cr_assert(n.metacopy);
	cr_assert_eq(n.layer, 0);
	cr_assert_eq(n.data_layer, 1);
	char buf[32] = "";
	int fd = lyr_stack_node_open(&n, O_RDONLY);
	cr_assert_geq(fd, 0);
	cr_assert_eq(read(fd, buf, sizeof(buf)), 10);
	cr_assert_str_eq(buf, "0123456789");
	close(fd);
	lyr_stack_node_clear(&n);
}

Test(fs_stack, a_file_hides_a_lower_directory)
{
	lyr_stack_node n;
	cr_assert_eq(lookup("/shadow", &n), 0);
	cr_assert(S_ISREG(n.st.st_mode));
	cr_assert_eq(n.nparts, 0);
	cr_assert_eq(lookup("/shadow/inner", &n), -ENOTDIR);
	lyr_stack_node_clear(&n);
}

Test(fs_stack, bad_names_are_refused)
{
	lyr_stack_node root_node, n;
	cr_assert_eq(lyr_stack_root(stack, 0, &root_node), 0);
	char longname[300];
	memset(longname, 'a', 256);
	longname[256] = '\0';
	cr_assert_eq(lyr_stack_lookup(stack, &root_node, longname, &n), -ENAMETOOLONG);
	cr_assert_eq(lyr_stack_lookup(stack, &root_node, "..", &n), -EINVAL);
	cr_assert_eq(lyr_stack_lookup(stack, &root_node, "a/b", &n), -EINVAL);
	lyr_stack_node_clear(&root_node);
}

Test(fs_stack, origin_inode_is_reported)
{
	set_x(l1, "keep", "user.overlay.layerfs.ino", "4242");
	lyr_stack_node n;
	cr_assert_eq(lookup("/keep", &n), 0);
	cr_assert_eq(n.ino, 4242);
	lyr_stack_node_clear(&n);
	cr_assert_eq(lookup("/merged/c", &n), 0);
	struct stat st;
	_cleanup_free_ char *p = tu_path(l2, "merged/c");
	cr_assert_eq(lstat(p, &st), 0);
	cr_assert_eq(n.ino, st.st_ino);
	lyr_stack_node_clear(&n);
}

Test(fs_stack, malformed_whiteout_is_a_plain_device)
{
	_cleanup_free_ char *p = tu_path(l0, "keep");
	if (mknod(p, S_IFCHR | 0600, makedev(1, 3)) < 0 && errno == EPERM)
		cr_skip_test("making a character device needs CAP_MKNOD (root in CI)");
	struct stat made;
	cr_assert_eq(lstat(p, &made), 0, "mknod %s: %s", p, strerror(errno));
	lyr_stack_node n;
	cr_assert_eq(lookup("/keep", &n), 0);
	cr_assert(S_ISCHR(n.st.st_mode));
	cr_assert_eq(n.layer, 0);
	lyr_stack_node_clear(&n);
}

Test(fs_stack, private_xattr_names_are_recognised)
{
	cr_assert(lyr_stack_xattr_private("trusted.overlay.opaque"));
	cr_assert(lyr_stack_xattr_private("user.overlay.redirect"));
	cr_assert_not(lyr_stack_xattr_private("user.overlayx"));
	cr_assert_not(lyr_stack_xattr_private("security.capability"));
}
