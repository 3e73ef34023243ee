/* The exec op: construction from command-line pieces, the --mount SPEC grammar, path
 * normalization and validation.  An op owns every string it points at; lyr_exec_op_validate
 * leaves its mounts sorted by target in component order, which is both the order they are
 * applied (parents first) and the order the cache key encodes them in. */
#include "layerfs/exec.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "internal.h"

void lyr_exec_errf(lyr_exec_error *err, const char *fmt, ...)
{
	if (!err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof err->msg, fmt, ap);
	va_end(ap);
}

int lyr_exec_op_new(lyr_exec_op **ret)
{
	lyr_exec_op *op = calloc(1, sizeof *op);
	if (!op)
		return -ENOMEM;
	op->network = LYR_NET_NONE;
	op->tls_verify = true;
	*ret = op;
	return 0;
}

static void strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

static void mount_clear(lyr_exec_mount *m)
{
	free(m->target);
	free(m->source);
	free(m->selector);
	free(m->cache_id);
	memset(m, 0, sizeof *m);
}

void lyr_exec_op_free(lyr_exec_op *op)
{
	if (!op)
		return;
	free(op->root);
	strv_free(op->args);
	strv_free(op->env);
	strv_free(op->proxy_env);
	free(op->cwd);
	free(op->user);
	free(op->hostname);
	strv_free(op->cache_from);
	strv_free(op->cache_to);
	for (size_t i = 0; i < op->n_mounts; i++)
		mount_clear(&op->mounts[i]);
	free(op->mounts);
	free(op);
}

/* Appends a copy of S to the NULL-terminated vector *V of length *N, which only this function
 * has grown.  Its capacity follows from its length: whenever the slots in use (*N + 1, the
 * NULL included) are a power of two, the vector is full and doubles.  So N pushes copy O(N)
 * pointers in all, also where realloc always copies (as under AddressSanitizer). */
static int strv_push(char ***v, size_t *n, const char *s)
{
	size_t used = *n + 1;
	char **nv = *v;
	if ((used & (used - 1)) == 0) {
		nv = realloc(*v, 2 * used * sizeof(char *));
		if (!nv)
			return -ENOMEM;
		*v = nv;
	}
	nv[*n] = strdup(s);
	if (!nv[*n]) {
		nv[*n] = NULL;
		return -ENOMEM;
	}
	nv[++*n] = NULL;
	return 0;
}

static int set_str(char **field, const char *s)
{
	char *c = strdup(s);
	if (!c)
		return -ENOMEM;
	free(*field);
	*field = c;
	return 0;
}

int lyr_exec_op_set_root(lyr_exec_op *op, const char *root)
{
	return set_str(&op->root, root);
}

int lyr_exec_op_add_arg(lyr_exec_op *op, const char *arg)
{
	return strv_push(&op->args, &op->n_args, arg);
}

int lyr_exec_op_add_cache_from(lyr_exec_op *op, const char *name)
{
	return strv_push(&op->cache_from, &op->n_cache_from, name);
}

int lyr_exec_op_add_cache_to(lyr_exec_op *op, const char *name)
{
	return strv_push(&op->cache_to, &op->n_cache_to, name);
}

static bool valid_env_name(const char *kv, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (kv[i] == '\0')
			return false;
	return true;
}

int lyr_exec_op_add_env(lyr_exec_op *op, const char *kv, lyr_exec_error *err)
{
	const char *eq = strchr(kv, '=');
	if (!eq || !valid_env_name(kv, (size_t)(eq - kv))) {
		lyr_exec_errf(err, "env '%s': expected NAME=VALUE", kv);
		return -EINVAL;
	}
	return strv_push(&op->env, &op->n_env, kv);
}

