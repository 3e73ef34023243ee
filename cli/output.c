/* Output for people and programs: aligned tables, a small JSON writer, size and time
 * formats, the progress line.  Everything here writes to a FILE given by the caller except
 * the progress line, which draws on stderr while stdout and stderr are terminals, at most once
 * an interval ($LAYERFS_PROGRESS_MS, default 100 ms). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

/* ---- JSON ---- */

static void json_escaped(FILE *f, const char *s)
{
	fputc('"', f);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", f);
			break;
		case '\\':
			fputs("\\\\", f);
			break;
		case '\n':
			fputs("\\n", f);
			break;
		case '\t':
			fputs("\\t", f);
			break;
		case '\r':
			fputs("\\r", f);
			break;
		default:
			if (*p < 0x20)
				fprintf(f, "\\u%04x", *p);
			else
				fputc(*p, f);
		}
	}
	fputc('"', f);
}

static void json_key(json_out *j, const char *key)
{
	if (j->need_comma[j->depth])
		fputc(',', j->f);
	j->need_comma[j->depth] = true;
	if (key) {
		json_escaped(j->f, key);
		fputc(':', j->f);
	}
}

void json_begin(json_out *j, FILE *f)
{
	memset(j, 0, sizeof(*j));
	j->f = f;
	fputc('{', f);
	j->depth = 1;
}

void json_end(json_out *j)
{
	fputs("}\n", j->f);
	fflush(j->f);
}

static void json_open(json_out *j, const char *key, char c)
{
	json_key(j, key);
	fputc(c, j->f);
	if (j->depth + 1 < (int)LYR_ARRAY_SIZE(j->need_comma))
		j->depth++;
	j->need_comma[j->depth] = false;
}

static void json_close(json_out *j, char c)
{
	fputc(c, j->f);
	if (j->depth > 0)
		j->depth--;
}

void json_obj_open(json_out *j, const char *key) { json_open(j, key, '{'); }
void json_obj_close(json_out *j) { json_close(j, '}'); }
void json_arr_open(json_out *j, const char *key) { json_open(j, key, '['); }
void json_arr_close(json_out *j) { json_close(j, ']'); }

void json_str(json_out *j, const char *key, const char *value)
{
	json_key(j, key);
	if (value)
		json_escaped(j->f, value);
	else
		fputs("null", j->f);
}

void json_u64(json_out *j, const char *key, uint64_t value)
{
	json_key(j, key);
	fprintf(j->f, "%" PRIu64, value);
}

void json_i64(json_out *j, const char *key, int64_t value)
{
	json_key(j, key);
	fprintf(j->f, "%" PRId64, value);
}

void json_bool(json_out *j, const char *key, bool value)
{
	json_key(j, key);
	fputs(value ? "true" : "false", j->f);
}

/* ---- tables ---- */

struct table {
	size_t ncols, nrows, cap;
	char **cells; /* row-major, row 0 is the header */
};

table *table_new(size_t ncols, const char *const *headers)
{
	table *t = calloc(1, sizeof(*t));
	if (!t)
		abort();
	t->ncols = ncols;
	t->cap = 16;
	t->cells = calloc(t->cap * ncols, sizeof(char *));
	if (!t->cells)
		abort();
	for (size_t c = 0; c < ncols; c++)
		t->cells[c] = strdup(headers[c]);
	t->nrows = 1;
	return t;
}

void table_row(table *t, ...)
{
	if (t->nrows == t->cap) {
		t->cap *= 2;
		t->cells = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (!t->cells)
			abort();
	}
	va_list ap;
	va_start(ap, t);
	for (size_t c = 0; c < t->ncols; c++) {
		const char *s = va_arg(ap, const char *);
		t->cells[t->nrows * t->ncols + c] = strdup(s && *s ? s : "-");
	}
	va_end(ap);
	t->nrows++;
}

void table_print(table *t, FILE *f)
{
	_cleanup_free_ size_t *width = calloc(t->ncols, sizeof(size_t));
	if (!width)
		abort();
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t w = strlen(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			if (c + 1 == t->ncols)
				fprintf(f, "%s\n", cell);
			else
				fprintf(f, "%-*s  ", (int)width[c], cell);
		}
	}
}

void table_free(table *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t);
}

/* ---- formats ---- */

