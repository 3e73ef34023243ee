/* The two backends of a view: auto picks kernel overlayfs as root and FUSE where the kernel is
 * refused (a failed probe, options or layers it cannot show as the daemon does), saying why;
 * both show the same tree for the same chain, and the same changes made through either commit
 * to the same layer ID.  A kernel mount's record lives while the mount does. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

static tu_dirs dirs;
static char *mp;

static void setup(void)
{
	tu_dirs_init(&dirs);
	mp = tu_path(dirs.tmp, "mnt");
	cr_assert_eq(mkdir(mp, 0755), 0);
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "data/keep", "keep\n");
	tu_write(dirs.src, "data/drop", "drop\n");
	tu_write(dirs.src, "gone/sub/f", "gone\n");
	tu_write(dirs.src, "dir1/in/f", "in\n");
	_cleanup_free_ char *a = tu_path(dirs.src, "data/keep");
	_cleanup_free_ char *b = tu_path(dirs.src, "data/keep2");
	cr_assert_eq(link(a, b), 0);
	cr_assert_eq(tu_sh("touch -h -d @1500000000 $(find '%s')", dirs.src), 0);
}

static void teardown(void)
{
	tu_dirs_fini(&dirs); /* fails the test that left a mount */
	free(mp);
}

TestSuite(cli_backend, .init = setup, .fini = teardown);

#define LF(...) tu_ok(tu_lf(dirs.store, __VA_ARGS__, NULL))

static char *base_layer(void)
{
	char *out = LF("import", dirs.src, "--tag", "base");
	out[strcspn(out, "\n")] = '\0';
	return out;
}