bool lyr_exec_is_proxy_name(const char *name, size_t len)
{
	static const char *const names[] = {"HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY",
					    "ALL_PROXY"};
	for (size_t i = 0; i < LYR_ARRAY_SIZE(names); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return true;
	return false;
}

int lyr_exec_op_add_proxy_env(lyr_exec_op *op, const char *kv, lyr_exec_error *err)
{
	const char *eq = strchr(kv, '=');
	if (!eq || !lyr_exec_is_proxy_name(kv, (size_t)(eq - kv))) {
		lyr_exec_errf(err, "proxy env '%s': expected one of %s as NAME=VALUE", kv,
			      LYR_EXEC_PROXY_NAMES);
		return -EINVAL;
	}
	return strv_push(&op->proxy_env, &op->n_proxy_env, kv);
}

int lyr_exec_path_normalize(const char *path, char **ret)
{
	if (!path || path[0] != '/')
		return -EINVAL;
	size_t len = strlen(path);
	_cleanup_free_ char *out = malloc(len + 2);
	if (!out)
		return -ENOMEM;
	size_t o = 0;
	const char *p = path;
	while (*p) {
		while (*p == '/')
			p++;
		if (!*p)
			break;
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 1 && p[0] == '.') {
			p = end;
			continue;
		}
		if (n == 2 && p[0] == '.' && p[1] == '.')
			return -EINVAL;
		out[o++] = '/';
		memcpy(out + o, p, n);
		o += n;
		p = end;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	*ret = LYR_TAKE_PTR(out);
	return 0;
}

int lyr_exec_op_set_cwd(lyr_exec_op *op, const char *cwd, lyr_exec_error *err)
{
	char *n = NULL;
	int r = lyr_exec_path_normalize(cwd, &n);
	if (r == -EINVAL)
		lyr_exec_errf(err, "cwd '%s': must be an absolute path without '..'", cwd);
	if (r < 0)
		return r;
	free(op->cwd);
	op->cwd = n;
	return 0;
}

int lyr_exec_op_set_user(lyr_exec_op *op, const char *user, lyr_exec_error *err)
{
	const char *colon = strchr(user, ':');
	if (!*user || user == colon || (colon && (!colon[1] || strchr(colon + 1, ':')))) {
		lyr_exec_errf(err, "user '%s': expected UID[:GID] or NAME[:GROUP]", user);
		return -EINVAL;
	}
	return set_str(&op->user, user);
}

int lyr_exec_op_set_hostname(lyr_exec_op *op, const char *hostname, lyr_exec_error *err)
{
	size_t n = strlen(hostname);
	bool ok = n > 0 && n <= 64;
	for (size_t i = 0; ok && i < n; i++)
		ok = isalnum((unsigned char)hostname[i]) || hostname[i] == '-' ||
		     hostname[i] == '.' || hostname[i] == '_';
	if (!ok) {
		lyr_exec_errf(err, "hostname '%s': 1-64 letters, digits, '-', '_' or '.'",
			      hostname);
		return -EINVAL;
	}
	return set_str(&op->hostname, hostname);
}

/* Which of the two words FIRST and SECOND VALUE is (0 or 1); -EINVAL with ERR naming KEY
 * otherwise. */
static int one_of_two(const char *key, const char *value, const char *first, const char *second,
		      lyr_exec_error *err)
{
	if (strcmp(value, first) == 0)
		return 0;
	if (strcmp(value, second) == 0)
		return 1;
	lyr_exec_errf(err, "%s '%s': expected %s or %s", key, value, first, second);
	return -EINVAL;
}

int lyr_exec_op_set_network(lyr_exec_op *op, const char *network, lyr_exec_error *err)
{
	int r = one_of_two("network", network, "none", "host", err);
	if (r < 0)
		return r;
	op->network = r ? LYR_NET_HOST : LYR_NET_NONE;
	return 0;
}

int lyr_exec_op_set_security(lyr_exec_op *op, const char *security, lyr_exec_error *err)
{
	int r = one_of_two("security", security, "sandbox", "insecure", err);
	if (r < 0)
		return r;
	op->security = r ? LYR_SECURITY_INSECURE : LYR_SECURITY_SANDBOX;
	return 0;
}

int lyr_exec_mount_type_parse(const char *s, lyr_mount_type *ret)
{
	if (strcmp(s, "bind") == 0)
		*ret = LYR_MOUNT_BIND;
	else if (strcmp(s, "cache") == 0)
		*ret = LYR_MOUNT_CACHE;
	else if (strcmp(s, "tmpfs") == 0)
		*ret = LYR_MOUNT_TMPFS;
	else
		return -EINVAL;
	return 0;
}

int lyr_exec_sharing_parse(const char *s, lyr_sharing *ret)
{
	if (strcmp(s, "shared") == 0)
		*ret = LYR_SHARING_SHARED;
	else if (strcmp(s, "private") == 0)
		*ret = LYR_SHARING_PRIVATE;
	else if (strcmp(s, "locked") == 0)
		*ret = LYR_SHARING_LOCKED;
	else
		return -EINVAL;
	return 0;
}

const char *lyr_exec_mount_type_name(lyr_mount_type t)
{
	return t == LYR_MOUNT_CACHE ? "cache" : t == LYR_MOUNT_TMPFS ? "tmpfs" : "bind";
}

const char *lyr_exec_sharing_name(lyr_sharing s)
{
	return s == LYR_SHARING_PRIVATE ? "private" : s == LYR_SHARING_LOCKED ? "locked" : "shared";
}

int lyr_exec_size_parse(const char *s, uint64_t *ret)
{
	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end || v == 0)
		return -EINVAL;
	*ret = v;
	return 0;
}

