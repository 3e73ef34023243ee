/* cli/: the `layerfs` command line.  Each group of subcommands lives in its own file and is
 * listed in main.c's table.  Commands return an exit status: 0 success, 1 the operation
 * failed (message on stderr), 2 usage error. */
#pragma once

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "layerfs/oci.h"
#include "layerfs/store.h"

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

typedef struct lyr_cli {
	const char *root; /* --root, or NULL for the default */
	bool json;        /* --json */
	bool tty;         /* stdout is a terminal: progress lines, colours off otherwise */
	lyr_store *store; /* opened on demand by cli_store() */
} lyr_cli;

typedef struct cli_command {
	const char *name;
	int (*run)(lyr_cli *cli, int argc, char **argv);
	const char *usage;   /* arguments after the command name */
	const char *summary; /* one line for `layerfs --help` */
	const char *help;    /* option lines for `layerfs COMMAND --help` (may be NULL) */
} cli_command;

/* main.c */
const cli_command *cli_find(const char *name);
/* Prints "layerfs: " + message + "\n" to stderr; returns EXIT_FAIL. */
int cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "layerfs COMMAND: " + message and a usage hint; returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Opens the store (once); on failure prints why and returns NULL.  cli_store opens an
 * existing store only (read-only commands never create one); cli_store_create, for commands
 * that write layers or refs, creates it in a missing or empty directory; cli_store_mode
 * takes lyr_store_open_mode's flags. */
lyr_store *cli_store(lyr_cli *cli);
lyr_store *cli_store_create(lyr_cli *cli);
lyr_store *cli_store_mode(lyr_cli *cli, unsigned mode);
/* cli_store for commands that also work without a store (umount of any mount): NULL and no
 * message when there is none; *RET_FAILED is set when opening failed (and said why). */
lyr_store *cli_store_if_any(lyr_cli *cli, bool *ret_failed);
/* Parses the common options of a subcommand (--help, --json, --root) plus its own long
 * options; see main.c. */

/* Resolves a user's ID text; on failure prints a message naming TEXT and the cause and
 * returns a negative errno.  WANT restricts the kind (LYR_OBJ_NONE: either). */
int cli_resolve(lyr_cli *cli, const char *text, lyr_obj_kind want, lyr_obj_kind *ret_kind,
		char *ret_id);

/* output.c */
/* A JSON writer on stdout that tracks commas; strings are escaped. */
typedef struct json_out {
	FILE *f;
	int depth;
	bool need_comma[32];
} json_out;
void json_begin(json_out *j, FILE *f);
void json_end(json_out *j); /* newline */
void json_obj_open(json_out *j, const char *key);
void json_obj_close(json_out *j);
void json_arr_open(json_out *j, const char *key);
void json_arr_close(json_out *j);
void json_str(json_out *j, const char *key, const char *value); /* NULL value -> null */
void json_u64(json_out *j, const char *key, uint64_t value);
void json_i64(json_out *j, const char *key, int64_t value);
void json_bool(json_out *j, const char *key, bool value);

/* A table for people: columns aligned to their widest cell. */
typedef struct table table;
table *table_new(size_t ncols, const char *const *headers);
void table_row(table *t, ...); /* ncols strings (NULL prints "-") */
void table_print(table *t, FILE *f);
void table_free(table *t);

/* "1.5 MB" style decimal sizes (as docker prints them). */
void fmt_size(uint64_t bytes, char *buf, size_t len);
/* Local time "2026-11-29 15:04:05". */
void fmt_time(int64_t t, char *buf, size_t len);
/* RFC 3339 UTC "2026-11-29T15:04:05Z" for JSON. */
void fmt_time_rfc3339(int64_t t, char *buf, size_t len);
/* Short form of an ID for tables: 12 hex digits without "sha256:". */
const char *short_id(const char *id, char buf[16]);

/* Progress line on a terminal: "LABEL: N files, X MB" first drawn after an interval of work
 * and redrawn at most once an interval (100 ms, or $LAYERFS_PROGRESS_MS), erased by
 * progress_done.  Items (the blobs of a pull or push, through BLOBS) get a line each above
 * it, "blob HEX12  DONE / TOTAL  RATE/s" while they move, under the same interval; progress_done
 * leaves them as "blob HEX12  SIZE  done".  Silent when stdout or stderr is not a terminal, and
 * with --json.  LOCK serializes the item callbacks, which come from several threads. */
typedef struct progress_item {
	char name[80];
	uint64_t done, total, start_ns;
} progress_item;
typedef struct progress_line {
	bool on, drawn;
	const char *label;
	uint64_t interval_ns, last_ns, items_last_ns;
	lyr_progress p;
	lyr_oci_blob_progress blobs;
	pthread_mutex_t lock;
	progress_item *items;
	size_t n_items, lines; /* lines: item lines on the screen */
} progress_line;
void progress_start(progress_line *pl, lyr_cli *cli, const char *label);
void progress_done(progress_line *pl);
