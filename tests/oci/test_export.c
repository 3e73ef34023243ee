/* `layerfs export`: the merged tree of a chain (and of a ref with uncommitted changes) as one
 * plain tar, extracted by GNU tar and compared file by file with what `layerfs mount` shows; the
 * same bytes every time and from a second store; --diff as the layer tar save writes; refusals
 * (a terminal, an unknown object, a mounted ref, a failed write) that leave nothing behind. */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "hashutil.h"
#include "testutil.h"

static tu_dirs dirs;

static void setup(void)
{
	tu_dirs_init(&dirs);
}

static void teardown(void)
{
	tu_dirs_fini_mounted(&dirs);
}

TestSuite(oci_export, .init = setup, .fini = teardown);

/* The first line of OUT, in place (an ID or a digest as the CLI prints it). */
static char *line1(char *out)
{
	out[strcspn(out, "\n")] = '\0';
	return out;
}

/* A path below the test's directory, in a static buffer (one at a time per SLOT). */
static const char *at(int slot, const char *rel)
{
	static char buf[4][4200];
	snprintf(buf[slot], sizeof buf[slot], "%s/%s", dirs.tmp, rel);
	return buf[slot];
}

static void need_root_fuse(void)
{
	if (geteuid() != 0)
		cr_skip_test("owners, fifos and trusted xattrs in the tree need root");
	tu_need_fuse();
}

/* Runs the shell command FMT... in the mount of ID (a ref: read-write) at MP, then unmounts. */
#define IN_MOUNT(store, id, mp, ...)                                                               \
	do {                                                                                       \
		mkdir(mp, 0755);                                                                   \
		free(tu_ok(tu_lf(store, "mount", id, mp, NULL)));                                  \
		cr_assert_eq(tu_sh(__VA_ARGS__), 0);                                               \
		free(tu_ok(tu_lf(store, "umount", mp, NULL)));                                     \
	} while (0)

/* A base layer imported from a directory (owners, a ns mtime, xattrs, a hard-link pair, a
 * symlink, a fifo, a device) and a layer committed through a mount over it that deletes a file,
 * makes a directory opaque, renames a lower directory (redirect), chmods a lower file (metacopy)
 * and links it.  Returns the top layer's ID (heap). */
static char *make_chain(const char *store)
{
	tu_write(dirs.src, "etc/hostname", "box\n");
	tu_write(dirs.src, "etc/motd", "hello\n");
	tu_write(dirs.src, "usr/lib/a", "aaaa");
	tu_write(dirs.src, "usr/lib/b", "bbbb");
	tu_write(dirs.src, "opt/old/x", "old\n");
	tu_write(dirs.src, "opt/keep", "kept\n");
	cr_assert_eq(
	    tu_sh("cd %s && ln usr/lib/a usr/lib/a2 && ln -s ../etc/motd usr/motd && "
		  "mkdir run dev && mkfifo -m 0640 run/fifo && mknod -m 0620 dev/tty9 c 4 9 && "
		  "chown 1000:1001 usr/lib/b && "
		  "setfattr -n user.k -v v usr/lib/b && setfattr -n trusted.t -v 1 etc/motd "
		  "&& touch -h -d @1600000000.123456789 usr/motd usr/lib/b run/fifo run "
		  "etc/motd etc/hostname usr/lib/a usr/lib usr opt/old/x opt/old opt/keep "
		  "opt etc .",
		  dirs.src),
	    0);
	_cleanup_free_ char *base = line1(tu_ok(tu_lf(store, "import", dirs.src, NULL)));
	_cleanup_free_ char *ref = line1(tu_ok(tu_lf(store, "new", base, NULL)));
	const char *mp = at(0, "mnt");
	IN_MOUNT(store, ref, mp,
		 "cd %s && rm etc/motd && rm -r opt && mkdir opt && echo new > opt/new && "
		 "mv usr/lib usr/lib64 && chmod 0600 etc/hostname && ln etc/hostname etc/hostname2 "
		 "&& setfattr -n user.top -v 2 usr/lib64/a",
		 mp);
	char *top = line1(tu_ok(tu_lf(store, "commit", ref, NULL)));
	/* the layer really holds each marker */
	cr_assert_eq(tu_sh("cd %s/layers/%s/diff && getfattr -h -d -m overlay. usr/lib64 | "
			   "grep -q redirect && getfattr -h -d -m overlay. etc/hostname | "
			   "grep -q metacopy && getfattr -h -d -m overlay. opt | grep -q opaque && "
			   "test -c etc/motd",
			   store, top + 7),
		     0, "the chain should exercise each marker");
	return top;
}