int lyr_exec_op_push_mount(lyr_exec_op *op, lyr_exec_mount *m)
{
	lyr_exec_mount *nm = realloc(op->mounts, (op->n_mounts + 1) * sizeof *nm);
	if (!nm)
		return -ENOMEM;
	op->mounts = nm;
	nm[op->n_mounts++] = *m;
	memset(m, 0, sizeof *m);
	return 0;
}

/* The keys of a mount, in the order of their bits in the SEEN masks below. */
enum mount_key {
	K_TYPE,
	K_TARGET,
	K_SOURCE,
	K_SELECTOR,
	K_READONLY,
	K_OUTPUT,
	K_ID,
	K_SHARING,
	K_SIZE,
	K_COUNT
};
static const char *const mount_keys[K_COUNT] = {[K_TYPE] = "type",
						[K_TARGET] = "target",
						[K_SOURCE] = "source",
						[K_SELECTOR] = "selector",
						[K_READONLY] = "readonly",
						[K_OUTPUT] = "output",
						[K_ID] = "id",
						[K_SHARING] = "sharing",
						[K_SIZE] = "size"};
#define SEEN(k) (1u << (k))

/* Target or selector VALUE, normalized into *FIELD; a selector of "/" is the whole input and
 * stored as NULL. */
static int set_path(char **field, enum mount_key k, const char *value, lyr_exec_error *err)
{
	char *n = NULL;
	int r = lyr_exec_path_normalize(value, &n);
	if (r == -EINVAL)
		lyr_exec_errf(err, "%s '%s': must be an absolute path without '..'", mount_keys[k],
			      value);
	if (r < 0)
		return r;
	if (strcmp(n, "/") == 0) {
		free(n);
		if (k == K_TARGET) {
			lyr_exec_errf(err, "target '/': the root is ROOT, not a mount");
			return -EINVAL;
		}
		n = NULL;
	}
	free(*field);
	*field = n;
	return 0;
}

/* Sets one key of M from the SPEC grammar or JSON; KEY/VALUE are NUL-terminated, VALUE is NULL
 * for a bare flag.  SEEN tracks the keys given so far (a bit per key). */
int lyr_exec_mount_set(lyr_exec_mount *m, const char *key, const char *value, unsigned *seen,
		       lyr_exec_error *err)
{
	enum mount_key k = 0;
	while (k < K_COUNT && strcmp(mount_keys[k], key) != 0)
		k++;
	if (k == K_COUNT) {
		lyr_exec_errf(err, "unknown key '%s'", key);
		return -EINVAL;
	}
	if (*seen & SEEN(k)) {
		lyr_exec_errf(err, "key '%s' given twice", key);
		return -EINVAL;
	}
	*seen |= SEEN(k);
	bool flag = k == K_READONLY || k == K_OUTPUT;
	if (!flag && (!value || !*value)) {
		lyr_exec_errf(err, "key '%s' needs a value", key);
		return -EINVAL;
	}
	switch (k) {
	case K_TYPE:
		if (lyr_exec_mount_type_parse(value, &m->type) < 0) {
			lyr_exec_errf(err, "type '%s': expected bind, cache or tmpfs", value);
			return -EINVAL;
		}
		return 0;
	case K_TARGET:
		return set_path(&m->target, k, value, err);
	case K_SELECTOR:
		return set_path(&m->selector, k, value, err);
	case K_SOURCE:
		return set_str(&m->source, value);
	case K_READONLY:
	case K_OUTPUT:
		if (value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
			lyr_exec_errf(err, "%s '%s': a flag takes no value, or true/false", key,
				      value);
			return -EINVAL;
		}
		*(k == K_READONLY ? &m->readonly : &m->output) =
		    !value || strcmp(value, "true") == 0;
		return 0;
	case K_ID:
		return set_str(&m->cache_id, value);
	case K_SHARING:
		if (lyr_exec_sharing_parse(value, &m->sharing) < 0) {
			lyr_exec_errf(err, "sharing '%s': expected shared, private or locked",
				      value);
			return -EINVAL;
		}
		return 0;
	case K_SIZE:
	default:
		if (lyr_exec_size_parse(value, &m->size) < 0) {
			lyr_exec_errf(err, "size '%s': expected a positive number of bytes", value);
			return -EINVAL;
		}
		return 0;
	}
}

