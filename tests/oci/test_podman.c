/* `layerfs save` archives read by podman: a busybox-static image of several layers (a deletion,
 * an opaque directory, a hard link) saved as docker-archive and oci-archive, `podman load`ed,
 * its tree compared file by file with what `layerfs mount` shows, and run.
 *
 * podman keeps all its state in the test's directory (--root, --runroot, --tmpdir, vfs storage,
 * its own containers.conf and storage.conf, its network config dir, and in a mount namespace of
 * its own, its own /var/tmp, where `load` unpacks archives whatever it is told, and
 * /var/lib/containers, where the image library keeps its blob cache) and touches no host cgroup
 * (cgroups disabled), so nothing is left on the host.  Two things of this machine are worked
 * around, not hidden:
 *  - crun refuses a hybrid cgroup layout whose cgroup2 part has controllers ("cgroups in hybrid
 *    mode not supported, drop all controllers from cgroupv2"); podman runs in a mount namespace
 *    of its own where that cgroup2 mount (/sys/fs/cgroup/unified) is unmounted;
 *  - without CAP_SYS_RESOURCE, crun cannot raise RLIMIT_NOFILE and RLIMIT_NPROC above the hard
 *    limits it inherits ("setrlimit `RLIMIT_NPROC`: Operation not permitted"): podman asks for
 *    1048576 by default and runs itself with nproc lowered to 32768, so the containers.conf asks
 *    for the test's own nofile limit and at most 16384 processes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
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

TestSuite(oci_podman, .init = setup, .fini = teardown, .timeout = 300);

/* Writes DIR/podman, a podman whose state all lives below DIR. */
static void podman_wrapper(const char *dir)
{
	struct rlimit nofile, nproc;
	cr_assert_eq(getrlimit(RLIMIT_NOFILE, &nofile), 0);
	cr_assert_eq(getrlimit(RLIMIT_NPROC, &nproc), 0);
	if (nproc.rlim_cur > 16384)
		nproc.rlim_cur = 16384;
	char conf[9000];
	snprintf(conf, sizeof conf,
		 "[containers]\ncgroups = \"disabled\"\nnetns = \"none\"\n"
		 "default_ulimits = [\"nofile=%llu:%llu\", \"nproc=%llu:%llu\"]\n"
		 "[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n"
		 "image_copy_tmp_dir = \"%s/tmp\"\n[network]\nnetwork_config_dir = \"%s/net\"\n",
		 (unsigned long long)nofile.rlim_cur, (unsigned long long)nofile.rlim_cur,
		 (unsigned long long)nproc.rlim_cur, (unsigned long long)nproc.rlim_cur, dir, dir);
	tu_write(dir, "containers.conf", conf);
	char storage[9000];
	snprintf(storage, sizeof storage,
		 "[storage]\ndriver = \"vfs\"\ngraphroot = \"%s/root\"\nrunroot = \"%s/run\"\n",
		 dir, dir);
	tu_write(dir, "storage.conf", storage);
	tu_write(dir, "podman",
		 "#!/bin/sh\n"
		 "d=$(dirname \"$0\")\n"
		 "mkdir -p \"$d/tmp\" \"$d/var-lib-containers\" \"$d/var-tmp\"\n"
		 "export CONTAINERS_CONF=\"$d/containers.conf\" "
		 "CONTAINERS_STORAGE_CONF=\"$d/storage.conf\" TMPDIR=\"$d/tmp\"\n"
		 "exec unshare -m --propagation private /bin/sh -c '\n"
		 "  d=$0\n"
		 "  if grep -qs . /sys/fs/cgroup/unified/cgroup.controllers; then\n"
		 "    umount /sys/fs/cgroup/unified || exit 125\n"
		 "  fi\n"
		 "  mount --bind \"$d/var-tmp\" /var/tmp || exit 125\n"
		 "  if [ -d /var/lib/containers ]; then\n"
		 "    mount --bind \"$d/var-lib-containers\" /var/lib/containers || exit 125\n"
		 "  else\n"
		 "    mount -t tmpfs tmpfs /var/lib || exit 125\n"
		 "  fi\n"
		 "  exec podman --root \"$d/root\" --runroot \"$d/run\" --tmpdir \"$d/tmp\" \\\n"
		 "    --storage-driver vfs --cgroup-manager cgroupfs --events-backend file \"$@\"\n"
		 "' \"$d\" \"$@\"\n");
	_cleanup_free_ char *p = tu_path(dir, "podman");
	cr_assert_eq(chmod(p, 0755), 0);
}

/* Runs `PDIR/podman ARGS` (a shell word list); its output, after asserting it succeeded. */
static char *podman(const char *pdir, const char *args)
{
	int st = tu_sh("%s/podman %s > %s/out 2>&1", pdir, args, pdir);
	char *out = tu_read(pdir, "out");
	cr_assert_eq(st, 0, "podman %s: exit %d: %s", args, st, out);
	return out;
}

