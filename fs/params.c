/* The fuse-overlayfs-compatible command line: `overlay -o OPTS MOUNTPOINT` and mount(8)'s helper
 * form `mount.fuse.layerfs SOURCE MOUNTPOINT -o OPTS`.  Option strings are comma-separated; a
 * double-quoted value (context="a,b") and a backslash-escaped character (\, \: \\) do not split;
 * lowerdir is ':'-separated with the same escapes.  Empty elements are skipped; unknown options
 * are accepted with one warning line, as fuse-overlayfs does, so that callers written for it
 * (podman, buildah, fstab entries) keep working. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "layerfs/version.h"
#include "ovl.h"

struct lyr_fs_options {
	lyr_fs_config cfg;
	char **lowers;
	size_t nlowers;
	char *upper, *work, *context;
	lyr_fs_idmap *uidmap, *gidmap;
	size_t nuid, ngid;
	char unknown[1024];
	char error[512];
};

static void usage(FILE *out, const char *prog)
{
	fprintf(
	    out,
	    "usage: %s -o lowerdir=LOWER[:LOWER...][,upperdir=UPPER,workdir=WORK][,OPTION...] "
	    "MOUNTPOINT\n"
	    "       mount.fuse.layerfs SOURCE MOUNTPOINT -o OPTIONS\n"
	    "Mounts a copy-on-write overlay of the lower directories (topmost first) and UPPER.\n"
	    "Without upperdir the mount is read-only.  Options (as fuse-overlayfs):\n"
	    "  uidmapping=C:H:S[:C:H:S...], gidmapping=...   id mappings (container:host:size)\n"
	    "  squash_to_root, squash_to_uid=N, squash_to_gid=N\n"
	    "  xattr_permissions=0|1|2   keep owner and mode in an xattr (1: "
	    "user.containers.override_stat,\n"
	    "                            2: security.fuseoverlayfs.override_stat)\n"
	    "  volatile, fsync=0         fsync does nothing\n"
	    "  static_nlink              directories report 1 link\n"
	    "  noacl                     POSIX ACLs not enforced (their xattrs: EOPNOTSUPP)\n"
	    "  timeout=SECONDS, threaded=0|1, writeback=0|1, max_write=BYTES\n"
	    "  ro, dev|nodev (default nodev), suid|nosuid (default suid for root), noexec,\n"
	    "  relatime (default), noatime, nodiratime, allow_other, allow_root,\n"
	    "  default_permissions,\n"
	    "  context=\"...\"\n"
	    "  -f  stay in the foreground    -d  debug output\n",
	    prog);
}

/* Removes backslash escapes in place. */
static void unescape(char *s)
{
	char *w = s;
	for (char *r = s; *r; r++) {
		if (*r == '\\' && r[1])
			r++;
		*w++ = *r;
	}
	*w = '\0';
}

static int add_lower(struct lyr_fs_options *a, const char *path)
{
	if (a->nlowers >= OVL_LOWERS_MAX) {
		snprintf(a->error, sizeof(a->error), "more than %d lower directories",
			 OVL_LOWERS_MAX);
		return -EINVAL;
	}
	char **l = realloc(a->lowers, (a->nlowers + 1) * sizeof(char *));
	if (!l)
		return -ENOMEM;
	a->lowers = l;
	char *abs = realpath(path, NULL);
	if (!abs) {
		snprintf(a->error, sizeof(a->error), "lower directory '%s': %s", path,
			 strerror(errno));
		return -errno;
	}
	a->lowers[a->nlowers++] = abs;
	return 0;
}

static int parse_lowers(struct lyr_fs_options *a, const char *value)
{
	_cleanup_free_ char *buf = strdup(value);
	if (!buf)
		return -ENOMEM;
	char *start = buf;
	for (char *p = buf;; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == ':' || *p == '\0') {
			bool end = *p == '\0';
			*p = '\0';
			if (*start) {
				unescape(start);
				int r = add_lower(a, start);
				if (r < 0)
					return r;
			}
			if (end)
				break;
			start = p + 1;
		}
	}
	return 0;
}