/* tu_tree_attrs of ID (layer or ref) as `layerfs mount` shows it. */
static char *mounted_tree(const char *store, const char *id)
{
	return tu_mounted_attrs(store, id, at(1, "view"));
}

/* tu_tree_attrs of TAR extracted by GNU tar (xattrs, owners, modes as stored) into DIR. */
static char *extracted_tree(const char *tar, const char *dir)
{
	cr_assert_eq(tu_sh("rm -rf %s && mkdir %s && tar --xattrs --xattrs-include='*' "
			   "--numeric-owner -xpf %s -C %s",
			   dir, dir, tar, dir),
		     0);
	return tu_tree_attrs(dir);
}

/* The sha256 of FILE as "sha256:<hex>" (heap). */
static char *file_digest(const char *file)
{
	tu_run r = tu_cmd(NULL, (const char *[]){"/bin/sh", "-c", "sha256sum \"$0\"", file, NULL});
	char *out = tu_ok(r);
	out[64] = '\0';
	char *d;
	cr_assert(asprintf(&d, "sha256:%s", out) > 0);
	free(out);
	return d;
}

Test(oci_export, the_merged_tree_extracts_to_what_a_mount_shows_and_is_the_same_twice)
{
	need_root_fuse();
	_cleanup_free_ char *top = make_chain(dirs.store);
	const char *tar = at(2, "out.tar");
	_cleanup_free_ char *printed =
	    line1(tu_ok(tu_lf(dirs.store, "export", top, "-o", tar, NULL)));
	_cleanup_free_ char *digest = file_digest(tar);
	cr_assert_str_eq(printed, digest);

	_cleanup_free_ char *seen = mounted_tree(dirs.store, top);
	_cleanup_free_ char *got = extracted_tree(tar, at(3, "x"));
	cr_assert_str_eq(got, seen);
	/* what the chain did is in it */
	static const char *const want[] = {
	    "\netc/hostname 100600 0:0 ",
	    "\netc/hostname2 100600 0:0 ",
	    " links-to=etc/hostname\n",
	    "\nopt/new 100644 ",
	    "\nrun/fifo 10640 0:0 1600000000.123456789\n",
	    "\ndev/tty9 20620 0:0 ",
	    " dev=4:9\n",
	    "\nusr/lib64/a2 100644 0:0 ",
	    " links-to=usr/lib64/a user.top=2\n",
	    "\nusr/lib64/b 100644 1000:1001 1600000000.123456789 size=4 ",
	    "\nusr/motd 120777 0:0 1600000000.123456789 -> ../etc/motd\n",
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(want); i++)
		cr_assert(strstr(seen, want[i]), "'%s' not in\n%s", want[i], seen);
	cr_assert(!strstr(seen, "opt/old") && !strstr(seen, "opt/keep") &&
		      !strstr(seen, "\netc/motd") && !strstr(seen, "usr/lib/"),
		  "%s", seen);
	/* one plain tar: no OCI or overlay markers, hard links as links, the root first */
	_cleanup_free_ char *list =
	    tu_ok(tu_cmd(NULL, (const char *[]){"/bin/tar", "-tvf", tar, NULL}));
	cr_assert(!strstr(list, ".wh."), "%s", list);
	cr_assert(strstr(list, " etc/hostname2 link to etc/hostname\n"), "%s", list);
	cr_assert(strstr(list, " usr/lib64/a2 link to usr/lib64/a\n"), "%s", list);
	cr_assert(list[0] == 'd' && strstr(list, " ./\n") == strchr(list, '\n') - 3, "%s", list);
	cr_assert_neq(tu_sh("grep -a -q overlay %s", tar), 0, "an overlay xattr in the tar");
	cr_assert_eq(tu_sh("grep -a -q SCHILY.xattr.trusted.t %s", tar), 1);
	cr_assert_eq(tu_sh("grep -a -q SCHILY.xattr.user.top %s", tar), 0);

	/* the same bytes again, to a file and to standard output */
	const char *again = at(3, "again.tar");
	free(tu_ok(tu_lf(dirs.store, "export", top, "-o", again, NULL)));
	cr_assert_eq(tu_sh("cmp %s %s", tar, again), 0);
	cr_assert_eq(tu_sh("%s --root %s export %s > %s.stdout && cmp %s %s.stdout", LAYERFS_BIN,
			   dirs.store, top, tar, tar, tar),
		     0);
	cr_assert_eq(tu_sh("%s --root %s export %s -o - > %s.dash && cmp %s %s.dash", LAYERFS_BIN,
			   dirs.store, top, tar, tar, tar),
		     0);
}