int lyr_exec_mount_finish(lyr_exec_mount *m, unsigned seen, lyr_exec_error *err)
{
	if (!(seen & SEEN(K_TYPE))) {
		lyr_exec_errf(err, "missing key 'type'");
		return -EINVAL;
	}
	if (!m->target) {
		lyr_exec_errf(err, "missing key 'target'");
		return -EINVAL;
	}
	const char *t = lyr_exec_mount_type_name(m->type);
	if ((seen & SEEN(K_SHARING)) && m->type != LYR_MOUNT_CACHE) {
		lyr_exec_errf(err, "sharing: only cache mounts take it, not %s", t);
		return -EINVAL;
	}
	if ((seen & SEEN(K_ID)) && m->type != LYR_MOUNT_CACHE) {
		lyr_exec_errf(err, "id: only cache mounts take it, not %s", t);
		return -EINVAL;
	}
	if ((seen & SEEN(K_SIZE)) && m->type != LYR_MOUNT_TMPFS) {
		lyr_exec_errf(err, "size: only tmpfs mounts take it, not %s", t);
		return -EINVAL;
	}
	if (m->type == LYR_MOUNT_TMPFS && (m->source || m->selector || m->output)) {
		const char *what = m->source ? "source" : m->selector ? "selector" : "output";
		lyr_exec_errf(err, "%s: a tmpfs mount takes no source, selector or output", what);
		return -EINVAL;
	}
	if (m->selector && !m->source) {
		lyr_exec_errf(err, "selector: needs a source");
		return -EINVAL;
	}
	if (m->type == LYR_MOUNT_BIND && m->output && m->readonly && !m->source) {
		lyr_exec_errf(err, "output: a readonly output is its input layer, and there is no "
				   "source");
		return -EINVAL;
	}
	if (m->type == LYR_MOUNT_CACHE && m->output) {
		lyr_exec_errf(err, "output: a cache mount is never committed");
		return -EINVAL;
	}
	if (m->type == LYR_MOUNT_CACHE && !m->cache_id)
		return set_str(&m->cache_id, m->target);
	return 0;
}

int lyr_exec_op_add_mount_spec(lyr_exec_op *op, const char *spec, lyr_exec_error *err)
{
	_cleanup_free_ char *copy = strdup(spec);
	if (!copy)
		return -ENOMEM;
	lyr_exec_mount m = {0};
	unsigned seen = 0;
	int r = 0;
	lyr_exec_error sub;
	for (char *rest = copy, *item; (item = strsep(&rest, ","));) {
		if (!*item) {
			lyr_exec_errf(&sub, "empty item");
			r = -EINVAL;
			goto fail;
		}
		char *eq = strchr(item, '=');
		if (eq)
			*eq = '\0';
		r = lyr_exec_mount_set(&m, item, eq ? eq + 1 : NULL, &seen, &sub);
		if (r < 0)
			goto fail;
	}
	r = lyr_exec_mount_finish(&m, seen, &sub);
	if (r < 0)
		goto fail;
	return lyr_exec_op_push_mount(op, &m);
fail:
	if (r == -EINVAL)
		lyr_exec_errf(err, "mount '%s': %s", spec, sub.msg);
	mount_clear(&m);
	return r;
}

/* Component order: like strcmp, but '/' sorts before every other byte, so a directory comes
 * right before everything below it ("/a", "/a/b", "/a-b"). */
int lyr_exec_path_cmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char ca = (unsigned char)*a, cb = (unsigned char)*b;
		if (ca == cb) {
			if (!ca)
				return 0;
			continue;
		}
		if (!ca)
			return -1;
		if (!cb)
			return 1;
		if (ca == '/')
			return -1;
		if (cb == '/')
			return 1;
		return ca < cb ? -1 : 1;
	}
}

static int mount_cmp(const void *a, const void *b)
{
	return lyr_exec_path_cmp(((const lyr_exec_mount *)a)->target,
				 ((const lyr_exec_mount *)b)->target);
}

/* The per-type rules on field values, for ops built field by field (the parsers already
 * checked them per key).  Returns what is wrong, or NULL. */
