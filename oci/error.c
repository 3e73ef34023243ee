/* The one place oci/ turns a failure into a message naming what failed and why, and the one
 * place image names (oci:, oci-archive:, docker-archive:) are parsed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci-int.h"

int oci_fail(lyr_oci_error *err, int r, const char *what, const char *fmt, ...)
{
	if (err) {
		snprintf(err->entry, sizeof err->entry, "%s", what);
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err->why, sizeof err->why, fmt, ap);
		va_end(ap);
	}
	return r;
}

int oci_parse_name(const char *name, lyr_oci_error *err, oci_kind *ret_kind, char **ret_path,
		   const char **ret_ref)
{
	static const struct {
		const char *prefix;
		oci_kind kind;
	} kinds[] = {{"oci:", OCI_DIR},
		     {"oci-archive:", OCI_ARCHIVE},
		     {"docker-archive:", OCI_DOCKER_ARCHIVE}};
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
		size_t n = strlen(kinds[i].prefix);
		if (strncmp(name, kinds[i].prefix, n) != 0)
			continue;
		char *path = strdup(name + n);
		if (!path)
			return -ENOMEM;
		char *colon = strchr(path, ':');
		if (colon)
			*colon = '\0';
		if (!*path || (colon && !colon[1])) {
			free(path);
			return oci_fail(err, -EINVAL, name, "an empty path or reference");
		}
		*ret_kind = kinds[i].kind;
		*ret_path = path;
		*ret_ref = colon ? colon + 1 : NULL;
		return 0;
	}
	return oci_fail(err, -EINVAL, name, "not oci:DIR, oci-archive:FILE or docker-archive:FILE");
}
