/* push and pull: the OCI distribution API over libcurl, logged in as the registry asks (basic
 * credentials or a bearer token, from the container tools' auth files, see auth.c), transient
 * failures retried with backoff.
 *
 * Neither speaks the image format itself: pull downloads the manifest (and index), config and
 * layer blobs into an OCI layout in a scratch stage of the store and hands it to load, which
 * checks every digest before anything is committed; push saves the chain into a scratch layout
 * and uploads what the registry lacks (a HEAD per blob first; monolithic POST + PUT uploads),
 * then the manifest under the tag.  Plain HTTP is used for localhost, 127.0.0.1 and [::1]
 * registries, HTTPS otherwise (unverified, and plain HTTP when TLS fails, with
 * --tls-verify=false).  Redirects (blob storage elsewhere) are followed. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "layerfs/hash.h"
#include "layerfs/oci.h"
#include "oci-int.h"

#define ACCEPT_MANIFESTS                                                                           \
	"Accept: application/vnd.oci.image.index.v1+json, "                                        \
	"application/vnd.oci.image.manifest.v1+json, "                                             \
	"application/vnd.docker.distribution.manifest.list.v2+json, "                              \
	"application/vnd.docker.distribution.manifest.v2+json"

/* NAME[:TAG|@DIGEST] split: registry host, repository, reference. */
typedef struct image_ref {
	char host[256], repo[512], ref[160];
	bool plain_http, tls_verify;
	/* authentication, as the registry asked for it: credentials (looked up on the first
	 * 401), sent as basic auth once a Basic challenge came, or a bearer token */
	oci_credentials creds;
	bool creds_looked, basic, token_request;
	char bearer[8192];
} image_ref;

static int parse_ref(const char *name, bool tls_verify, image_ref *ret, lyr_oci_error *err)
{
	memset(ret, 0, sizeof *ret);
	const char *slash = strchr(name, '/');
	if (!slash || slash == name)
		return oci_fail(err, -EINVAL, name, "expected REGISTRY/REPOSITORY[:TAG|@DIGEST]");
	snprintf(ret->host, sizeof ret->host, "%.*s", (int)(slash - name), name);
	const char *rest = slash + 1;
	const char *at = strchr(rest, '@');
	const char *colon = strrchr(rest, ':');
	size_t rlen = at ? (size_t)(at - rest) : colon ? (size_t)(colon - rest) : strlen(rest);
	if (rlen == 0 || rlen >= sizeof ret->repo)
		return oci_fail(err, -EINVAL, name, "no repository");
	snprintf(ret->repo, sizeof ret->repo, "%.*s", (int)rlen, rest);
	snprintf(ret->ref, sizeof ret->ref, "%s", at ? at + 1 : colon ? colon + 1 : "latest");
	for (const char *p = ret->repo; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || strchr("._-/", *p)))
			return oci_fail(err, -EINVAL, name, "repository names are lower case");
	/* the host without its port: plain HTTP for the loopback names only */
	const char *port = ret->host[0] == '[' ? strstr(ret->host, "]:") : strrchr(ret->host, ':');
	size_t hl = port ? (size_t)(port - ret->host) + (ret->host[0] == '[') : strlen(ret->host);
	static const char *const loopback[] = {"localhost", "127.0.0.1", "[::1]"};
	for (size_t i = 0; i < 3; i++)
		if (strlen(loopback[i]) == hl && strncmp(ret->host, loopback[i], hl) == 0)
			ret->plain_http = true;
	ret->tls_verify = tls_verify;
	return 0;
}

typedef struct membuf {
	char *p;
	size_t n;
} membuf;

static size_t mem_write(char *d, size_t size, size_t nmemb, void *ctx)
{
	membuf *m = ctx;
	size_t n = size * nmemb;
	if (m->n + n > (64u << 20))
		return 0; /* manifests are small; refuse a flood */
	char *np = realloc(m->p, m->n + n + 1);
	if (!np)
		return 0;
	memcpy(np + m->n, d, n);
	m->p = np;
	m->n += n;
	m->p[m->n] = '\0';
	return n;
}

static size_t fd_write(char *d, size_t size, size_t nmemb, void *ctx)
{
	int fd = *(int *)ctx;
	size_t n = size * nmemb;
	for (size_t done = 0; done < n;) {
		ssize_t w = write(fd, d + done, n - done);
		if (w < 0)
			return 0;
		done += (size_t)w;
	}
	return n;
}

