/* Helpers for the store tests: a fresh store, filling a ref's upper directly (no FUSE), a
 * text snapshot of everything a user can see in a store, and fsck findings as text. */
#pragma once

#include <criterion/criterion.h>
#include <dirent.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "layerfs/store.h"
#include "testutil.h"

#define DBT_UNUSED __attribute__((unused))

typedef struct tstore {
	char *dir;  /* temporary directory holding the store and sources */
	char *root; /* dir/store */
	lyr_store *s;
} tstore;

static DBT_UNUSED void ts_setup(tstore *t)
{
	t->dir = tu_mkdtemp();
	t->root = tu_path(t->dir, "store");
	int r = lyr_store_open(t->root, &t->s);
	cr_assert_eq(r, 0, "open %s: %s (%s)", t->root, strerror(-r), lyr_store_last_error());
}

static DBT_UNUSED void ts_teardown(tstore *t)
{
	lyr_store_free(t->s);
	tu_rmtree_unmounted(t->dir);
	free(t->root);
	free(t->dir);
}

static DBT_UNUSED void ts_reopen(tstore *t)
{
	lyr_store_free(t->s);
	int r = lyr_store_open(t->root, &t->s);
	cr_assert_eq(r, 0, "reopen: %s (%s)", strerror(-r), lyr_store_last_error());
}

/* A new ref on PARENT (NULL: scratch); ID into RET (LYR_ID_MAX). */
static DBT_UNUSED void ts_new(lyr_store *s, const char *parent, char *ret)
{
	int r = lyr_ref_new(s, parent, "test", ret);
	cr_assert_eq(r, 0, "new: %s (%s)", strerror(-r), lyr_store_last_error());
}

static DBT_UNUSED void ts_write(lyr_store *s, const char *ref, const char *rel, const char *data)
{
	char *upper, *work;
	cr_assert_eq(lyr_ref_dirs(s, ref, &upper, &work), 0);
	tu_write(upper, rel, data);
	free(upper);
	free(work);
}

/* A layer on PARENT holding REL = DATA; ID into RET. */
static DBT_UNUSED void ts_layer(lyr_store *s, const char *parent, const char *rel, const char *data,
				const char *tag, char *ret)
{
	char ref[LYR_ID_MAX];
	ts_new(s, parent, ref);
	ts_write(s, ref, rel, data);
	int r = lyr_ref_commit(s, ref, tag, NULL, ret);
	cr_assert_eq(r, 0, "commit: %s (%s)", strerror(-r), lyr_store_last_error());
}

typedef struct sbuf {
	char *p;
	size_t len;
} sbuf;

static DBT_UNUSED void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static DBT_UNUSED void sb_add(sbuf *b, const char *fmt, ...)
{
	char *line;
	va_list ap;
	va_start(ap, fmt);
	cr_assert(vasprintf(&line, fmt, ap) >= 0);
	va_end(ap);
	size_t n = strlen(line);
	b->p = realloc(b->p, b->len + n + 1);
	memcpy(b->p + b->len, line, n + 1);
	b->len += n;
	free(line);
}

static DBT_UNUSED int snap_layer(void *ctx, const lyr_layer_info *l)
{
	sbuf *b = ctx;
	sb_add(b, "layer %s parent=%s digest=%s size=%llu entries=%llu children=%u refs=%u tags=",
	       l->id, l->parent, l->diff_digest, (unsigned long long)l->size,
	       (unsigned long long)l->entries, l->children, l->refs);
	for (char **t = l->tags; t && *t; t++)
		sb_add(b, "%s%s", *t, t[1] ? "," : "");
	sb_add(b, " desc=%s\n", l->desc);
	return 0;
}

static DBT_UNUSED int snap_ref(void *ctx, const lyr_ref_info *r)
{
	sbuf *b = ctx;
	sb_add(b, "ref %s parent=%s mount=%s desc=%s\n", r->id, r->parent,
	       r->mountpoint ? r->mountpoint : "-", r->desc);
	return 0;
}

static DBT_UNUSED int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted names in ROOT/SUB, space separated. */
static DBT_UNUSED char *ts_ls(const char *root, const char *sub)
{
	char *path = tu_path(root, sub);
	DIR *d = opendir(path);
	free(path);
	sbuf b = {calloc(1, 1), 0};
	if (!d)
		return b.p;
	char *names[4096];
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 4096)
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			names[n++] = strdup(de->d_name);
	closedir(d);
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		sb_add(&b, "%s%s", i ? " " : "", names[i]);
		free(names[i]);
	}
	return b.p;
}

/* Asserts that ROOT/SUB holds nothing (or is missing). */
static DBT_UNUSED void ts_assert_empty(const char *root, const char *sub)
{
	char *ls = ts_ls(root, sub);
	cr_assert_str_eq(ls, "", "%s/%s holds '%s'", root, sub, ls);
	free(ls);
}

/* Forks a child that lives until *RET_RELEASE is closed, then exits 0 for the caller to
 * reap: its pid names a live process until then.  Returns the pid. */
static DBT_UNUSED pid_t ts_live_child(int *ret_release)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char c;
		close(fds[1]);
		read(fds[0], &c, 1);
		_exit(0);
	}
	close(fds[0]);
	*ret_release = fds[1];
	return pid;
}

/* Everything visible: layers, refs, tags (through the layers), and the directories below
 * layers/, refs/ and tmp/. */
static DBT_UNUSED char *ts_state(tstore *t)
{
	sbuf b = {calloc(1, 1), 0};
	cr_assert_eq(lyr_layer_list(t->s, snap_layer, &b), 0);
	cr_assert_eq(lyr_ref_list(t->s, snap_ref, &b), 0);
	static const char *const subs[] = {"layers", "refs", "tmp"};
	for (size_t i = 0; i < 3; i++) {
		char *ls = ts_ls(t->root, subs[i]);
		sb_add(&b, "%s/: %s\n", subs[i], ls);
		free(ls);
	}
	return b.p;
}

static DBT_UNUSED void fsck_line(void *ctx, const char *finding, bool repaired)
{
	sb_add(ctx, "%s%s\n", repaired ? "fixed: " : "", finding);
}

/* Runs fsck; returns its findings as lines ("fixed: " in front of repaired ones) and the
 * count of problems left in *RET_LEFT. */
static DBT_UNUSED char *ts_fsck(tstore *t, bool repair, int *ret_left)
{
	sbuf b = {calloc(1, 1), 0};
	int r = lyr_store_fsck(t->s, repair, fsck_line, &b);
	cr_assert_geq(r, 0, "fsck: %s", strerror(-r));
	if (ret_left)
		*ret_left = r;
	return b.p;
}

/* Runs FN in a child with $LAYERFS_FAULT = POINT, on its own handle of the store at ROOT;
 * asserts the child died by SIGKILL there. */
static DBT_UNUSED void ts_crash(const char *root, const char *point,
				void (*fn)(lyr_store *s, void *ctx), void *ctx)
{
	fflush(NULL);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		lyr_store *s;
		setenv("LAYERFS_FAULT", point, 1);
		if (lyr_store_open(root, &s) < 0)
			_exit(3);
		fn(s, ctx);
		_exit(4); /* the fault point was not reached */
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		  "child for fault %s: status %#x", point, status);
}