static int parse_idmap(struct lyr_fs_options *a, const char *key, const char *value,
		       lyr_fs_idmap **ret, size_t *ret_n)
{
	const char *p = value;
	if (*p == ':')
		p++;
	size_t n = 0;
	lyr_fs_idmap *m = NULL;
	while (*p) {
		unsigned long v[3];
		for (int i = 0; i < 3; i++) {
			char *end;
			errno = 0;
			v[i] = strtoul(p, &end, 10);
			if (errno || end == p || v[i] > UINT32_MAX ||
			    (*end != ':' && *end != '\0') || (i < 2 && *end != ':')) {
				free(m);
				snprintf(a->error, sizeof(a->error),
					 "option %s=%s: expected C:H:S triplets of numbers", key,
					 value);
				return -EINVAL;
			}
			p = *end ? end + 1 : end;
		}
		lyr_fs_idmap *g = realloc(m, (n + 1) * sizeof(*m));
		if (!g) {
			free(m);
			return -ENOMEM;
		}
		m = g;
		m[n++] = (lyr_fs_idmap){(uint32_t)v[0], (uint32_t)v[1], (uint32_t)v[2]};
	}
	free(*ret);
	*ret = m;
	*ret_n = n;
	return 0;
}

static int parse_num(struct lyr_fs_options *a, const char *key, const char *value, long long *ret)
{
	char *end;
	errno = 0;
	long long v = value ? strtoll(value, &end, 10) : 0;
	if (!value || errno || end == value || *end || v < 0) {
		snprintf(a->error, sizeof(a->error), "option %s needs a non-negative number", key);
		return -EINVAL;
	}
	*ret = v;
	return 0;
}

static void note_unknown(struct lyr_fs_options *a, const char *opt)
{
	size_t len = strlen(a->unknown);
	snprintf(a->unknown + len, sizeof(a->unknown) - len, "%s%s", len ? "," : "", opt);
}

static int set_string(char **slot, const char *value)
{
	free(*slot);
	*slot = strdup(value ? value : "");
	return *slot ? 0 : -ENOMEM;
}