/* The response headers a request looks at. */
typedef struct resp_headers {
	char location[2048], challenge[1024];
	long retry_after; /* seconds, -1 when not given */
} resp_headers;

static void header_value(const char *d, size_t n, size_t name_len, char *out, size_t out_len)
{
	const char *v = d + name_len;
	size_t k = n - name_len;
	while (k && (*v == ' ' || *v == '\t'))
		v++, k--;
	while (k && (v[k - 1] == '\r' || v[k - 1] == '\n'))
		k--;
	snprintf(out, out_len, "%.*s", (int)k, v);
}

static size_t header_cb(char *d, size_t size, size_t nmemb, void *ctx)
{
	resp_headers *h = ctx;
	size_t n = size * nmemb;
	if (n >= 5 && strncmp(d, "HTTP/", 5) == 0)
		*h = (resp_headers){"", "", -1}; /* a new response (after a redirect) */
	else if (n > 12 && strncasecmp(d, "retry-after:", 12) == 0)
		h->retry_after = strtol(d + 12, NULL, 10); /* an HTTP date counts as 0: soon */
	else if (n > 9 && strncasecmp(d, "location:", 9) == 0)
		header_value(d, n, 9, h->location, sizeof h->location);
	else if (n > 17 && strncasecmp(d, "www-authenticate:", 17) == 0)
		header_value(d, n, 17, h->challenge, sizeof h->challenge);
	return n;
}

/* PARAM="value" of a WWW-Authenticate challenge into OUT; false when absent. */
static bool challenge_param(const char *ch, const char *param, char *out, size_t len)
{
	size_t pl = strlen(param);
	for (const char *p = ch; (p = strcasestr(p, param)); p += pl) {
		if ((p != ch && p[-1] != ' ' && p[-1] != ',') || p[pl] != '=')
			continue;
		const char *v = p + pl + 1;
		size_t n = *v == '"' ? strcspn(++v, "\"") : strcspn(v, ", ");
		snprintf(out, len, "%.*s", (int)n, v);
		return true;
	}
	return false;
}

static int http_fail(const image_ref *ir, lyr_oci_error *err, const char *what, long status,
		     const membuf *body);
static long request(image_ref *ir, const char *method, const char *url, struct curl_slist *headers,
		    int body_fd, membuf *body, const membuf *upload, char *location,
		    lyr_oci_error *err);

/* A bearer token for the challenge CH (realm, service, scope), asked for with the registry's
 * credentials when there are any, into IR. */
static int fetch_token(image_ref *ir, const char *ch, lyr_oci_error *err)
{
	char realm[1024], service[256] = "", scope[512] = "";
	if (!challenge_param(ch, "realm", realm, sizeof realm))
		return oci_fail(err, -EPROTO, ir->host, "a Bearer challenge without a realm: %s",
				ch);
	challenge_param(ch, "service", service, sizeof service);
	challenge_param(ch, "scope", scope, sizeof scope);
	CURL *c = curl_easy_init();
	if (!c)
		return -ENOMEM;
	char *es = curl_easy_escape(c, service, 0), *esc = curl_easy_escape(c, scope, 0);
	char url[2600];
	snprintf(url, sizeof url, "%s%sservice=%s%s%s", realm, strchr(realm, '?') ? "&" : "?",
		 es ? es : "", scope[0] ? "&scope=" : "", scope[0] && esc ? esc : "");
	curl_free(es);
	curl_free(esc);
	curl_easy_cleanup(c);
	membuf body = {0};
	image_ref token_ir = *ir; /* the realm is another server: no token, basic credentials */
	token_ir.bearer[0] = '\0';
	token_ir.basic = ir->creds.user[0] != '\0';
	token_ir.token_request = true;
	long st = request(&token_ir, "GET", url, NULL, -1, &body, NULL, NULL, err);
	int r = st < 0 ? (int)st : st != 200 ? http_fail(ir, err, realm, st, &body) : 0;
	json_t *j = r == 0 ? json_loadb(body.p, body.n, 0, NULL) : NULL;
	const char *tok = json_string_value(json_object_get(j, "token"))
			      ?: json_string_value(json_object_get(j, "access_token"));
	if (r == 0 && (!tok || strlen(tok) >= sizeof ir->bearer))
		r = oci_fail(err, -EPROTO, realm, "the token server of %s sent no usable token",
			     ir->host);
	if (r == 0)
		snprintf(ir->bearer, sizeof ir->bearer, "%s", tok);
	json_decref(j);
	free(body.p);
	return r;
}

