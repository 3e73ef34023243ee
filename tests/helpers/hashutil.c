/* Test helpers over the hash module; see hashutil.h.  Failures to open the directory abort the
 * test through Criterion's assertions; the hash's own result goes back to the caller. */
#include "hashutil.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "layerfs/common.h"
#include "testutil.h"

int tu_hash_dir(const char *dir, const char *cache_prefix, const char *const *sels, size_t n,
		const lyr_hash_opts *opts, char out[LYR_DIGEST_TEXT_LEN])
{
	_cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", dir, strerror(errno));
	lyr_hash_source src;
	cr_assert_eq(lyr_hash_source_dir(fd, cache_prefix, &src), 0);
	int r = lyr_hash_selectors(&src, sels, n, opts, out);
	lyr_hash_source_dir_free(&src);
	return r;
}

static void listing(FILE *out, const char *root, const char *rel, char ***seen, size_t *nseen)
{
	char *dir = tu_path(root, rel);
	struct dirent **names;
	int n = scandir(dir, &names, NULL, alphasort);
	cr_assert_geq(n, 0, "scandir %s", dir);
	for (int i = 0; i < n; i++) {
		const char *nm = names[i]->d_name;
		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0) {
			free(names[i]);
			continue;
		}
		char p[4096], full[8192];
		snprintf(p, sizeof p, "%s%s%s", rel, *rel ? "/" : "", nm);
		snprintf(full, sizeof full, "%s/%s", root, p);
		struct stat st;
		cr_assert_eq(lstat(full, &st), 0, "%s", full);
		fprintf(out, "%s %o %u:%u %lld.%09ld", p, st.st_mode, st.st_uid, st.st_gid,
			(long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
		if (S_ISREG(st.st_mode)) {
			char key[64];
			snprintf(key, sizeof key, "%lu:%lu", (unsigned long)st.st_dev,
				 (unsigned long)st.st_ino);
			const char *first = NULL;
			for (size_t k = 0; k < *nseen; k += 2)
				if (strcmp((*seen)[k], key) == 0)
					first = (*seen)[k + 1];
			if (!first) {
				*seen = realloc(*seen, (*nseen + 2) * sizeof **seen);
				(*seen)[(*nseen)++] = strdup(key);
				(*seen)[(*nseen)++] = strdup(p);
			}
			_cleanup_free_ char *data = tu_read(root, p);
			uint8_t d[LYR_SHA256_LEN];
			char text[LYR_DIGEST_TEXT_LEN];
			lyr_sha256(data, strlen(data), d);
			lyr_digest_text(d, text);
			fprintf(out, " size=%lld %s links-to=%s", (long long)st.st_size, text,
				first ? first : "-");
		}
		if (S_ISLNK(st.st_mode)) {
			char t[4096];
			ssize_t k = readlink(full, t, sizeof t - 1);
			t[k > 0 ? k : 0] = '\0';
			fprintf(out, " -> %s", t);
		}
		if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
			fprintf(out, " dev=%u:%u", major(st.st_rdev), minor(st.st_rdev));
		char xl[4096];
		ssize_t xn = llistxattr(full, xl, sizeof xl);
		for (ssize_t k = 0; k < xn; k += (ssize_t)strlen(xl + k) + 1) {
			if (strncmp(xl + k, "security.selinux", 16) == 0)
				continue;
			char v[1024];
			ssize_t vl = lgetxattr(full, xl + k, v, sizeof v - 1);
			v[vl > 0 ? vl : 0] = '\0';
			fprintf(out, " %s=%s", xl + k, v);
		}
		fputc('\n', out);
		if (S_ISDIR(st.st_mode))
			listing(out, root, p, seen, nseen);
		free(names[i]);
	}
	free(names);
	free(dir);
}

char *tu_tree_attrs(const char *root)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	char **seen = NULL;
	size_t nseen = 0;
	listing(f, root, "", &seen, &nseen);
	fclose(f);
	for (size_t i = 0; i < nseen; i++)
		free(seen[i]);
	free(seen);
	return buf;
}

char *tu_mounted_attrs(const char *store, const char *id, const char *mp)
{
	mkdir(mp, 0755);
	free(tu_ok(tu_lf(store, "mount", id, mp, NULL)));
	char *seen = tu_tree_attrs(mp);
	free(tu_ok(tu_lf(store, "umount", mp, NULL)));
	return seen;
}