static int apply_option(struct lyr_fs_options *a, char *opt)
{
	char *value = strchr(opt, '=');
	if (value)
		*value++ = '\0';
	const char *k = opt;
	lyr_fs_config *c = &a->cfg;
	long long n;
	int r;
	if (strcmp(k, "lowerdir") == 0) {
		if (!value || !*value) {
			snprintf(a->error, sizeof(a->error),
				 "option lowerdir needs directories (lowerdir=A[:B...])");
			return -EINVAL;
		}
		return parse_lowers(a, value);
	}
	if (strcmp(k, "upperdir") == 0 || strcmp(k, "workdir") == 0) {
		if (!value || !*value) {
			snprintf(a->error, sizeof(a->error), "option %s needs a directory", k);
			return -EINVAL;
		}
		unescape(value);
		char *abs = realpath(value, NULL);
		if (!abs) {
			snprintf(a->error, sizeof(a->error), "%s '%s': %s", k, value,
				 strerror(errno));
			return -errno;
		}
		char **slot = k[0] == 'u' ? &a->upper : &a->work;
		free(*slot);
		*slot = abs;
		return 0;
	}
	if (strcmp(k, "uidmapping") == 0 || strcmp(k, "gidmapping") == 0) {
		if (!value || !*value || strcmp(value, ":") == 0) {
			snprintf(a->error, sizeof(a->error),
				 "option %s needs mappings (%s=C:H:S[:C:H:S...])", k, k);
			return -EINVAL;
		}
		return k[0] == 'u' ? parse_idmap(a, k, value, &a->uidmap, &a->nuid)
				   : parse_idmap(a, k, value, &a->gidmap, &a->ngid);
	}
	if (strcmp(k, "squash_to_root") == 0) {
		c->squash_to_root = true;
		return 0;
	}
	if (strcmp(k, "squash_to_uid") == 0 || strcmp(k, "squash_to_gid") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0)
			return r;
		*(k[9] == 'u' ? &c->squash_to_uid : &c->squash_to_gid) = n;
		return 0;
	}
	if (strcmp(k, "xattr_permissions") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0 || n > 2) {
			snprintf(a->error, sizeof(a->error), "xattr_permissions must be 0, 1 or 2");
			return -EINVAL;
		}
		c->xattr_permissions = (int)n;
		return 0;
	}
	if (strcmp(k, "volatile") == 0) {
		c->no_fsync = true;
		return 0;
	}
	if (strcmp(k, "fsync") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0)
			return r;
		c->no_fsync = n == 0;
		return 0;
	}
	if (strcmp(k, "static_nlink") == 0) {
		c->static_nlink = true;
		return 0;
	}
	if (strcmp(k, "noacl") == 0) {
		c->noacl = true;
		return 0;
	}
	if (strcmp(k, "timeout") == 0) {
		char *end;
		double t = value ? strtod(value, &end) : -1;
		if (!value || end == value || *end || t < 0) {
			snprintf(a->error, sizeof(a->error),
				 "option timeout needs a number of seconds");
			return -EINVAL;
		}
		c->timeout = t;
		return 0;
	}
	if (strcmp(k, "threaded") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0)
			return r;
		c->threads = n ? 0 : 1;
		return 0;
	}
	if (strcmp(k, "writeback") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0)
			return r;
		c->writeback = n != 0;
		return 0;
	}
	if (strcmp(k, "max_write") == 0) {
		if ((r = parse_num(a, k, value, &n)) < 0)
			return r;
		c->max_write = n > (1 << 20) ? 1u << 20 : (unsigned)n;
		return 0;
	}
	if (strcmp(k, "context") == 0) {
		if (value) {
			size_t len = strlen(value);
			if (len >= 2 && value[0] == '"' && value[len - 1] == '"') {
				value[len - 1] = '\0';
				value++;
			}
		}
		return set_string(&a->context, value);
	}
	static const struct {
		const char *name;
		size_t off;
		bool val;
	} flags[] = {
	    {"ro", offsetof(lyr_fs_config, read_only), true},
	    {"rw", offsetof(lyr_fs_config, read_only), false},
	    {"nodev", offsetof(lyr_fs_config, nodev), true},
	    {"dev", offsetof(lyr_fs_config, nodev), false},
	    {"nosuid", offsetof(lyr_fs_config, nosuid), true},
	    {"suid", offsetof(lyr_fs_config, nosuid), false},
	    {"noexec", offsetof(lyr_fs_config, noexec), true},
	    {"exec", offsetof(lyr_fs_config, noexec), false},
	    {"noatime", offsetof(lyr_fs_config, noatime), true},
	    {"atime", offsetof(lyr_fs_config, noatime), false},
	    {"relatime", offsetof(lyr_fs_config, noatime), false},
	    {"nodiratime", offsetof(lyr_fs_config, nodiratime), true},
	    {"diratime", offsetof(lyr_fs_config, nodiratime), false},
	    {"allow_other", offsetof(lyr_fs_config, allow_other), true},
	    {"allow_root", offsetof(lyr_fs_config, allow_root), true},
	    {"debug", offsetof(lyr_fs_config, debug), true},
	};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(flags); i++) {
		if (strcmp(k, flags[i].name) == 0 && !value) {
			*(bool *)((char *)c + flags[i].off) = flags[i].val;
			return 0;
		}
	}
	if (strcmp(k, "strictatime") == 0) {
		snprintf(a->error, sizeof(a->error),
			 "option strictatime is not supported: reads served from the kernel's page "
			 "cache never reach the daemon, so atime moves only when a file is opened "
			 "(relatime's rule, the default) or never (noatime)");
		return -EINVAL;
	}
	/* always on, or meaningless here */
	if (strcmp(k, "default_permissions") == 0 || strcmp(k, "fsname") == 0 ||
	    strcmp(k, "subtype") == 0 || strcmp(k, "defaults") == 0 || strcmp(k, "auto") == 0 ||
	    strcmp(k, "noauto") == 0 || strcmp(k, "user") == 0 || strcmp(k, "nouser") == 0 ||
	    strcmp(k, "_netdev") == 0)
		return 0;
	if (value)
		value[-1] = '=';
	note_unknown(a, opt);
	return 0;
}