Test(oci_export, a_second_store_loading_the_saved_image_exports_the_same_bytes)
{
	need_root_fuse();
	_cleanup_free_ char *top = make_chain(dirs.store);
	const char *tar = at(2, "one.tar");
	free(tu_ok(tu_lf(dirs.store, "export", top, "-o", tar, NULL)));
	/* the other store has the tree as OCI layers: no redirect, no metacopy */
	char img[4300];
	snprintf(img, sizeof img, "oci:%s/img:t", dirs.tmp);
	free(tu_ok(tu_lf(dirs.store, "save", top, "-o", img, NULL)));
	const char *store2 = at(0, "store2");
	_cleanup_free_ char *top2 = line1(tu_ok(tu_lf(store2, "load", img, NULL)));
	cr_assert_str_neq(top2, top);
	const char *tar2 = at(3, "two.tar");
	free(tu_ok(tu_lf(store2, "export", top2, "-o", tar2, NULL)));
	cr_assert_eq(tu_sh("cmp %s %s", tar, tar2), 0);
}

Test(oci_export, a_diff_is_the_layer_tar_save_writes_and_json_says_what_was_written)
{
	need_root_fuse();
	_cleanup_free_ char *top = make_chain(dirs.store);
	_cleanup_free_ char *info = tu_ok(tu_lf(dirs.store, "--json", "inspect", top, NULL));
	_cleanup_free_ char *base = tu_json_field(info, "parent");
	char img[4300];
	snprintf(img, sizeof img, "oci:%s/img:t", dirs.tmp);
	_cleanup_free_ char *saved = tu_ok(
	    tu_lf(dirs.store, "--json", "save", top, "-o", img, "--compression", "none", NULL));
	const char *ids[] = {base, top};
	const char *prev = saved;
	for (size_t i = 0; i < 2; i++) {
		const char *tar = at(2, i ? "top.tar" : "base.tar");
		_cleanup_free_ char *out =
		    tu_ok(tu_lf(dirs.store, "--json", "export", "--diff", ids[i], "-o", tar, NULL));
		_cleanup_free_ char *digest = file_digest(tar);
		struct stat st;
		cr_assert_eq(stat(tar, &st), 0);
		_cleanup_free_ char *n = tu_ok(tu_cmd(
		    NULL, (const char *[]){"/bin/sh", "-c", "tar -tf \"$0\" | wc -l", tar, NULL}));
		char want[8400];
		snprintf(want, sizeof want,
			 "{\"id\":\"%s\",\"kind\":\"layer\",\"output\":\"%s\",\"diff\":true,"
			 "\"digest\":\"%s\",\"size\":%lld,\"entries\":%lld}\n",
			 ids[i], tar, digest, (long long)st.st_size, atoll(n));
		cr_assert_str_eq(out, want);
		/* save's diff_ids, base first */
		char id_text[100];
		snprintf(id_text, sizeof id_text, "\"diff_id\":\"%s\"", digest);
		const char *hit = strstr(prev, id_text);
		cr_assert(hit, "%s not after the previous layer in %s", id_text, saved);
		prev = hit + 1;
	}
	/* the top layer's diff holds OCI whiteouts, the merged export none */
	_cleanup_free_ char *list =
	    tu_ok(tu_cmd(NULL, (const char *[]){"/bin/tar", "-tf", at(2, "top.tar"), NULL}));
	cr_assert(tu_has_line(list, "etc/.wh.motd") && tu_has_line(list, "opt/.wh..wh..opq"), "%s",
		  list);
}