/* The root output layer of `layerfs exec ROOT -- /bin/sh -c SCRIPT` (heap). */
static char *exec_layer(const char *root, const char *script)
{
	_cleanup_free_ char *out =
	    tu_ok(tu_lf(dirs.store, "--json", "exec", root, "--", "/bin/sh", "-c", script, NULL));
	return tu_json_field(out, "layer");
}

/* A busybox-static image of four layers: the root, a layer exec wrote (a deletion, a new
 * file and a hard link to it), a tar layer (an opaque directory) and one of exec again. */
static char *busybox_image(void)
{
	static const char *const applets[] = {"sh", "cat", "ls", "echo", "test", "stat", "rm"};
	tu_busybox_root(dirs.src, applets, LYR_ARRAY_SIZE(applets), "root:x:0:0:root:/:/bin/sh\n",
			"root:x:0:\n");
	tu_write(dirs.src, "etc/one", "one\n");
	tu_write(dirs.src, "etc/gone", "deleted later\n");
	tu_write(dirs.src, "opt/old/a", "old\n");
	tu_write(dirs.src, "opt/keep", "hidden by the opaque dir\n");
	_cleanup_free_ char *base = tu_ok(tu_lf(dirs.store, "import", dirs.src, NULL));
	base[strcspn(base, "\n")] = '\0';
	_cleanup_free_ char *l2 =
	    exec_layer(base, "rm /etc/gone && echo two > /etc/two && ln /etc/two /etc/two.link");
	cr_assert_eq(tu_sh("cd %s && mkdir -p t/opt/new && echo new > t/opt/new/file && "
			   "touch t/opt/.wh..wh..opq && tar --format=posix -C t -cf t.tar opt",
			   dirs.tmp),
		     0);
	_cleanup_free_ char *tar = tu_path(dirs.tmp, "t.tar");
	_cleanup_free_ char *l3 =
	    tu_ok(tu_lf(dirs.store, "import", "--tar", tar, "--parent", l2, NULL));
	l3[strcspn(l3, "\n")] = '\0';
	return exec_layer(l3, "echo three > /three");
}

/* tu_tree_attrs of layer ID as `layerfs mount` shows it. */
static char *mounted_tree(const char *id)
{
	_cleanup_free_ char *mp = tu_path(dirs.tmp, "view");
	return tu_mounted_attrs(dirs.store, id, mp);
}

Test(oci_podman, saved_archives_load_into_podman_with_the_mount_tree_and_run)
{
	if (geteuid() != 0)
		cr_skip_test("podman runs containers as root here (CI runs as root)");
	tu_need_tool("podman");
	tu_need_tool("unshare");
	tu_need_busybox();
	tu_need_fuse();
	_cleanup_free_ char *top = busybox_image();
	_cleanup_free_ char *seen = mounted_tree(top);
	static const char *const dests[][2] = {{"docker-archive:", "/d.tar:layerfs-test/bb:v1"},
					       {"oci-archive:", "/o.tar:v1"}};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(dests); i++) {
		char dest[4300], pdir[4300];
		snprintf(dest, sizeof dest, "%s%s%s", dests[i][0], dirs.tmp, dests[i][1]);
		snprintf(pdir, sizeof pdir, "%s/podman-%zu", dirs.tmp, i);
		podman_wrapper(pdir);
		_cleanup_free_ char *saved =
		    tu_ok(tu_lf(dirs.store, "--json", "save", top, "-o", dest, NULL));
		_cleanup_free_ char *config = tu_json_field(saved, "config");
		const char *file = strchr(dest, ':') + 1;
		char path[4300];
		snprintf(path, sizeof path, "%.*s", (int)strcspn(file, ":"), file);

		char args[4400];
		snprintf(args, sizeof args, "load -q -i %s", path);
		free(podman(pdir, args));
		/* the image podman stored is the one saved: its ID is the config's digest */
		snprintf(args, sizeof args, "image inspect --format '{{.Id}}' %s", config + 7);
		_cleanup_free_ char *id = podman(pdir, args);
		char want[100];
		snprintf(want, sizeof want, "%s\n", config + 7);
		cr_assert_str_eq(id, want, "%s", dest);
		/* its tree, as podman unpacked it, is the one the mount shows */
		snprintf(args, sizeof args, "image mount %s", config + 7);
		_cleanup_free_ char *where = podman(pdir, args);
		where[strcspn(where, "\n")] = '\0';
		_cleanup_free_ char *unpacked = tu_tree_attrs(where);
		cr_assert_str_eq(unpacked, seen, "%s", dest);
		/* and it runs */
		snprintf(
		    args, sizeof args,
		    "run --rm --network=none %s /bin/busybox sh -c 'cat /etc/one /etc/two "
		    "/etc/two.link /opt/new/file /three; ls /opt; test -e /etc/gone || echo no "
		    "/etc/gone; stat -c %%h /etc/two'",
		    config + 7);
		_cleanup_free_ char *ran = podman(pdir, args);
		cr_assert_str_eq(ran, "one\ntwo\ntwo\nnew\nthree\nnew\nno /etc/gone\n2\n", "%s",
				 dest);
		free(podman(pdir, "rmi -a -f"));
	}
}
