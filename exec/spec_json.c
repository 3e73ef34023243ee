/* The --spec FILE.json form of an exec op (schema: docs/exec-spec.md).  Parsing is strict:
 * jansson rejects duplicate keys and trailing garbage, and this file rejects unknown keys and
 * wrong types, naming the JSON path of the offending value ("mounts[1].size"). */
#include "layerfs/exec.h"

#include <jansson.h>
#include <string.h>

#include "internal.h"

static void decrefp(json_t **j)
{
	if (*j)
		json_decref(*j);
}

static int want_string(json_t *v, const char *where, const char **ret, lyr_exec_error *err)
{
	if (!json_is_string(v)) {
		lyr_exec_errf(err, "%s: expected a string", where);
		return -EINVAL;
	}
	if (strlen(json_string_value(v)) != json_string_length(v)) {
		lyr_exec_errf(err, "%s: contains a NUL character", where);
		return -EINVAL;
	}
	*ret = json_string_value(v);
	return 0;
}

static int want_bool(json_t *v, const char *where, bool *ret, lyr_exec_error *err)
{
	if (!json_is_boolean(v)) {
		lyr_exec_errf(err, "%s: expected true or false", where);
		return -EINVAL;
	}
	*ret = json_is_true(v);
	return 0;
}

/* Feeds every string of array V to ADD (one of the op appenders). */
static int string_array(lyr_exec_op *op, json_t *v, const char *key,
			int (*add)(lyr_exec_op *, const char *, lyr_exec_error *),
			lyr_exec_error *err)
{
	if (!json_is_array(v)) {
		lyr_exec_errf(err, "%s: expected an array of strings", key);
		return -EINVAL;
	}
	size_t i;
	json_t *item;
	json_array_foreach(v, i, item)
	{
		char where[64];
		snprintf(where, sizeof where, "%s[%zu]", key, i);
		const char *s;
		int r = want_string(item, where, &s, err);
		if (r < 0)
			return r;
		r = add(op, s, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_arg(lyr_exec_op *op, const char *s, lyr_exec_error *err)
{
	(void)err;
	return lyr_exec_op_add_arg(op, s);
}

static int add_cache_from(lyr_exec_op *op, const char *s, lyr_exec_error *err)
{
	(void)err;
	return lyr_exec_op_add_cache_from(op, s);
}

static int add_cache_to(lyr_exec_op *op, const char *s, lyr_exec_error *err)
{
	(void)err;
	return lyr_exec_op_add_cache_to(op, s);
}

static int parse_mount(lyr_exec_op *op, json_t *v, size_t idx, lyr_exec_error *err)
{
	char where[64];
	snprintf(where, sizeof where, "mounts[%zu]", idx);
	if (!json_is_object(v)) {
		lyr_exec_errf(err, "%s: expected an object", where);
		return -EINVAL;
	}
	lyr_exec_mount m = {0};
	unsigned seen = 0;
	lyr_exec_error sub;
	int r = 0;
	const char *key;
	json_t *val;
	json_object_foreach(v, key, val)
	{
		char kwhere[128];
		snprintf(kwhere, sizeof kwhere, "%s.%s", where, key);
		char num[32];
		const char *text = NULL;
		if (strcmp(key, "readonly") == 0 || strcmp(key, "output") == 0) {
			bool b;
			r = want_bool(val, kwhere, &b, err);
			if (r < 0)
				goto out;
			text = b ? "true" : "false";
		} else if (strcmp(key, "size") == 0) {
			if (!json_is_integer(val) || json_integer_value(val) <= 0) {
				lyr_exec_errf(err, "%s: expected a positive integer", kwhere);
				r = -EINVAL;
				goto out;
			}
			snprintf(num, sizeof num, "%lld", (long long)json_integer_value(val));
			text = num;
		} else {
			r = want_string(val, kwhere, &text, err);
			if (r < 0)
				goto out;
		}
		r = lyr_exec_mount_set(&m, key, text, &seen, &sub);
		if (r < 0) {
			if (r == -EINVAL)
				lyr_exec_errf(err, "%s: %s", where, sub.msg);
			goto out;
		}
	}
	r = lyr_exec_mount_finish(&m, seen, &sub);
	if (r == -EINVAL)
		lyr_exec_errf(err, "%s: %s", where, sub.msg);
	if (r >= 0)
		r = lyr_exec_op_push_mount(op, &m);
out:
	free(m.target);
	free(m.source);
	free(m.selector);
	free(m.cache_id);
	return r;
}

/* PRE starts the messages about the document as a whole ("spec: " or ""). */
static int parse_top(lyr_exec_op *op, json_t *doc, const char *pre, lyr_exec_error *err)
{
	if (!json_is_object(doc)) {
		lyr_exec_errf(err, "%sexpected a JSON object at the top", pre);
		return -EINVAL;
	}
	const char *key;
	json_t *v;
	json_object_foreach(doc, key, v)
	{
		int r;
		const char *s;
		if (strcmp(key, "args") == 0) {
			r = string_array(op, v, key, add_arg, err);
		} else if (strcmp(key, "env") == 0) {
			r = string_array(op, v, key, lyr_exec_op_add_env, err);
		} else if (strcmp(key, "proxy_env") == 0) {
			r = string_array(op, v, key, lyr_exec_op_add_proxy_env, err);
		} else if (strcmp(key, "cache_from") == 0) {
			r = string_array(op, v, key, add_cache_from, err);
		} else if (strcmp(key, "cache_to") == 0) {
			r = string_array(op, v, key, add_cache_to, err);
		} else if (strcmp(key, "mounts") == 0) {
			if (!json_is_array(v)) {
				lyr_exec_errf(err, "mounts: expected an array of objects");
				return -EINVAL;
			}
			size_t i;
			json_t *item;
			r = 0;
			json_array_foreach(v, i, item)
			{
				r = parse_mount(op, item, i, err);
				if (r < 0)
					break;
			}
		} else if (strcmp(key, "cache") == 0) {
			r = want_bool(v, key, &op->cache, err);
		} else if (strcmp(key, "interactive") == 0) {
			r = want_bool(v, key, &op->interactive, err);
		} else if (strcmp(key, "commit_on_failure") == 0) {
			r = want_bool(v, key, &op->commit_on_failure, err);
		} else if (strcmp(key, "tls_verify") == 0) {
			r = want_bool(v, key, &op->tls_verify, err);
		} else if (strcmp(key, "root") == 0 || strcmp(key, "cwd") == 0 ||
			   strcmp(key, "user") == 0 || strcmp(key, "hostname") == 0 ||
			   strcmp(key, "network") == 0 || strcmp(key, "security") == 0) {
			r = want_string(v, key, &s, err);
			if (r < 0)
				return r;
			if (key[0] == 'r')
				r = lyr_exec_op_set_root(op, s);
			else if (key[0] == 'c')
				r = lyr_exec_op_set_cwd(op, s, err);
			else if (key[0] == 'u')
				r = lyr_exec_op_set_user(op, s, err);
			else if (key[0] == 'h')
				r = lyr_exec_op_set_hostname(op, s, err);
			else if (key[0] == 's')
				r = lyr_exec_op_set_security(op, s, err);
			else
				r = lyr_exec_op_set_network(op, s, err);
		} else {
			lyr_exec_errf(err, "%sunknown key '%s'", pre, key);
			return -EINVAL;
		}
		if (r < 0)
			return r;
	}
	return lyr_exec_op_validate(op, err);
}

/* lyr_exec_op_parse_json, whose messages about the whole document start with PRE. */
static int parse_text(const char *text, const char *pre, lyr_exec_op **ret, lyr_exec_error *err)
{
	json_error_t jerr;
	_cleanup_(decrefp) json_t *doc = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!doc) {
		lyr_exec_errf(err, "%sline %d column %d: %s", pre, jerr.line, jerr.column,
			      jerr.text);
		return -EINVAL;
	}
	lyr_exec_op *op = NULL;
	int r = lyr_exec_op_new(&op);
	if (r < 0)
		return r;
	r = parse_top(op, doc, pre, err);
	if (r < 0) {
		lyr_exec_op_free(op);
		return r;
	}
	*ret = op;
	return 0;
}

int lyr_exec_op_parse_json(const char *text, lyr_exec_op **ret, lyr_exec_error *err)
{
	return parse_text(text, "spec: ", ret, err);
}

int lyr_exec_op_load_json(const char *path, lyr_exec_op **ret, lyr_exec_error *err)
{
	_cleanup_free_ char *text = NULL;
	size_t len = 0;
	int r = lyr_read_file_max(path, LYR_EXEC_SPEC_MAX, &text, &len);
	if (r == -EFBIG) {
		lyr_exec_errf(err, "spec '%s': larger than the limit of %d MiB", path,
			      LYR_EXEC_SPEC_MAX >> 20);
		return r;
	}
	if (r < 0) {
		lyr_exec_errf(err, "spec '%s': %s", path, strerror(-r));
		return r;
	}
	if (strlen(text) != len) {
		lyr_exec_errf(err, "spec '%s': contains a NUL byte", path);
		return -EINVAL;
	}
	lyr_exec_error sub = {{0}};
	r = parse_text(text, "", ret, &sub); /* every message gets the file's name below */
	if (r == -EINVAL)
		lyr_exec_errf(err, "spec '%s': %s", path, sub.msg);
	return r;
}