/* Splits an -o string at commas outside quotes and escapes and applies each element. */
static int parse_options(struct lyr_fs_options *a, const char *text)
{
	_cleanup_free_ char *buf = strdup(text);
	if (!buf)
		return -ENOMEM;
	char *start = buf;
	bool quoted = false;
	for (char *p = buf;; p++) {
		if (*p == '\\' && p[1]) {
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		if ((*p == ',' && !quoted) || *p == '\0') {
			bool end = *p == '\0';
			*p = '\0';
			if (*start) {
				int r = apply_option(a, start);
				if (r < 0)
					return r;
			}
			if (end)
				return 0;
			start = p + 1;
		}
	}
}

int lyr_fs_options_new(lyr_fs_options **ret)
{
	lyr_fs_options *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	lyr_fs_config_init(&o->cfg);
	*ret = o;
	return 0;
}

int lyr_fs_options_parse(lyr_fs_options *o, const char *text)
{
	o->error[0] = '\0';
	return parse_options(o, text);
}

const char *lyr_fs_options_error(const lyr_fs_options *o)
{
	return o->error;
}

const char *lyr_fs_options_unknown(const lyr_fs_options *o)
{
	return o->unknown;
}

bool lyr_fs_options_has_dirs(const lyr_fs_options *o)
{
	return o->nlowers || o->upper || o->work;
}

lyr_fs_config *lyr_fs_options_config(lyr_fs_options *o)
{
	o->cfg.lowers = (const char *const *)o->lowers;
	o->cfg.nlowers = o->nlowers;
	o->cfg.upper = o->upper;
	o->cfg.work = o->work;
	o->cfg.context = o->context;
	o->cfg.uidmap = o->uidmap;
	o->cfg.nuidmap = o->nuid;
	o->cfg.gidmap = o->gidmap;
	o->cfg.ngidmap = o->ngid;
	return &o->cfg;
}

static void args_free(struct lyr_fs_options *a)
{
	for (size_t i = 0; i < a->nlowers; i++)
		free(a->lowers[i]);
	free(a->lowers);
	free(a->upper);
	free(a->work);
	free(a->context);
	free(a->uidmap);
	free(a->gidmap);
}

void lyr_fs_options_free(lyr_fs_options *o)
{
	if (!o)
		return;
	args_free(o);
	free(o);
}

int lyr_fs_overlay_main(int argc, char **argv)
{
	const char *prog = argc > 0 ? argv[0] : "layerfs overlay";
	const char *base = strrchr(prog, '/') ? strrchr(prog, '/') + 1 : prog;
	bool helper = strcmp(base, "mount.fuse.layerfs") == 0;
	struct lyr_fs_options a;
	memset(&a, 0, sizeof(a));
	lyr_fs_config_init(&a.cfg);
	/* containers run as root expect other users (the container's) to get in */
	a.cfg.allow_other = geteuid() == 0;
	const char *positional[3] = {NULL};
	size_t npos = 0;
	int status = 2;
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		int r = 0;
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(stdout, prog);
			status = 0;
			goto out;
		} else if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) {
			printf("layerfs overlay %s\nfuse-overlayfs compatible; FUSE library %s\n",
			       LAYERFS_VERSION, fuse_pkgversion());
			status = 0;
			goto out;
		} else if (strcmp(arg, "-o") == 0) {
			if (++i >= argc) {
				fprintf(stderr, "%s: -o needs an argument\n", prog);
				goto out;
			}
			r = parse_options(&a, argv[i]);
		} else if (strncmp(arg, "-o", 2) == 0) {
			r = parse_options(&a, arg + 2);
		} else if (strcmp(arg, "-f") == 0) {
			a.cfg.foreground = true;
		} else if (strcmp(arg, "-d") == 0) {
			a.cfg.debug = a.cfg.foreground = true;
		} else if (helper && (strcmp(arg, "-n") == 0 || strcmp(arg, "-s") == 0 ||
				      strcmp(arg, "-v") == 0)) {
			/* mount(8) helper flags: no mtab, sloppy, verbose */
		} else if (arg[0] == '-' && arg[1]) {
			fprintf(stderr, "%s: unknown argument '%s'\n", prog, arg);
			goto out;
		} else if (npos < LYR_ARRAY_SIZE(positional)) {
			positional[npos++] = arg;
		} else {
			fprintf(stderr, "%s: too many arguments\n", prog);
			goto out;
		}
		if (r < 0) {
			fprintf(stderr, "%s: %s\n", prog, a.error[0] ? a.error : strerror(-r));
			status = r == -EINVAL ? 2 : 1;
			goto out;
		}
	}
	const char *mountpoint = NULL;
	if (helper ? npos == 2 : npos == 1)
		mountpoint = positional[npos - 1];
	else if (!helper && npos == 2)
		mountpoint = positional[1]; /* a SOURCE given anyway, as fuse-overlayfs tolerates */
	if (!mountpoint) {
		usage(stderr, prog);
		goto out;
	}
	if (a.nlowers == 0) {
		fprintf(stderr, "%s: no lowerdir given\n", prog);
		goto out;
	}
	if (a.unknown[0])
		fprintf(stderr, "%s: ignoring unknown options: %s\n", prog, a.unknown);
	lyr_fs_options_config(&a);
	a.cfg.fsname = helper && npos == 2 ? positional[0] : "layerfs";
	lyr_fs_error err = {{0}};
	int r = lyr_fs_clear_dead(mountpoint, &err);
	if (r > 0)
		fprintf(stderr, "%s: cleared the dead layerfs mount at '%s'\n", prog, mountpoint);
	pid_t pid;
	if (r >= 0)
		r = lyr_fs_mount(&a.cfg, mountpoint, &err, &pid);
	if (r < 0) {
		fprintf(stderr, "%s: cannot mount at '%s': %s\n", prog, mountpoint,
			err.msg[0] ? err.msg : strerror(-r));
		status = 1;
		goto out;
	}
	status = 0;
out:
	args_free(&a);
	return status;
}