/* After a 401 with challenge CH: credentials (basic) or a token (bearer) for the next try.
 * 1 when a retry may succeed, 0 when there is nothing more to try, -errno on failure. */
static int authorize(image_ref *ir, const char *ch, lyr_oci_error *err)
{
	if (!ir->creds_looked) {
		ir->creds_looked = true;
		int r = oci_credentials_find(ir->host, &ir->creds, err);
		if (r < 0)
			return r;
	}
	if (strncasecmp(ch, "Bearer ", 7) == 0)
		return fetch_token(ir, ch, err) < 0 ? -EACCES : 1;
	if (strncasecmp(ch, "Basic", 5) == 0 && ir->creds.user[0] && !ir->basic) {
		ir->basic = true;
		return 1;
	}
	return 0;
}

/* How often a request is tried (LAYERFS_REGISTRY_RETRIES more times after the first, 3 by
 * default) and its timeout (LAYERFS_REGISTRY_TIMEOUT seconds, 10 by default). */
typedef struct request_limits {
	int tries;
	long timeout_s;
} request_limits;

/* An environment variable VAR holding a number from MIN to MAX into *RET (left as it is when
 * VAR is unset or empty); -EINVAL with ERR naming VAR otherwise. */
static int env_number(const char *var, long min, long max, long *ret, lyr_oci_error *err)
{
	const char *v = getenv(var);
	if (!v || !*v)
		return 0;
	char *end;
	errno = 0;
	long n = strtol(v, &end, 10);
	if (errno || *end || n < min || n > max)
		return oci_fail(err, -EINVAL, var, "'%s' is not a whole number from %ld to %ld", v,
				min, max);
	*ret = n;
	return 0;
}

static int request_limits_get(request_limits *l, lyr_oci_error *err)
{
	long retries = 3;
	l->timeout_s = 10;
	int r = env_number("LAYERFS_REGISTRY_RETRIES", 0, 99, &retries, err);
	l->tries = (int)retries + 1;
	return r < 0 ? r : env_number("LAYERFS_REGISTRY_TIMEOUT", 1, 86400, &l->timeout_s, err);
}

/* One request: METHOD on URL with HEADERS; the body to BODY_FD (>= 0) or BODY; UPLOAD (may be
 * NULL) sent; LOCATION (may be NULL) gets the Location header.  A 401 is answered as the
 * registry asks (basic credentials or a bearer token) and the request tried again; so is a
 * transient failure (no connection, a reset, a timeout, 5xx, 429), after a backoff, as often as
 * request_limits say.  Returns the HTTP status, or -errno with ERR filled. */