Test(oci_export, a_ref_is_exported_with_its_uncommitted_changes_and_refused_while_mounted)
{
	need_root_fuse();
	_cleanup_free_ char *top = make_chain(dirs.store);
	_cleanup_free_ char *ref = line1(tu_ok(tu_lf(dirs.store, "new", top, NULL)));
	const char *mp = at(0, "rw");
	/* a change to one name of a lower hard-link pair changes the other (the overlay's index) */
	IN_MOUNT(dirs.store, ref, mp,
		 "cd %s && echo more >> usr/lib64/a && rm usr/lib64/b && echo z > z && mkdir d "
		 "&& rm run/fifo",
		 mp);
	const char *tar = at(2, "ref.tar");
	_cleanup_free_ char *json =
	    tu_ok(tu_lf(dirs.store, "--json", "export", ref, "-o", tar, NULL));
	_cleanup_free_ char *kind = tu_json_field(json, "kind");
	_cleanup_free_ char *full = tu_json_field(json, "id");
	cr_assert_str_eq(kind, "ref");
	cr_assert_str_eq(full, ref);
	cr_assert(strstr(json, "\"diff\":false"), "%s", json);
	_cleanup_free_ char *seen = mounted_tree(dirs.store, ref);
	_cleanup_free_ char *got = extracted_tree(tar, at(3, "x"));
	cr_assert_str_eq(got, seen);
	cr_assert(strstr(seen, "\nusr/lib64/a2 100644 0:0 ") && strstr(seen, "\nz 100644") &&
		      !strstr(seen, "usr/lib64/b") && !strstr(seen, "run/fifo"),
		  "%s", seen);
	_cleanup_free_ char *a = tu_read(at(3, "x"), "usr/lib64/a2");
	cr_assert_str_eq(a, "aaaamore\n");

	/* mounted: refused, naming the ref and the mountpoint, the store as it was */
	mkdir(mp, 0755);
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	const char *none = at(2, "none.tar");
	tu_fails(tu_lf(dirs.store, "export", ref, "-o", none, NULL), 1,
		 "layerfs: export '%s': ref is mounted at '%s' and may be written; unmount it "
		 "first\n",
		 ref, mp);
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);
	cr_assert_neq(access(none, F_OK), 0);
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));

	/* the ref's diff is what its commit becomes */
	const char *dtar = at(2, "ref-diff.tar");
	_cleanup_free_ char *d =
	    line1(tu_ok(tu_lf(dirs.store, "export", "--diff", ref, "-o", dtar, NULL)));
	_cleanup_free_ char *layer = line1(tu_ok(tu_lf(dirs.store, "commit", ref, NULL)));
	char img[4300];
	snprintf(img, sizeof img, "oci:%s/img:t", dirs.tmp);
	_cleanup_free_ char *saved = tu_ok(
	    tu_lf(dirs.store, "--json", "save", layer, "-o", img, "--compression", "none", NULL));
	char last[120];
	snprintf(last, sizeof last, "\"diff_id\":\"%s\"}]}", d);
	cr_assert(strstr(saved, last), "%s not the top layer's in %s", d, saved);
}