static char *new_ref(const char *on)
{
	char *out = LF("new", on);
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* Mounts ID at MP with BACKEND and checks that BACKEND served it. */
static void mount_with(const char *id, const char *backend)
{
	_cleanup_free_ char *out = LF("--json", "mount", "--backend", backend, id, mp);
	_cleanup_free_ char *used = tu_json_field(out, "backend");
	cr_assert_str_eq(used, backend, "%s", out);
}

/* Everything below DIR a person or a program can see, one line per entry: path, type, mode,
 * owner, size, mtime, link target, link count of non-directories, content digest, and the
 * xattrs a user sees (heap). */
static char *view_text(const char *dir)
{
	_cleanup_free_ char *out = tu_path(dirs.tmp, "view.txt");
	cr_assert_eq(tu_sh("cd '%s' && { find . -printf '%%p %%y %%m %%U:%%G %%s %%T@ %%l\\n';"
			   " find . ! -type d -printf '%%p nlink=%%n\\n';"
			   " find . -type f -exec sha256sum {} +;"
			   " getfattr -R -h -d -m - . 2>/dev/null; } | sort >'%s'",
			   dir, out),
		     0);
	return tu_read(dirs.tmp, "view.txt");
}

/* view_text of ID mounted with BACKEND (heap). */
static char *view_on(const char *id, const char *backend)
{
	mount_with(id, backend);
	char *text = view_text(mp);
	free(LF("umount", mp));
	return text;
}

/* The changes both backends make in the test of layer IDs: a new file, an append to a lower
 * hard link, a chmod (metacopy), whiteouts, a new directory beside lower ones (opaque), a
 * directory over a removed one, renames of a lower directory and file in place and across
 * directories (redirects), hard and symbolic links, a user xattr and an owner. */
static const char changes[] =
    "set -e; echo new >newfile; echo more >>data/keep; chmod 600 etc/hostname; rm data/drop;"
    " mkdir newdir; echo n >newdir/f; ln newfile newlink; ln -s target sym; rm -r gone;"
    " mkdir gone; echo r >gone/f; mv dir1 dir2; setfattr -n user.k -v v newfile;"
    " chown 1:1 newfile; mv etc/hostname etc/hn; mkdir -p dir2/in/x; mv dir2/in/f newdir/moved";

/* Makes CHANGES through a BACKEND mount of a new ref on BASE, sets every time in its upper to
 * one value (times of day differ between any two runs), and commits it. */
static char *commit_changes(const char *base, const char *backend)
{
	_cleanup_free_ char *ref = new_ref(base);
	mount_with(ref, backend);
	cr_assert_eq(tu_sh("cd '%s' && %s", mp, changes), 0);
	free(LF("umount", mp));
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	cr_assert_eq(tu_sh("find '%s' -exec touch -h -d @1600000000 {} +", upper), 0);
	char *layer = LF("commit", ref);
	layer[strcspn(layer, "\n")] = '\0';
	return layer;
}

Test(cli_backend, the_same_changes_commit_to_the_same_layer_on_both_backends)
{
	tu_need_fuse();
	tu_need_kernel_overlay();
	_cleanup_free_ char *base = base_layer();
	_cleanup_free_ char *k = commit_changes(base, "kernel");
	_cleanup_free_ char *f = commit_changes(base, "fuse");
	cr_assert_str_eq(k, f);
	/* and both backends show that layer alike */
	_cleanup_free_ char *via_kernel = view_on(k, "kernel"), *via_fuse = view_on(k, "fuse");
	cr_assert_str_eq(via_kernel, via_fuse);
	cr_assert(strstr(via_kernel, "./dir2/in/x d 755") && strstr(via_kernel, "./etc/hn f 600"),
		  "%s", via_kernel);
	_cleanup_free_ char *diff = LF("diff", k);
	cr_assert_str_eq(diff, "C /data\nD /data/drop\nC /data/keep\nC /data/keep2\nD /dir1\n"
			       "A /dir2\nA /dir2/in\nA /dir2/in/x\nC /etc\nA /etc/hn\n"
			       "D /etc/hostname\nC /gone\nA /gone/f\nD /gone/sub\nA /newdir\n"
			       "A /newdir/f\nA /newdir/moved\nA /newfile\nA /newlink\nA /sym\n");
}

Test(cli_backend, a_chain_and_a_ref_on_it_show_the_same_tree_on_both_backends)
{
	tu_need_fuse();
	tu_need_kernel_overlay();
	_cleanup_free_ char *base = base_layer();
	/* two more layers made through the daemon: redirects, metacopy files, whiteouts,
	 * opaque directories, hard links */
	_cleanup_free_ char *mid = commit_changes(base, "fuse");
	_cleanup_free_ char *ref = new_ref(mid);
	mount_with(ref, "fuse");
	cr_assert_eq(tu_sh("cd '%s' && set -e; mv dir2 dir3; chmod 700 dir3/in; rm newdir/f;"
			   " ln data/keep2 data/keep3; chown 2:2 data/keep; echo x >gone/g",
			   mp),
		     0);
	free(LF("umount", mp));
	_cleanup_free_ char *top = LF("commit", ref);
	top[strcspn(top, "\n")] = '\0';
	_cleanup_free_ char *layer_k = view_on(top, "kernel"), *layer_f = view_on(top, "fuse");
	cr_assert_str_eq(layer_k, layer_f);
	cr_assert(strstr(layer_k, "./dir3/in d 700") && strstr(layer_k, "./data/keep3 nlink=3"),
		  "%s", layer_k);
	/* a ref on the chain, read-write on each backend */
	_cleanup_free_ char *rw = new_ref(top);
	_cleanup_free_ char *ref_k = view_on(rw, "kernel"), *ref_f = view_on(rw, "fuse");
	cr_assert_str_eq(ref_k, ref_f);
}

Test(cli_backend, auto_picks_the_kernel_as_root_and_inspect_says_so)
{
	tu_need_kernel_overlay();
	unsetenv("LAYERFS_BACKEND");
	_cleanup_free_ char *base = base_layer();
	_cleanup_free_ char *ref = new_ref(base);
	_cleanup_free_ char *out = LF("--json", "mount", ref, mp);
	_cleanup_free_ char *used = tu_json_field(out, "backend");
	cr_assert_str_eq(used, "kernel");
	cr_assert_null(strstr(out, "fallback"), "%s", out);
	_cleanup_free_ char *info = LF("inspect", "--json", ref);
	_cleanup_free_ char *b = tu_json_field(info, "backend");
	cr_assert_str_eq(b, "kernel");
	_cleanup_free_ char *text = LF("inspect", ref);
	_cleanup_free_ char *abs = realpath(mp, NULL);
	_cleanup_free_ char *line = NULL;
	cr_assert(asprintf(&line, "Mounted:      at %s (kernel overlayfs)", abs) > 0);
	cr_assert(tu_has_line(text, line), "%s", text);
	/* the probe's answer is kept in the store, keyed by what it depends on */
	_cleanup_free_ char *probe = tu_read(dirs.store, "kernel/probe");
	cr_assert(tu_matches("^[^\n]+ uid=0 caps=[0-9a-f]+ userns=[0-9]+\ntrusted\n\n$", probe),
		  "%s", probe);
	/* a mounted ref is neither committed, removed nor mounted twice */
	tu_fails(tu_lf(dirs.store, "commit", ref, NULL), 1,
		 "layerfs: commit '%s': ref is mounted at '%s'\n", ref, abs);
	_cleanup_free_ char *mp2 = tu_path(dirs.tmp, "mnt2");
	cr_assert_eq(mkdir(mp2, 0755), 0);
	tu_fails(tu_lf(dirs.store, "mount", ref, mp2, NULL), 1,
		 "layerfs: mount '%s': ref is already mounted at '%s'\n", ref, abs);
	free(LF("umount", mp));
	_cleanup_free_ char *after = LF("inspect", "--json", ref);
	cr_assert_not_null(strstr(after, "\"mountpoint\":null"), "%s", after);
}

Test(cli_backend, auto_falls_back_to_fuse_when_the_kernel_refuses_and_says_why)
{
	tu_need_fuse();
	unsetenv("LAYERFS_BACKEND");
	_cleanup_free_ char *base = base_layer();
	static const char *const env[] = {"LAYERFS_KERNEL_PROBE_FAIL=1", NULL};
	tu_run r = tu_lf_env(env, dirs.store, "--json", "mount", base, mp, NULL);
	_cleanup_free_ char *out = tu_ok(r);
	_cleanup_free_ char *used = tu_json_field(out, "backend");
	cr_assert_str_eq(used, "fuse");
	_cleanup_free_ char *why = tu_json_field(out, "fallback");
	cr_assert_str_eq(why, "kernel overlayfs refused the mount: LAYERFS_KERNEL_PROBE_FAIL is set");
	free(LF("umount", mp));
	tu_fails(tu_lf_env(env, dirs.store, "mount", "--backend", "kernel", base, mp, NULL), 1,
		 "layerfs: the kernel backend cannot serve this view: kernel overlayfs refused the "
		 "mount: LAYERFS_KERNEL_PROBE_FAIL is set\n");
	/* the command line wins over the environment */
	static const char *const fuse_env[] = {"LAYERFS_BACKEND=kernel", NULL};
	_cleanup_free_ char *o2 = tu_ok(
	    tu_lf_env(fuse_env, dirs.store, "--json", "mount", "--backend", "fuse", base, mp, NULL));
	_cleanup_free_ char *u2 = tu_json_field(o2, "backend");
	cr_assert_str_eq(u2, "fuse");
	cr_assert_null(strstr(o2, "fallback"), "%s", o2);
	free(LF("umount", mp));
}

Test(cli_backend, options_and_layers_the_kernel_cannot_show_fall_back_to_fuse)
{
	tu_need_fuse();
	tu_need_kernel_overlay();
	unsetenv("LAYERFS_BACKEND");
	_cleanup_free_ char *base = base_layer();
	_cleanup_free_ char *out = LF("--json", "mount", "-o", "squash_to_root", base, mp);
	_cleanup_free_ char *why = tu_json_field(out, "fallback");
	cr_assert_str_eq(why, "id mapping and squashing are FUSE options");
	free(LF("umount", mp));
	tu_fails(tu_lf(dirs.store, "mount", "--backend", "kernel", "-o", "squash_to_root", base, mp,
		       NULL),
		 1,
		 "layerfs: the kernel backend cannot serve this view: id mapping and squashing are "
		 "FUSE options\n");
	/* a layer holding OCI/AUFS markers (written by another tool into a ref's upper) */
	_cleanup_free_ char *ref = new_ref(base);
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	tu_write(upper, "data/.wh.keep", "");
	_cleanup_free_ char *aufs = LF("commit", ref);
	aufs[strcspn(aufs, "\n")] = '\0';
	_cleanup_free_ char *o2 = LF("--json", "mount", aufs, mp);
	_cleanup_free_ char *want = NULL;
	cr_assert(asprintf(&want,
			   "\"fallback\":\"layer %.19s: it holds OCI/AUFS whiteout markers (.wh.*), "
			   "which kernel overlayfs does not read\"}",
			   aufs) > 0);
	cr_assert_not_null(strstr(o2, want), "%s", o2);
	_cleanup_free_ char *hidden = tu_read(mp, "data/keep");
	cr_assert_null(hidden, "the marker hides the lower file");
	free(LF("umount", mp));
}

Test(cli_backend, a_backend_other_than_auto_kernel_or_fuse_is_a_usage_error)
{
	_cleanup_free_ char *base = base_layer();
	tu_run r = tu_lf(dirs.store, "mount", "--backend", "fast", base, mp, NULL);
	cr_assert_eq(r.status, 2);
	cr_assert(strstr(r.err, "--backend fast: expects auto, kernel or fuse"), "%s", r.err);
	tu_run_free(&r);
	static const char *const env[] = {"LAYERFS_BACKEND=fast", NULL};
	tu_fails(tu_lf_env(env, dirs.store, "mount", base, mp, NULL), 2,
		 "layerfs: mount: LAYERFS_BACKEND=fast: expects auto, kernel or fuse\n");
}

Test(cli_backend, a_kernel_mount_unmounted_behind_the_store_leaves_a_stale_record)
{
	tu_need_kernel_overlay();
	_cleanup_free_ char *base = base_layer();
	_cleanup_free_ char *ref = new_ref(base);
	mount_with(ref, "kernel");
	tu_write(mp, "f", "data\n");
	/* fsck leaves a live kernel mount alone: it has no server to be dead */
	_cleanup_free_ char *fsck = LF("fsck", "--repair");
	_cleanup_free_ char *live = LF("inspect", "--json", ref);
	cr_assert_not_null(strstr(live, "\"backend\":\"kernel\""), "%s", live);
	_cleanup_free_ char *data = tu_read(mp, "f");
	cr_assert_str_eq(data, "data\n");
	cr_assert_eq(umount2(mp, 0), 0);
	_cleanup_free_ char *info = LF("inspect", "--json", ref);
	cr_assert_not_null(strstr(info, "\"mountpoint\":null"), "%s", info);
	_cleanup_free_ char *layer = LF("commit", ref, "--tag", "out");
	cr_assert_eq(strncmp(layer, "sha256:", 7), 0);
	_cleanup_free_ char *diff = LF("diff", "out");
	cr_assert_str_eq(diff, "A /f\n");
}

/* A user who may not mount overlay (not root, no user namespace of its own): auto does not
 * pick the kernel, and --backend kernel says why. */
Test(cli_backend, a_user_without_privilege_gets_no_kernel_mount_and_the_reason)
{
	if (geteuid() != 0)
		cr_skip_test("switches to another user: needs root (runs as root in CI)");
	_cleanup_free_ char *base = base_layer();
	cr_assert_eq(tu_sh("chown -R 65534:65534 '%s' '%s' && chmod 0755 '%s'", dirs.store, mp,
			   dirs.tmp),
		     0);
	_cleanup_free_ char *err = tu_path(dirs.tmp, "err");
	pid_t child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		int fd = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || dup2(fd, 2) < 0)
			_exit(98);
		if (setgroups(0, NULL) < 0 || setresgid(65534, 65534, 65534) < 0 ||
		    setresuid(65534, 65534, 65534) < 0)
			_exit(99);
		execl(LAYERFS_BIN, "layerfs", "--root", dirs.store, "mount", "--backend", "kernel",
		      base, mp, (char *)NULL);
		_exit(97);
	}
	int st;
	cr_assert_eq(waitpid(child, &st, 0), child);
	_cleanup_free_ char *msg = tu_read(dirs.tmp, "err");
	cr_assert(WIFEXITED(st));
	cr_assert_eq(WEXITSTATUS(st), 1, "%s", msg);
	cr_assert_str_eq(msg, "layerfs: the kernel backend cannot serve this view: this process "
			      "may not mount kernel overlayfs: Operation not permitted\n");
	/* the answer is kept for that user, beside root's */
	_cleanup_free_ char *probe = tu_read(dirs.store, "kernel/probe");
	cr_assert(tu_matches("^[^\n]+ uid=65534 caps=0+ userns=[0-9]+\nnone\n", probe), "%s",
		  probe);
}