static long request(image_ref *ir, const char *method, const char *url, struct curl_slist *headers,
		    int body_fd, membuf *body, const membuf *upload, char *location,
		    lyr_oci_error *err)
{
	bool auth_tried = false;
	int tries = 1;
	char plain[4400];
	request_limits limits;
	int lr = request_limits_get(&limits, err);
	if (lr < 0)
		return lr;
	for (;;) {
		CURL *c = curl_easy_init();
		if (!c)
			return -ENOMEM;
		struct curl_slist *h = NULL;
		for (struct curl_slist *p = headers; p; p = p->next)
			h = curl_slist_append(h, p->data);
		char bearer[sizeof ir->bearer + 32];
		if (ir->bearer[0] && !ir->token_request) {
			snprintf(bearer, sizeof bearer, "Authorization: Bearer %s", ir->bearer);
			h = curl_slist_append(h, bearer);
		} else if (ir->basic) {
			curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
			curl_easy_setopt(c, CURLOPT_USERNAME, ir->creds.user);
			curl_easy_setopt(c, CURLOPT_PASSWORD, ir->creds.pass);
		}
		char cerr[CURL_ERROR_SIZE] = "";
		curl_easy_setopt(c, CURLOPT_URL, url);
		if (!ir->tls_verify) {
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
			curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
		}
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
		curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, strcmp(method, "GET") == 0 ? 1L : 0L);
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
		curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
		/* the timeout: to connect, and for a transfer that stalls (no byte moves) */
		curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, limits.timeout_s);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
		curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, limits.timeout_s);
		if (strcmp(method, "HEAD") == 0)
			curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
		else if (strcmp(method, "GET") != 0)
			curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
		if (upload) {
			curl_easy_setopt(c, CURLOPT_POSTFIELDS, upload->p ? upload->p : "");
			curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)upload->n);
		}
		membuf sink = {0};
		if (body_fd >= 0) {
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fd_write);
			curl_easy_setopt(c, CURLOPT_WRITEDATA, &body_fd);
		} else {
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
			curl_easy_setopt(c, CURLOPT_WRITEDATA, body ? body : &sink);
		}
		resp_headers rh = {"", "", -1};
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &rh);
		CURLcode cr = curl_easy_perform(c);
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		curl_easy_cleanup(c);
		curl_slist_free_all(h);
		free(sink.p);
		bool transient = cr == CURLE_COULDNT_CONNECT || cr == CURLE_SEND_ERROR ||
				 cr == CURLE_RECV_ERROR || cr == CURLE_GOT_NOTHING ||
				 cr == CURLE_OPERATION_TIMEDOUT || cr == CURLE_PARTIAL_FILE ||
				 (cr == CURLE_OK && (status >= 500 || status == 429));
		if (cr == CURLE_SSL_CONNECT_ERROR && !ir->tls_verify && !ir->plain_http &&
		    strncmp(url, "https://", 8) == 0) {
			/* --tls-verify=false: a registry that speaks no TLS is spoken to in plain
			 * HTTP, as podman and skopeo do */
			ir->plain_http = true;
			snprintf(plain, sizeof plain, "http://%s", url + 8);
			url = plain;
		} else if (transient && tries < limits.tries) {
			/* backoff: 250 ms, doubled each time, or what Retry-After asks (at most 30
			 * s) */
			long ms = rh.retry_after >= 0
				      ? (rh.retry_after > 30 ? 30 : rh.retry_after) * 1000
				      : 250L << (tries - 1 < 6 ? tries - 1 : 6);
			struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
			tries++;
		} else if (cr == CURLE_OPERATION_TIMEDOUT) {
			return oci_fail(err, -ETIMEDOUT, ir->host,
					"timed out: no progress for %ld s (%d %s)",
					limits.timeout_s, tries, tries == 1 ? "try" : "tries");
		} else if (cr != CURLE_OK) {
			return oci_fail(err, -EIO, ir->host, "%s (%d %s)",
					cerr[0] ? cerr : curl_easy_strerror(cr), tries,
					tries == 1 ? "try" : "tries");
		} else {
			if (location)
				snprintf(location, 2048, "%s", rh.location);
			if (status != 401 || auth_tried || ir->token_request || !rh.challenge[0])
				return status;
			auth_tried = true;
			int r = authorize(ir, rh.challenge, err);
			if (r <= 0)
				return r < 0 ? r : status;
		}
		if (body_fd >= 0 && (ftruncate(body_fd, 0) < 0 || lseek(body_fd, 0, SEEK_SET) < 0))
			return oci_fail(err, -errno, url, "%s", strerror(errno));
		if (body && body->p)
			body->n = 0, body->p[0] = '\0';
	}
}

static void base_url(const image_ref *r, char *out, size_t len)
{
	snprintf(out, len, "%s://%s/v2/%s", r->plain_http ? "http" : "https", r->host, r->repo);
}

static int http_fail(const image_ref *ir, lyr_oci_error *err, const char *what, long status,
		     const membuf *body)
{
	/* the registry's own error text when it gave one */
	json_t *j = body && body->p ? json_loads(body->p, 0, NULL) : NULL;
	const char *msg = json_string_value(
	    json_object_get(json_array_get(json_object_get(j, "errors"), 0), "message"));
	char by[4600] = ""; /* a refused login names the registry and whose login it was */
	if (status == 401 || status == 403)
		snprintf(by, sizeof by, " (registry %s, %s%s%s)", ir->host,
			 ir->creds.user[0] ? "as user '" : "no credentials", ir->creds.user,
			 ir->creds.user[0] ? "'" : "");
	int r = oci_fail(err,
			 status == 404			  ? -ENOENT
			 : status == 401 || status == 403 ? -EACCES
							  : -EIO,
			 what, "HTTP %ld%s%s%s", status, msg ? ": " : "", msg ? msg : "", by);
	json_decref(j);
	return r;
}

