/* Registry credentials where the container tools keep them: $REGISTRY_AUTH_FILE, then
 * ${XDG_RUNTIME_DIR}/containers/auth.json (podman, skopeo, buildah), then
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json (docker).  Each is
 * {"auths": {"HOST[:PORT]": {"auth": base64(USER:PASSWORD)}}}; a key may also be written as a
 * URL ("https://HOST/v1/"), as docker login once did.  The first file with an entry for the
 * registry wins. */
#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci-int.h"

/* KEY of an "auths" object names HOST: equal, or equal once a scheme and a path are dropped. */
static bool key_names(const char *key, const char *host)
{
	const char *k = strstr(key, "://");
	k = k ? k + 3 : key;
	size_t n = strcspn(k, "/");
	return strlen(host) == n && strncmp(k, host, n) == 0;
}

/* The "auth" of ENTRY decoded into USER and PASS; -EINVAL when it is not base64 of USER:PASS. */
static int decode_auth(const char *b64, oci_credentials *ret)
{
	size_t len = strlen(b64);
	if (len == 0 || len % 4 != 0 || len > 4 * 256)
		return -EINVAL;
	unsigned char out[800];
	int n = EVP_DecodeBlock(out, (const unsigned char *)b64, (int)len);
	if (n < 0)
		return -EINVAL;
	for (size_t i = len; i > 0 && b64[i - 1] == '='; i--)
		n--; /* EVP_DecodeBlock counts the padding as bytes */
	out[n] = '\0';
	char *colon = strchr((char *)out, ':');
	if (!colon || strlen((char *)out) != (size_t)n)
		return -EINVAL;
	*colon = '\0';
	if (snprintf(ret->user, sizeof ret->user, "%s", (char *)out) >= (int)sizeof ret->user ||
	    snprintf(ret->pass, sizeof ret->pass, "%s", colon + 1) >= (int)sizeof ret->pass)
		return -EINVAL;
	return 0;
}

/* HOST's entry in the auth file PATH: 1 found, 0 none (or no such file), -EINVAL malformed. */
static int from_file(const char path[4096], const char *host, oci_credentials *ret,
		     lyr_oci_error *err)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return 0;
	json_error_t je;
	json_t *j = json_loadf(f, 0, &je);
	fclose(f);
	if (!j)
		return oci_fail(err, -EINVAL, path, "not JSON: %s", je.text);
	int r = 0;
	const char *key;
	json_t *v;
	json_object_foreach(json_object_get(j, "auths"), key, v)
	{
		if (!key_names(key, host))
			continue;
		const char *auth = json_string_value(json_object_get(v, "auth"));
		if (!auth)
			continue; /* a credential helper's entry: not ours to ask */
		r = decode_auth(auth, ret) == 0
			? 1
			: oci_fail(err, -EINVAL, path,
				   "the \"auth\" of '%s' is not base64 of USER:PASSWORD", key);
		if (r == 1)
			snprintf(ret->file, sizeof ret->file, "%.4000s", path);
		break;
	}
	json_decref(j);
	return r;
}

int oci_credentials_find(const char *host, oci_credentials *ret, lyr_oci_error *err)
{
	memset(ret, 0, sizeof *ret);
	char paths[3][4096] = {"", "", ""};
	const char *v;
	if ((v = getenv("REGISTRY_AUTH_FILE")) && *v)
		snprintf(paths[0], sizeof paths[0], "%s", v);
	if ((v = getenv("XDG_RUNTIME_DIR")) && *v)
		snprintf(paths[1], sizeof paths[1], "%s/containers/auth.json", v);
	if ((v = getenv("DOCKER_CONFIG")) && *v)
		snprintf(paths[2], sizeof paths[2], "%s/config.json", v);
	else if ((v = getenv("HOME")) && *v)
		snprintf(paths[2], sizeof paths[2], "%s/.docker/config.json", v);
	for (int i = 0; i < 3; i++) {
		int r = paths[i][0] ? from_file(paths[i], host, ret, err) : 0;
		if (r != 0)
			return r;
	}
	return 0;
}
