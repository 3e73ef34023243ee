/* Selectors: normalisation, de-duplication by whole path component, wildcard detection, and the
 * glob matcher behind wildcards and --include/--exclude.  Pure string functions, no state. */
#include <fnmatch.h>
#include <string.h>

#include "internal.h"
#include "layerfs/hash.h"

int lyr_hash_selector_normalize(const char *sel, char **ret)
{
	size_t len = strlen(sel);
	_cleanup_free_ char *out = malloc(len + 2);
	if (!out)
		return -ENOMEM;
	size_t o = 0;
	const char *p = sel;
	while (*p) {
		while (*p == '/')
			p++;
		const char *end = strchrnul(p, '/');
		size_t n = (size_t)(end - p);
		if (n == 0 || (n == 1 && p[0] == '.')) {
			/* empty or "." component */
		} else if (n == 2 && p[0] == '.' && p[1] == '.') {
			if (o == 0)
				return -EINVAL; /* would leave the view's root */
			while (o > 0 && out[o - 1] != '/')
				o--;
			o--; /* the '/' before the dropped component */
		} else {
			out[o++] = '/';
			memcpy(out + o, p, n);
			o += n;
		}
		p = end;
	}
	if (o == 0)
		out[o++] = '/';
	out[o] = '\0';
	*ret = LYR_TAKE_PTR(out);
	return 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* True when selector OUTER covers INNER: equal, or INNER is below OUTER by whole components. */
static bool covers(const char *outer, const char *inner)
{
	if (strcmp(outer, "/") == 0)
		return true;
	size_t n = strlen(outer);
	return strncmp(outer, inner, n) == 0 && (inner[n] == '\0' || inner[n] == '/');
}

void lyr_hash_selectors_free(char **list, size_t n)
{
	if (!list)
		return;
	for (size_t i = 0; i < n; i++)
		free(list[i]);
	free(list);
}

int lyr_hash_selectors_dedupe(const char *const *selectors, size_t n, bool filtered, char ***ret,
			      size_t *ret_n, size_t *ret_bad)
{
	char **list = calloc(n ? n : 1, sizeof *list);
	if (!list)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int r = lyr_hash_selector_normalize(selectors[i], &list[i]);
		if (r < 0) {
			if (ret_bad)
				*ret_bad = i;
			lyr_hash_selectors_free(list, i);
			return r;
		}
	}
	/* In byte order a covering selector sorts before everything it covers ('/' is the
	 * smallest byte that can follow it... except that "/a" < "/a.b" < "/a/b", so compare
	 * against every kept one, not just the previous). */
	qsort(list, n, sizeof *list, cmp_str);
	/* Only plain paths merge, as in BuildKit: a wildcard or filtered selector digests a listing
	 * of its own, which is not part of a covering path's digest, so it is always kept. */
	size_t kept = 0;
	for (size_t i = 0; i < n; i++) {
		bool inside = false;
		bool plain = !filtered && !lyr_hash_selector_is_wildcard(list[i]);
		for (size_t j = 0; j < kept && plain && !inside; j++)
			inside = !lyr_hash_selector_is_wildcard(list[j]) && covers(list[j], list[i]);
		if (inside)
			free(list[i]);
		else
			list[kept++] = list[i];
	}
	*ret = list;
	*ret_n = kept;
	return 0;
}

bool lyr_hash_selector_is_wildcard(const char *sel)
{
	for (const char *p = sel; *p; p++) {
		if (*p == '\\') {
			if (!*++p)
				break;
		} else if (*p == '*' || *p == '?' || *p == '[') {
			return true;
		}
	}
	return false;
}

/* The longest bracket expression, "[...]" included, that is matched as one. */
#define BRACKET_MAX 255

/* The length of the bracket expression at PAT ('[' up to its ']'), or 0 when there is no ']'. */
static size_t bracket_len(const char *pat)
{
	const char *end = pat + 1;
	if (*end == '!' || *end == '^')
		end++;
	if (*end == ']')
		end++; /* a ']' first is a member, not the end */
	while (*end && *end != ']')
		end++;
	return *end ? (size_t)(end - pat) + 1 : 0;
}

/* Matches one bracket expression at PAT against C; returns the length of the expression, or 0
 * when C does not match it, or -1 when PAT holds no complete expression (then '[' is literal). */
static int bracket(const char *pat, char c)
{
	size_t len = bracket_len(pat);
	char expr[BRACKET_MAX + 1], s[2] = {c, 0};
	if (len == 0 || len > BRACKET_MAX)
		return -1;
	memcpy(expr, pat, len);
	expr[len] = '\0';
	if (expr[1] == '^')
		expr[1] = '!';
	return fnmatch(expr, s, FNM_PATHNAME) == 0 ? (int)len : 0;
}

int lyr_hash_check_pattern(const char *pat, const char **ret_why)
{
	const char *why = NULL;
	if (!*pat)
		why = "empty pattern";
	for (const char *p = pat; *p && !why; p++) {
		if (*p == '\\') {
			if (!p[1])
				why = "ends in a '\\' that escapes nothing";
			else
				p++;
		} else if (*p == '[') {
			size_t len = bracket_len(p);
			if (len == 0)
				why = "'[' without a closing ']'";
			else if (len > BRACKET_MAX)
				why = "bracket expression longer than 255 bytes";
			else
				p += len - 1;
		}
	}
	if (!why)
		return 0;
	if (ret_why)
		*ret_why = why;
	return -EINVAL;
}

bool hglob_match(const char *pat, const char *str)
{
	while (*pat) {
		if (pat[0] == '*' && pat[1] == '*') {
			while (*pat == '*')
				pat++;
			if (*pat == '/') {
				/* "**" + "/": zero or more whole directories. */
				pat++;
				for (const char *s = str;; s++) {
					if ((s == str || s[-1] == '/') && hglob_match(pat, s))
						return true;
					if (!*s)
						return false;
				}
			}
			for (const char *s = str;; s++) {
				if (hglob_match(pat, s))
					return true;
				if (!*s)
					return false;
			}
		}
		if (*pat == '*') {
			pat++;
			for (const char *s = str;; s++) {
				if (hglob_match(pat, s))
					return true;
				if (!*s || *s == '/')
					return false;
			}
		}
		if (!*str)
			return false;
		if (*pat == '?') {
			if (*str == '/')
				return false;
			pat++, str++;
			continue;
		}
		if (*pat == '[') {
			int n = bracket(pat, *str);
			if (n == 0 || *str == '/')
				return false;
			if (n > 0) {
				pat += n, str++;
				continue;
			}
		}
		if (*pat == '\\' && pat[1])
			pat++;
		if (*pat != *str)
			return false;
		pat++, str++;
	}
	return *str == '\0';
}

bool hglob_match_path(const char *pat, const char *str)
{
	if (hglob_match(pat, str))
		return true;
	_cleanup_free_ char *copy = strdup(str);
	if (!copy)
		return false;
	for (char *s = copy + strlen(copy); s > copy; s--) {
		if (*s == '/') {
			*s = '\0';
			if (hglob_match(pat, copy))
				return true;
		}
	}
	return false;
}