static const char *mount_rule_broken(const lyr_exec_mount *m)
{
	if (m->size && m->type != LYR_MOUNT_TMPFS)
		return "size is only for tmpfs";
	if (m->sharing != LYR_SHARING_SHARED && m->type != LYR_MOUNT_CACHE)
		return "sharing is only for cache mounts";
	if ((m->type == LYR_MOUNT_CACHE) != (m->cache_id != NULL))
		return "an id is for, and required by, cache mounts";
	if (m->type == LYR_MOUNT_TMPFS && (m->source || m->selector || m->output))
		return "a tmpfs mount takes no source, selector or output";
	if (m->selector && !m->source)
		return "a selector needs a source";
	if (m->type == LYR_MOUNT_CACHE && m->output)
		return "a cache mount is never committed";
	return NULL;
}

/* Orders "NAME=VALUE" strings by NAME alone (case-sensitively, or not). */
static int name_order(const void *a, const void *b, bool nocase)
{
	const char *x = *(const char *const *)a, *y = *(const char *const *)b;
	size_t nx = strcspn(x, "="), ny = strcspn(y, "=");
	size_t n = nx < ny ? nx : ny;
	int c = nocase ? strncasecmp(x, y, n) : strncmp(x, y, n);
	return c ? c : (nx > ny) - (nx < ny);
}

static int name_cmp(const void *a, const void *b)
{
	return name_order(a, b, false);
}

static int name_case_cmp(const void *a, const void *b)
{
	return name_order(a, b, true);
}

/* Sets *RET to one of the "NAME=VALUE" strings V[0..N) whose NAME (as CMP compares it)
 * another one repeats, or to NULL when all differ.  Sorts a copy: O(n log n), so tens of
 * thousands of variables cost milliseconds.  Returns 0 or -ENOMEM. */
static int find_repeat(char *const *v, size_t n, int (*cmp)(const void *, const void *),
		       const char **ret)
{
	*ret = NULL;
	if (n < 2)
		return 0;
	_cleanup_free_ const char **sorted = malloc(n * sizeof *sorted);
	if (!sorted)
		return -ENOMEM;
	memcpy(sorted, v, n * sizeof *sorted);
	qsort(sorted, n, sizeof *sorted, cmp);
	for (size_t i = 1; i < n && !*ret; i++)
		if (cmp(&sorted[i - 1], &sorted[i]) == 0)
			*ret = sorted[i];
	return 0;
}

int lyr_exec_op_validate(lyr_exec_op *op, lyr_exec_error *err)
{
	if (!op->root || !*op->root) {
		lyr_exec_errf(err, "no ROOT given");
		return -EINVAL;
	}
	if (op->n_args == 0 || !*op->args[0]) {
		lyr_exec_errf(err, "no command given");
		return -EINVAL;
	}
	const char *twice = NULL;
	int r = find_repeat(op->env, op->n_env, name_cmp, &twice);
	if (r < 0)
		return r;
	if (twice) {
		lyr_exec_errf(err, "env '%.*s': given twice", (int)strcspn(twice, "="), twice);
		return -EINVAL;
	}
	r = find_repeat(op->proxy_env, op->n_proxy_env, name_case_cmp, &twice);
	if (r < 0)
		return r;
	if (twice) {
		lyr_exec_errf(err, "proxy env '%.*s': given twice", (int)strcspn(twice, "="),
			      twice);
		return -EINVAL;
	}
	for (size_t i = 0; i < op->n_mounts; i++) {
		const lyr_exec_mount *m = &op->mounts[i];
		_cleanup_free_ char *n = NULL;
		if (!m->target || lyr_exec_path_normalize(m->target, &n) < 0 ||
		    strcmp(n, m->target) != 0 || strcmp(n, "/") == 0) {
			lyr_exec_errf(err,
				      "mount %zu: target '%s' is not a normalized absolute path "
				      "below '/'",
				      i + 1, m->target ? m->target : "");
			return -EINVAL;
		}
		const char *bad = mount_rule_broken(m);
		if (bad) {
			lyr_exec_errf(err, "mount '%s': %s", m->target, bad);
			return -EINVAL;
		}
	}
	if (op->n_mounts)
		qsort(op->mounts, op->n_mounts, sizeof *op->mounts, mount_cmp);
	for (size_t i = 1; i < op->n_mounts; i++)
		if (strcmp(op->mounts[i].target, op->mounts[i - 1].target) == 0) {
			lyr_exec_errf(err, "mount target '%s': given twice", op->mounts[i].target);
			return -EINVAL;
		}
	return 0;
}