/* Root of a user namespace of its own (a test harness's case): auto takes the kernel with
 * userxattr, and what it writes commits. */
Test(cli_backend, in_a_user_namespace_auto_takes_the_kernel_with_userxattr)
{
	tu_need_kernel_overlay();
	if (tu_sh("unshare -Urm true 2>/dev/null") != 0)
		cr_skip_test("no user namespaces here");
	unsetenv("LAYERFS_BACKEND");
	_cleanup_free_ char *base = base_layer();
	_cleanup_free_ char *ref = new_ref(base);
	_cleanup_free_ char *out = tu_path(dirs.tmp, "ns.out");
	cr_assert_eq(tu_sh("unshare -Urm sh -c \"set -e; '%s' --root '%s' --json mount %s '%s';"
			   " rm -r '%s/gone'; mkdir '%s/gone'; echo n >'%s/gone/new';"
			   " rm '%s/data/drop'; '%s' --root '%s' umount '%s'\" >'%s'",
			   LAYERFS_BIN, dirs.store, ref, mp, mp, mp, mp, mp, LAYERFS_BIN,
			   dirs.store, mp, out),
		     0);
	_cleanup_free_ char *json = tu_read(dirs.tmp, "ns.out");
	cr_assert_not_null(strstr(json, "\"backend\":\"kernel\""), "%s", json);
	_cleanup_free_ char *probe = tu_read(dirs.store, "kernel/probe");
	cr_assert(tu_has_line(probe, "userxattr"), "%s", probe);
	/* the kernel marked the directory over the removed one in the user namespace's way */
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	_cleanup_free_ char *gone = tu_path(upper, "gone");
	char v[4] = "";
	cr_assert_eq(lgetxattr(gone, "user.overlay.opaque", v, sizeof v), 1);
	cr_assert_eq(v[0], 'y');
	free(LF("commit", ref, "--tag", "ns"));
	_cleanup_free_ char *diff = LF("diff", "ns");
	cr_assert_str_eq(diff, "C /data\nD /data/drop\nC /gone\nA /gone/new\nD /gone/sub\n");
}