/* GET a manifest or index by REF into BLOBS (named by its digest); RET_DIGEST gets it. */
static int get_manifest(image_ref *ir, const char *ref, int blobs, lyr_oci_error *err,
			char ret_digest[LYR_DIGEST_TEXT_LEN], json_t **ret)
{
	char url[2048];
	base_url(ir, url, sizeof url);
	strncat(url, "/manifests/", sizeof url - strlen(url) - 1);
	strncat(url, ref, sizeof url - strlen(url) - 1);
	struct curl_slist *h = curl_slist_append(NULL, ACCEPT_MANIFESTS);
	membuf body = {0};
	long st = request(ir, "GET", url, h, -1, &body, NULL, NULL, err);
	curl_slist_free_all(h);
	int r = st < 0 ? (int)st : st != 200 ? http_fail(ir, err, ref, st, &body) : 0;
	if (r == 0) {
		uint8_t d[LYR_SHA256_LEN];
		lyr_sha256(body.p, body.n, d);
		lyr_digest_text(d, ret_digest);
		if (strncmp(ref, "sha256:", 7) == 0 && strcmp(ref, ret_digest) != 0)
			r = oci_fail(err, -EBADMSG, ref, "the registry sent a manifest that is %s",
				     ret_digest);
	}
	if (r == 0)
		r = oci_write_file(blobs, ret_digest + 7, body.p, body.n);
	if (r == 0 && !(*ret = json_loadb(body.p, body.n, 0, NULL)))
		r = oci_fail(err, -EBADMSG, ref, "the manifest is not JSON");
	free(body.p);
	return r;
}

static int get_blob(image_ref *ir, const char *digest, int blobs, lyr_oci_error *err)
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71 ||
	    strspn(digest + 7, "0123456789abcdef") != 64)
		return oci_fail(err, -EBADMSG, digest ? digest : "blob", "not a sha256 digest");
	char url[2048];
	base_url(ir, url, sizeof url);
	snprintf(url + strlen(url), sizeof url - strlen(url), "/blobs/%s", digest);
	int fd = openat(blobs, digest + 7, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return oci_fail(err, -errno, digest, "%s", strerror(errno));
	long st = request(ir, "GET", url, NULL, fd, NULL, NULL, NULL, err);
	close(fd);
	if (st < 0)
		return (int)st;
	return st == 200 ? 0 : http_fail(ir, err, digest, st, NULL);
}

