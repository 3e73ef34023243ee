/* Registry credentials where the container tools keep them: $REGISTRY_AUTH_FILE, then
 * ${XDG_RUNTIME_DIR}/containers/auth.json (podman, skopeo, buildah), then
 * $DOCKER_CONFIG/config.json or ~/.docker/config.json (docker).  Each is
 * {"auths": {"HOST[:PORT]": {"auth": base64(USER:PASSWORD)}}}; a key may also be written as a
 * URL ("https://HOST/v1/"), as docker login once did.  A file may instead send the registry to
 * a credential helper, as docker does: "credHelpers": {"HOST": "NAME"} (any of the files), or
 * for every registry "credsStore": "NAME" (docker's file only); the helper
 * docker-credential-NAME (found on $PATH) is run as `docker-credential-NAME get` with the
 * registry on its standard input and answers {"Username": ..., "Secret": ...}.  In a file,
 * credHelpers comes before credsStore, which comes before auths.  The first file with an
 * answer for the registry wins. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

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

/* Runs `docker-credential-HELPER get` with HOST on its standard input (the file PATH named
 * it): 1 with RET filled from its answer, 0 when it has nothing for HOST, -errno with ERR
 * naming the helper and what went wrong otherwise. */
static int from_helper(const char *helper, const char *host, const char *path,
		       oci_credentials *ret, lyr_oci_error *err)
{
	char prog[300];
	snprintf(prog, sizeof prog, "docker-credential-%s", helper);
	if (!*helper || strlen(helper) > 200 || helper[strspn(helper, "abcdefghijklmnopqrstuvwxyz"
							      "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
							      "0123456789._-")])
		return oci_fail(err, -EINVAL, path, "'%s' is not a credential helper's name",
				helper);
	int in[2], out[2];
	if (pipe2(in, O_CLOEXEC) < 0)
		return oci_fail(err, -errno, prog, "%s", strerror(errno));
	if (pipe2(out, O_CLOEXEC) < 0) {
		int e = errno;
		close(in[0]), close(in[1]);
		return oci_fail(err, -e, prog, "%s", strerror(e));
	}
	/* the registry, then end of input, written before the helper runs: the pipe holds it, and
	 * a helper that exits without reading it cannot make the write raise SIGPIPE */
	ssize_t w = write(in[1], host, strlen(host));
	close(in[1]);
	if (w != (ssize_t)strlen(host)) {
		close(in[0]), close(out[0]), close(out[1]);
		return oci_fail(err, -EIO, prog, "cannot write to its input");
	}
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	char *argv[] = {prog, "get", NULL};
	pid_t pid;
	int e = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(in[0]);
	close(out[1]);
	if (e != 0) {
		close(out[0]);
		return oci_fail(err, -e, prog, "cannot run it (named by %s for %s): %s", path, host,
				strerror(e));
	}
	char answer[16384];
	size_t n = 0;
	for (ssize_t k; n < sizeof answer - 1 &&
			(k = read(out[0], answer + n, sizeof answer - 1 - n)) != 0;)
		if (k > 0)
			n += (size_t)k;
		else if (errno != EINTR)
			break;
	answer[n] = '\0';
	close(out[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	while (n && (answer[n - 1] == '\n' || answer[n - 1] == '\r'))
		answer[--n] = '\0';
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		if (strstr(answer, "credentials not found"))
			return 0; /* the helpers' words for "no entry" */
		return oci_fail(err, -EACCES, prog, "failed for %s: %s", host,
				answer[0] ? answer
				: WIFEXITED(status) ? "exit status not 0"
						    : "killed by a signal");
	}
	json_t *j = json_loads(answer, 0, NULL);
	const char *user = json_string_value(json_object_get(j, "Username"));
	const char *secret = json_string_value(json_object_get(j, "Secret"));
	int r = 1;
	if (!user || !secret)
		r = oci_fail(err, -EPROTO, prog, "its answer for %s has no Username and Secret",
			     host);
	else if (strcmp(user, "<token>") == 0)
		r = oci_fail(err, -ENOTSUP, prog,
			     "it gives an identity token for %s, which layerfs does not use", host);
	else if (snprintf(ret->user, sizeof ret->user, "%s", user) >= (int)sizeof ret->user ||
		 snprintf(ret->pass, sizeof ret->pass, "%s", secret) >= (int)sizeof ret->pass)
		r = oci_fail(err, -EINVAL, prog, "its Username or Secret for %s is too long", host);
	if (r == 1)
		snprintf(ret->file, sizeof ret->file, "%.4000s", prog);
	json_decref(j);
	return r;
}

/* HOST's entry in the auth file PATH: 1 found, 0 none (or no such file), -EINVAL malformed.
 * With DOCKER, the file is docker's own, whose "credsStore" counts. */
static int from_file(const char path[4096], const char *host, bool docker, oci_credentials *ret,
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
	json_object_foreach(json_object_get(j, "credHelpers"), key, v)
	{
		if (key_names(key, host) && json_is_string(v)) {
			r = from_helper(json_string_value(v), host, path, ret, err);
			json_decref(j);
			return r;
		}
	}
	const char *store = json_string_value(json_object_get(j, "credsStore"));
	if (docker && store && *store) {
		r = from_helper(store, host, path, ret, err);
		json_decref(j);
		return r;
	}
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
		int r = paths[i][0] ? from_file(paths[i], host, i == 2, ret, err) : 0;
		if (r != 0)
			return r;
	}
	return 0;
}