/* The super options of the kernel overlay mount at MP (heap). */
static char *overlay_options(void)
{
	_cleanup_free_ char *abs = realpath(mp, NULL);
	cr_assert_eq(tu_sh("awk -v m='%s' '$5 == m { sub(/.* - overlay [^ ]+ /, \"\"); print }' "
			   "/proc/self/mountinfo >'%s/opts'",
			   abs, dirs.tmp),
		     0);
	return tu_read(dirs.tmp, "opts");
}

/* The kernel's index (index=on) costs every lookup of a lower file a search of it, and only
 * keeps lower hard-link groups together: a chain without such a group is mounted without it,
 * one with a group in any lower layer with it, and the group then stays one file. */
Test(cli_backend, the_kernel_index_is_on_only_for_chains_with_hard_links)
{
	tu_need_kernel_overlay();
	_cleanup_free_ char *plain = tu_path(dirs.tmp, "plain");
	tu_write(plain, "a", "a\n");
	tu_write(plain, "d/b", "b\n");
	_cleanup_free_ char *base = LF("import", plain);
	base[strcspn(base, "\n")] = '\0';
	_cleanup_free_ char *ref = new_ref(base);
	mount_with(ref, "kernel");
	_cleanup_free_ char *opts = overlay_options();
	cr_assert(strstr(opts, "redirect_dir=on") && strstr(opts, "metacopy=on"), "%s", opts);
	cr_assert_null(strstr(opts, "index=on"), "%s", opts);
	/* a hard link made in the upper needs no index */
	cr_assert_eq(tu_sh("cd '%s' && ln a a2 && echo more >>d/b", mp), 0);
	free(LF("umount", mp));
	_cleanup_free_ char *top = LF("commit", ref);
	top[strcspn(top, "\n")] = '\0';
	/* the group is now in a lower layer of a ref on TOP */
	_cleanup_free_ char *ref2 = new_ref(top);
	mount_with(ref2, "kernel");
	_cleanup_free_ char *opts2 = overlay_options();
	cr_assert_not_null(strstr(opts2, "index=on"), "%s", opts2);
	cr_assert_eq(tu_sh("cd '%s' && echo x >>a && [ \"$(cat a2)\" = \"$(printf 'a\\nx')\" ] && "
			   "[ $(stat -c %%h a2) = 2 ]",
			   mp),
		     0);
	free(LF("umount", mp));
}