int lyr_oci_pull(lyr_store *s, const char *name, bool tls_verify, const char *tag,
		 const char *platform, const lyr_progress *progress, lyr_oci_error *err,
		 lyr_oci_loaded *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	memset(ret, 0, sizeof *ret);
	image_ref ir;
	int r = parse_ref(name, tls_verify, &ir, err);
	if (r < 0)
		return r;
	lyr_stage *scratch;
	r = lyr_stage_new(s, "pull", &scratch);
	if (r < 0)
		return r;
	int dir = lyr_stage_fd(scratch);
	int blobs = -1;
	static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}";
	if (mkdirat(dir, "blobs", 0755) < 0 || mkdirat(dir, "blobs/sha256", 0755) < 0 ||
	    (blobs = openat(dir, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		r = -errno;
	if (r == 0)
		r = oci_write_file(dir, "oci-layout", layout, sizeof layout - 1);
	char top[LYR_DIGEST_TEXT_LEN] = "";
	json_t *m = NULL;
	if (r == 0)
		r = get_manifest(&ir, ir.ref, blobs, err, top, &m);
	const char *mt = json_string_value(json_object_get(m, "mediaType"));
	bool index = mt && (strstr(mt, "index") || strstr(mt, "manifest.list"));
	char want[80];
	snprintf(want, sizeof want, "linux/%s", oci_host_arch());
	if (!platform)
		platform = want;
	json_t *man = m;
	char mdigest[LYR_DIGEST_TEXT_LEN];
	snprintf(mdigest, sizeof mdigest, "%s", top);
	if (r == 0 && index) {
		/* the platform's manifest; load checks the choice again from the same blobs */
		json_t *list = json_object_get(m, "manifests");
		const char *pick = NULL;
		for (size_t i = 0; i < json_array_size(list) && !pick; i++) {
			json_t *d = json_array_get(list, i), *p = json_object_get(d, "platform");
			char os[64] = "", arch[64] = "", var[64] = "";
			sscanf(platform, "%63[^/]/%63[^/]/%63s", os, arch, var);
			const char *pv = json_string_value(json_object_get(p, "variant"));
			if (p &&
			    strcmp(json_string_value(json_object_get(p, "os")) ?: "", os) == 0 &&
			    strcmp(json_string_value(json_object_get(p, "architecture")) ?: "",
				   arch) == 0 &&
			    (!*var || (pv && strcmp(pv, var) == 0)))
				pick = json_string_value(json_object_get(d, "digest"));
		}
		if (!pick)
			r = oci_fail(err, -ENOENT, name, "no image for platform %s", platform);
		else
			r = get_manifest(&ir, pick, blobs, err, mdigest, &man);
	}
	const char *cfg_digest =
	    json_string_value(json_object_get(json_object_get(man, "config"), "digest"));
	if (r == 0)
		r = get_blob(&ir, cfg_digest, blobs, err);
	json_t *layers = json_object_get(man, "layers");
	/* the layers the store has (load finds them by diff_id too) are not downloaded */
	size_t known = 0;
	if (r == 0) {
		json_t *cfg = NULL;
		int fd = openat(blobs, cfg_digest + 7, O_RDONLY | O_CLOEXEC);
		if (fd >= 0) {
			cfg = json_loadfd(fd, 0, NULL);
			close(fd);
		}
		json_t *ids = json_object_get(json_object_get(cfg, "rootfs"), "diff_ids");
		char prev[LYR_ID_MAX] = "", cur[LYR_ID_MAX];
		while (known < json_array_size(ids) && known < json_array_size(layers) &&
		       json_is_string(json_array_get(ids, known)) &&
		       lyr_layer_find_diff_id(s, prev[0] ? prev : NULL,
					      json_string_value(json_array_get(ids, known)),
					      cur) == 0) {
			snprintf(prev, sizeof prev, "%s", cur);
			known++;
		}
		json_decref(cfg);
	}
	for (size_t i = known; r == 0 && i < json_array_size(layers); i++)
		r = get_blob(
		    &ir, json_string_value(json_object_get(json_array_get(layers, i), "digest")),
		    blobs, err);
	if (r == 0) {
		json_t *ix = json_pack(
		    "{s:i,s:[{s:s,s:s,s:{s:s}}]}", "schemaVersion", 2, "manifests", "mediaType",
		    index ? "application/vnd.oci.image.index.v1+json"
			  : "application/vnd.oci.image.manifest.v1+json",
		    "digest", top, "annotations", "org.opencontainers.image.ref.name", "pulled");
		char *text = json_dumps(ix, JSON_COMPACT);
		r = text ? oci_write_file(dir, "index.json", text, strlen(text)) : -ENOMEM;
		free(text);
		json_decref(ix);
	}
	if (man != m)
		json_decref(man);
	json_decref(m);
	if (blobs >= 0)
		close(blobs);
	if (r == 0) {
		char src[256];
		snprintf(src, sizeof src, "oci:/proc/self/fd/%d:pulled", dir);
		r = lyr_oci_load(s, src, tag, platform, progress, err, ret);
	}
	lyr_stage_free(scratch);
	return r;
}

static int put_blob(image_ref *ir, int blobs, const char *digest, lyr_oci_error *err)
{
	char url[2048], loc[2048];
	base_url(ir, url, sizeof url);
	snprintf(url + strlen(url), sizeof url - strlen(url), "/blobs/%s", digest);
	long st = request(ir, "HEAD", url, NULL, -1, NULL, NULL, NULL, err);
	if (st < 0)
		return (int)st;
	if (st == 200)
		return 0; /* the registry has it */
	if (faccessat(blobs, digest + 7, F_OK, 0) < 0)
		return -ENODATA; /* known by its note only: the caller writes it first */
	base_url(ir, url, sizeof url);
	strncat(url, "/blobs/uploads/", sizeof url - strlen(url) - 1);
	membuf empty = {0};
	membuf resp = {0};
	st = request(ir, "POST", url, NULL, -1, &resp, &empty, loc, err);
	if (st < 0) {
		free(resp.p);
		return (int)st;
	}
	if (st != 202 || !loc[0]) {
		int r = http_fail(ir, err, digest, st, &resp);
		free(resp.p);
		return r;
	}
	free(resp.p);
	/* the upload URL may be relative */
	char put[4200];
	if (loc[0] == '/')
		snprintf(put, sizeof put, "%s://%s%s", ir->plain_http ? "http" : "https", ir->host,
			 loc);
	else
		snprintf(put, sizeof put, "%s", loc);
	snprintf(put + strlen(put), sizeof put - strlen(put), "%sdigest=%s",
		 strchr(put, '?') ? "&" : "?", digest);
	int fd = openat(blobs, digest + 7, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return oci_fail(err, -e, digest, "%s", strerror(e));
	}
	membuf data = {malloc((size_t)sb.st_size + 1), (size_t)sb.st_size};
	int r = data.p && read(fd, data.p, data.n) == (ssize_t)data.n ? 0 : -EIO;
	close(fd);
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/octet-stream");
	membuf resp2 = {0};
	if (r == 0) {
		st = request(ir, "PUT", put, h, -1, &resp2, &data, NULL, err);
		r = st < 0 ? (int)st : st == 201 ? 0 : http_fail(ir, err, digest, st, &resp2);
	}
	curl_slist_free_all(h);
	free(resp2.p);
	free(data.p);
	return r;
}

int lyr_oci_push(lyr_store *s, const char *layer_id, const char *name, bool tls_verify,
		 lyr_oci_error *err, lyr_oci_saved *ret)
{
	if (oci_begin(err) < 0)
		return -ENOSYS;
	memset(ret, 0, sizeof *ret);
	image_ref ir;
	int r = parse_ref(name, tls_verify, &ir, err);
	if (r < 0)
		return r;
	if (strncmp(ir.ref, "sha256:", 7) == 0)
		return oci_fail(err, -EINVAL, name, "push needs a tag, not a digest");
	lyr_stage *scratch;
	r = lyr_stage_new(s, "push", &scratch);
	if (r < 0)
		return r;
	int dir = lyr_stage_fd(scratch);
	/* layers saved before are known by their notes: a registry that has their blobs gets
	 * HEAD requests only, and no blob is built */
	r = oci_save_layout(s, layer_id, dir, "push", LYR_OCI_GZIP, true, err, ret);
	int blobs = r == 0 ? openat(dir, "blobs/sha256", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (r == 0 && blobs < 0)
		r = -errno;
	for (size_t i = 0; r == 0 && i < ret->layers; i++) {
		r = put_blob(&ir, blobs, ret->layer_digests[i], err);
		if (r ==
		    -ENODATA) { /* the registry lacks a blob we did not build: build them all */
			lyr_oci_saved_clear(ret);
			r = oci_save_layout(s, layer_id, dir, "push", LYR_OCI_GZIP, false, err,
					    ret);
			if (r == 0)
				r = put_blob(&ir, blobs, ret->layer_digests[i], err);
		}
	}
	if (r == 0)
		r = put_blob(&ir, blobs, ret->config, err);
	if (r == 0) {
		membuf man = {0};
		int fd = openat(blobs, ret->manifest + 7, O_RDONLY | O_CLOEXEC);
		struct stat sb;
		if (fd < 0 || fstat(fd, &sb) < 0 || !(man.p = malloc((size_t)sb.st_size + 1)) ||
		    read(fd, man.p, (size_t)sb.st_size) != sb.st_size)
			r = -EIO;
		else
			man.n = (size_t)sb.st_size;
		if (fd >= 0)
			close(fd);
		char url[2048];
		base_url(&ir, url, sizeof url);
		snprintf(url + strlen(url), sizeof url - strlen(url), "/manifests/%s", ir.ref);
		struct curl_slist *h = curl_slist_append(
		    NULL, "Content-Type: application/vnd.oci.image.manifest.v1+json");
		membuf resp = {0};
		if (r == 0) {
			long st = request(&ir, "PUT", url, h, -1, &resp, &man, NULL, err);
			r = st < 0	? (int)st
			    : st == 201 ? 0
					: http_fail(&ir, err, ir.ref, st, &resp);
		}
		curl_slist_free_all(h);
		free(resp.p);
		free(man.p);
	}
	if (blobs >= 0)
		close(blobs);
	if (r < 0)
		lyr_oci_saved_clear(ret);
	lyr_stage_free(scratch);
	return r;
}