void fmt_size(uint64_t bytes, char *buf, size_t len)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
	if (bytes < 1000) {
		snprintf(buf, len, "%" PRIu64 " B", bytes);
		return;
	}
	double v = (double)bytes;
	size_t u = 0;
	while (v >= 1000 && u + 1 < LYR_ARRAY_SIZE(units)) {
		v /= 1000;
		u++;
	}
	snprintf(buf, len, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void fmt_time(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	localtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

void fmt_time_rfc3339(int64_t t, char *buf, size_t len)
{
	time_t tt = (time_t)t;
	struct tm tm;
	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *short_id(const char *id, char buf[16])
{
	if (strncmp(id, LYR_DIGEST_PREFIX, strlen(LYR_DIGEST_PREFIX)) == 0)
		id += strlen(LYR_DIGEST_PREFIX);
	snprintf(buf, 16, "%.12s", id);
	return buf;
}

/* ---- progress ---- */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void progress_draw(void *ctx, uint64_t files, uint64_t bytes)
{
	progress_line *pl = ctx;
	uint64_t t = now_ns();
	if (t - pl->last_ns < pl->interval_ns)
		return;
	pl->last_ns = t;
	pl->drawn = true;
	char size[32];
	fmt_size(bytes, size, sizeof(size));
	fprintf(stderr, "\r\033[K%s: %" PRIu64 " files, %s", pl->label, files, size);
	fflush(stderr);
}

/* $LAYERFS_PROGRESS_MS, or 100 when unset or not a whole number: often enough to see work
 * move, rarely enough that drawing costs nothing; 0 draws every step (what tests compare). */
static uint64_t progress_interval_ns(void)
{
	const char *env = getenv("LAYERFS_PROGRESS_MS");
	char *end;
	if (!env || *env < '0' || *env > '9')
		return 100000000u;
	errno = 0;
	unsigned long long ms = strtoull(env, &end, 10);
	if (*end || errno || ms > UINT64_MAX / 1000000u)
		return 100000000u;
	return (uint64_t)ms * 1000000u;
}

/* The item lines, from the first (the cursor is on the line below them, where the progress
 * line is); with FINAL, each as it ends. */
static void progress_items_draw(progress_line *pl, bool final, uint64_t t)
{
	if (pl->lines)
		fprintf(stderr, "\033[%zuA", pl->lines);
	for (size_t i = 0; i < pl->n_items; i++) {
		const progress_item *it = &pl->items[i];
		char done[32], total[32], rate[32];
		fmt_size(it->done, done, sizeof done);
		fmt_size(it->total, total, sizeof total);
		const char *hex = strncmp(it->name, "sha256:", 7) == 0 ? it->name + 7 : it->name;
		if (final || (it->total && it->done == it->total)) {
			fprintf(stderr, "\r\033[Kblob %.12s  %s  done\n", hex, done);
			continue;
		}
		if (!it->total) {
			fprintf(stderr, "\r\033[Kblob %.12s  waiting\n", hex);
			continue;
		}
		double s = (double)(t - it->start_ns) / 1e9;
		fmt_size(s > 0 ? (uint64_t)((double)it->done / s) : 0, rate, sizeof rate);
		fprintf(stderr, "\r\033[Kblob %.12s  %s / %s  %s/s\n", hex, done, total, rate);
	}
	pl->lines = pl->n_items;
	fflush(stderr);
}

static void progress_item_draw(void *ctx, const char *name, uint64_t done, uint64_t total)
{
	progress_line *pl = ctx;
	uint64_t t = now_ns();
	pthread_mutex_lock(&pl->lock);
	size_t i = 0;
	while (i < pl->n_items && strcmp(pl->items[i].name, name) != 0)
		i++;
	if (i == pl->n_items) {
		progress_item *n = realloc(pl->items, (i + 1) * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&pl->lock);
			return; /* a display: nothing to fail */
		}
		pl->items = n;
		memset(&n[i], 0, sizeof n[i]);
		snprintf(n[i].name, sizeof n[i].name, "%s", name);
		pl->n_items++;
	}
	progress_item *it = &pl->items[i];
	if (!it->start_ns && (done || total))
		it->start_ns = t;
	it->done = done;
	it->total = total;
	if (t - pl->items_last_ns >= pl->interval_ns) {
		pl->items_last_ns = t;
		progress_items_draw(pl, false, t);
	}
	pthread_mutex_unlock(&pl->lock);
}

void progress_start(progress_line *pl, lyr_cli *cli, const char *label)
{
	memset(pl, 0, sizeof(*pl));
	pl->on = cli->tty && !cli->json && isatty(STDERR_FILENO);
	pl->label = label;
	pl->interval_ns = progress_interval_ns();
	pl->last_ns = now_ns(); /* first line after one interval: quick work draws nothing */
	pl->items_last_ns = pl->last_ns;
	pl->p.fn = pl->on ? progress_draw : NULL;
	pl->p.ctx = pl;
	pl->blobs.fn = pl->on ? progress_item_draw : NULL;
	pl->blobs.ctx = pl;
	pthread_mutex_init(&pl->lock, NULL);
}

void progress_done(progress_line *pl)
{
	if (pl->lines) /* the blobs' lines stay, each as it ended */
		progress_items_draw(pl, true, now_ns());
	if (pl->drawn) {
		fputs("\r\033[K", stderr);
		fflush(stderr);
	}
	free(pl->items);
	pl->items = NULL;
	pthread_mutex_destroy(&pl->lock);
}