Test(oci_export, refusals_leave_no_file_and_name_the_cause)
{
	tu_write(dirs.src, "big", "");
	cr_assert_eq(tu_sh("head -c 1000000 /dev/urandom > %s/big", dirs.src), 0);
	_cleanup_free_ char *id = line1(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	_cleanup_free_ char *help = tu_ok(tu_lf(dirs.store, "export", "--help", NULL));
	static const char usage[] =
	    "Usage: layerfs [--root DIR] [--json] export LAYER|REF|TAG [-o FILE|-] [--diff]\n";
	cr_assert(strncmp(help, usage, strlen(usage)) == 0 && strstr(help, "\n  --diff "), "%s",
		  help);
	/* standard output on a terminal, as docker refuses it */
	for (int dash = 0; dash < 2; dash++) {
		const char *argv[] = {"--root",		  dirs.store, "export", id,
				      dash ? "-o" : NULL, "-",	      NULL};
		tu_run r = tu_layerfs_on(TU_PTY, TU_PIPE, NULL, argv);
		tu_fails(r, 2,
			 "layerfs export: refusing to write a tar to a terminal; give -o FILE or "
			 "redirect standard output\nTry 'layerfs export --help'.\n");
	}
	tu_fails(tu_lf(dirs.store, "--json", "export", id, NULL), 2,
		 "layerfs export: --json needs -o FILE: the tar goes to standard output\n"
		 "Try 'layerfs export --help'.\n");
	/* an unknown object */
	const char *out = at(0, "out/x.tar");
	cr_assert_eq(mkdir(at(1, "out"), 0755), 0);
	tu_fails(tu_lf(dirs.store, "export", "nosuchlayer", "-o", out, NULL), 1,
		 "layerfs: 'nosuchlayer': no such layer, ref or tag\n");
	/* a write that fails halfway: FILE keeps its old content, no temporary file is left */
	tu_write(at(1, "out"), "x.tar", "old\n");
	_cleanup_free_ char *before = tu_store_state(dirs.store);
	cr_assert_eq(tu_sh("trap '' XFSZ; ulimit -f 16; exec %s --root %s export %s -o %s "
			   "2> %s/err",
			   LAYERFS_BIN, dirs.store, id, out, dirs.tmp),
		     1);
	_cleanup_free_ char *err = tu_read(dirs.tmp, "err");
	char want[300];
	snprintf(want, sizeof want, "layerfs: export '%s': writing the tar: File too large\n", id);
	cr_assert_str_eq(err, want);
	_cleanup_free_ char *left = tu_tree_text(at(1, "out"));
	cr_assert_str_eq(left, "x.tar=old\n\n");
	/* the same write, ended by the signal it raises (SIGXFSZ): the temporary file is removed
	 * before the process dies */
	cr_assert_eq(
	    tu_sh("ulimit -c 0; ulimit -f 16; exec %s --root %s export %s -o %s 2>/dev/null",
		  LAYERFS_BIN, dirs.store, id, out),
	    128 + SIGXFSZ);
	_cleanup_free_ char *left2 = tu_tree_text(at(1, "out"));
	cr_assert_str_eq(left2, "x.tar=old\n\n");
	_cleanup_free_ char *after = tu_store_state(dirs.store);
	cr_assert_str_eq(after, before);
	/* onto a directory, or into one that does not exist */
	tu_fails(tu_lf(dirs.store, "export", id, "-o", at(1, "out"), NULL), 1,
		 "layerfs: export '%s': '%s': Is a directory\n", id, at(1, "out"));

	tu_fails(tu_lf(dirs.store, "export", id, "-o", at(0, "no/such/dir.tar"), NULL), 1,
		 "layerfs: export '%s': '%s': No such file or directory\n", id,
		 at(0, "no/such/dir.tar"));
}

/* While a ref is exported, it is held as a mount holds it: a commit or a mount of it is refused,
 * naming the export; once the tar is written, both work again. */
Test(oci_export, a_ref_being_exported_cannot_be_committed_or_mounted_meanwhile)
{
	tu_need_fuse();
	tu_write(dirs.src, "f", "base\n");
	_cleanup_free_ char *base = line1(tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL)));
	_cleanup_free_ char *ref = line1(tu_ok(tu_lf(dirs.store, "new", base, NULL)));
	_cleanup_free_ char *upper = tu_ref_upper(dirs.store, ref);
	/* more than a pipe holds, so that the export waits for its reader */
	cr_assert_eq(tu_sh("head -c 1000000 /dev/urandom > %s/big", upper), 0);
	int p[2];
	cr_assert_eq(pipe(p), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		close(p[0]);
		close(p[1]);
		execl(LAYERFS_BIN, "layerfs", "--root", dirs.store, "export", ref, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	char claim[64];
	snprintf(claim, sizeof claim, "\"mountpoint\":\"(export, pid %d)\"", (int)pid);
	bool held = false;
	for (int i = 0; i < 500 && !held; i++) {
		_cleanup_free_ char *info =
		    tu_ok(tu_lf(dirs.store, "--json", "inspect", ref, NULL));
		held = strstr(info, claim) != NULL;
		if (!held)
			usleep(10000);
	}
	cr_assert(held, "the export never claimed the ref");
	tu_fails(tu_lf(dirs.store, "commit", ref, NULL), 1,
		 "layerfs: commit '%s': ref is mounted at '(export, pid %d)'\n", ref, (int)pid);
	const char *mp = at(0, "mnt");
	mkdir(mp, 0755);
	tu_run r = tu_lf(dirs.store, "mount", ref, mp, NULL);
	cr_assert_eq(r.status, 1, "%s", r.err);
	cr_assert(strstr(r.err, "(export, pid"), "%s", r.err);
	tu_run_free(&r);
	/* the reader drains the pipe: the export ends well, and lets the ref go */
	FILE *in = fdopen(p[0], "r");
	FILE *out = fopen(at(1, "piped.tar"), "w");
	cr_assert(in && out);
	char buf[65536];
	size_t n;
	while ((n = fread(buf, 1, sizeof buf, in)) > 0)
		cr_assert_eq(fwrite(buf, 1, n, out), n);
	fclose(in);
	fclose(out);
	int st;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "export ended with %d", st);
	free(tu_ok(tu_lf(dirs.store, "export", ref, "-o", at(2, "file.tar"), NULL)));
	cr_assert_eq(tu_sh("cmp %s %s", at(1, "piped.tar"), at(2, "file.tar")), 0);
	free(tu_ok(tu_lf(dirs.store, "mount", ref, mp, NULL)));
	free(tu_ok(tu_lf(dirs.store, "umount", mp, NULL)));
	free(tu_ok(tu_lf(dirs.store, "commit", ref, NULL)));
}
