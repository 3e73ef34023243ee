/* The OCI distribution API over libcurl (client.h): requests logged in as the registry asks
 * (basic credentials or a bearer token, from the container tools' auth files, see auth.c),
 * transient failures (no connection, a reset, a timeout, 5xx, 429) retried with backoff, the
 * registry's own error text in every failure.  Uploads stream the blob from its file: one PUT
 * with the digest for a blob that fits in a chunk, PATCHes of chunks and a closing PUT for a
 * larger one (see upload_send for how a failed part is resumed).  Redirects (blob storage elsewhere) are followed for GET.  Blobs are downloaded a
 * few at a time, on threads that each hold a copy of the registry handle (no login state is
 * shared between them); nothing else here uses threads. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "layerfs/hash.h"
#include "layerfs/oci.h"

#define ACCEPT_MANIFESTS                                                                           \
	"Accept: application/vnd.oci.image.index.v1+json, "                                        \
	"application/vnd.oci.image.manifest.v1+json, "                                             \
	"application/vnd.docker.distribution.manifest.list.v2+json, "                              \
	"application/vnd.docker.distribution.manifest.v2+json"

int oci_registry_open(const char *name, bool tls_verify, oci_registry *ret, lyr_oci_error *err)
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
	char location[2048], challenge[1024], link[2048];
	long retry_after; /* seconds, -1 when not given */
	char range[64];	  /* an upload's "0-END" */
	long chunk_min;	  /* OCI-Chunk-Min-Length, 0 when not given */
} resp_headers;

#define RESP_HEADERS_EMPTY ((resp_headers){.retry_after = -1})

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
		*h = RESP_HEADERS_EMPTY; /* a new response (after a redirect) */
	else if (n > 12 && strncasecmp(d, "retry-after:", 12) == 0)
		h->retry_after = strtol(d + 12, NULL, 10); /* an HTTP date counts as 0: soon */
	else if (n > 9 && strncasecmp(d, "location:", 9) == 0)
		header_value(d, n, 9, h->location, sizeof h->location);
	else if (n > 17 && strncasecmp(d, "www-authenticate:", 17) == 0)
		header_value(d, n, 17, h->challenge, sizeof h->challenge);
	else if (n > 5 && strncasecmp(d, "link:", 5) == 0)
		header_value(d, n, 5, h->link, sizeof h->link);
	else if (n > 6 && strncasecmp(d, "range:", 6) == 0)
		header_value(d, n, 6, h->range, sizeof h->range);
	else if (n > 21 && strncasecmp(d, "oci-chunk-min-length:", 21) == 0)
		h->chunk_min = strtol(d + 21, NULL, 10);
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

static int http_fail(const oci_registry *ir, lyr_oci_error *err, const char *what, long status,
		     const membuf *body);

static bool cancelled(const oci_registry *ir)
{
	return ir->cancel && atomic_load(ir->cancel);
}

/* A blob transfer that reports its bytes: NAME (the digest), BASE bytes of it sent by earlier
 * requests, of TOTAL (0: the length the response gives). */
typedef struct xfer_watch {
	const char *name;
	uint64_t base, total;
} xfer_watch;

typedef struct xfer_ctx {
	const oci_registry *ir;
	const xfer_watch *watch; /* may be NULL */
	uint64_t last;		 /* the bytes last reported */
} xfer_ctx;

/* CURLOPT_XFERINFOFUNCTION: reports a watched transfer's bytes as they move; a transfer stops
 * once its handle is cancelled */
static int xfer_info(void *ctx, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		     curl_off_t ulnow)
{
	xfer_ctx *x = ctx;
	const xfer_watch *w = x->watch;
	(void)ultotal;
	if (w && x->ir->progress) {
		uint64_t now = w->base + (uint64_t)(dlnow > 0 ? dlnow : ulnow > 0 ? ulnow : 0);
		uint64_t total = w->total ? w->total : dltotal > 0 ? (uint64_t)dltotal : 0;
		if (now != x->last && total) {
			x->last = now;
			lyr_oci_blob_progress_report(x->ir->progress, w->name, now, total);
		}
	}
	return cancelled(x->ir) ? 1 : 0;
}

static long request(oci_registry *ir, const char *method, const char *url,
		    struct curl_slist *headers, int body_fd, membuf *body, const membuf *upload,
		    resp_headers *ret_headers, lyr_oci_error *err);

/* A request body read from a file: LEN bytes from OFF of FD, DONE of them sent so far. */
typedef struct file_part {
	int fd;
	off_t off, len, done;
	int read_errno; /* set when the file could not be read (or ended early) */
} file_part;

static size_t part_read(char *d, size_t size, size_t nmemb, void *ctx)
{
	file_part *p = ctx;
	size_t want = size * nmemb;
	if ((off_t)want > p->len - p->done)
		want = (size_t)(p->len - p->done);
	if (want == 0)
		return 0;
	ssize_t n = pread(p->fd, d, want, p->off + p->done);
	if (n <= 0) {
		p->read_errno = n < 0 ? errno : EIO;
		return CURL_READFUNC_ABORT;
	}
	p->done += n;
	return (size_t)n;
}

static int part_seek(void *ctx, curl_off_t offset, int origin)
{
	file_part *p = ctx;
	if (origin != SEEK_SET || offset < 0 || offset > p->len)
		return CURL_SEEKFUNC_FAIL;
	p->done = offset;
	return CURL_SEEKFUNC_OK;
}

static long request_body(oci_registry *ir, const char *method, const char *url,
			 struct curl_slist *headers, int body_fd, membuf *body,
			 const membuf *upload, file_part *part, bool once,
			 const xfer_watch *watch, resp_headers *ret_headers, lyr_oci_error *err);

/* A bearer token for the challenge CH (realm, service, scope), asked for with the registry's
 * credentials when there are any, into IR. */
static int fetch_token(oci_registry *ir, const char *ch, lyr_oci_error *err)
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
	oci_registry token_ir = *ir; /* the realm is another server: no token, basic credentials */
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
static int authorize(oci_registry *ir, const char *ch, lyr_oci_error *err)
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
 * default) and its timeout (LAYERFS_REGISTRY_TIMEOUT seconds, 10 by default), unless the
 * registry handle sets its own. */
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

static int request_limits_get(const oci_registry *ir, request_limits *l, lyr_oci_error *err)
{
	long retries = 3;
	l->timeout_s = 10;
	int r = env_number("LAYERFS_REGISTRY_RETRIES", 0, 99, &retries, err);
	if (r == 0)
		r = env_number("LAYERFS_REGISTRY_TIMEOUT", 1, 86400, &l->timeout_s, err);
	if (ir->retries > 0)
		retries = ir->retries;
	if (ir->timeout_s > 0)
		l->timeout_s = ir->timeout_s;
	l->tries = (int)retries + 1;
	return r;
}

/* One request: METHOD on URL with HEADERS; the body to BODY_FD (>= 0) or BODY; UPLOAD (may be
 * NULL) sent; RET_HEADERS (may be NULL) gets the headers looked at.  A 401 is answered as the
 * registry asks (basic credentials or a bearer token) and the request tried again; so is a
 * transient failure (no connection, a reset, a timeout, 5xx, 429), after a backoff, as often as
 * request_limits say.  Returns the HTTP status, or -errno with ERR filled. */
static long request(oci_registry *ir, const char *method, const char *url,
		    struct curl_slist *headers, int body_fd, membuf *body, const membuf *upload,
		    resp_headers *ret_headers, lyr_oci_error *err)
{
	return request_body(ir, method, url, headers, body_fd, body, upload, NULL, false, NULL,
			    ret_headers, err);
}

/* request, with the body sent from PART (may be NULL) instead of UPLOAD; with ONCE, a
 * transient failure is not tried again here but returned: -EAGAIN for no connection, a reset
 * or a timeout (ERR filled), the status for 5xx and 429 (the caller asks where an upload stands
 * before it sends more).  WATCH (may be NULL): the blob whose bytes this request moves. */
static long request_body(oci_registry *ir, const char *method, const char *url,
			 struct curl_slist *headers, int body_fd, membuf *body,
			 const membuf *upload, file_part *part, bool once,
			 const xfer_watch *watch, resp_headers *ret_headers, lyr_oci_error *err)
{
	bool auth_tried = false;
	int tries = 1;
	char plain[4400];
	request_limits limits;
	int lr = request_limits_get(ir, &limits, err);
	if (lr < 0)
		return lr;
	for (;;) {
		if (cancelled(ir))
			return oci_fail(err, -ECANCELED, ir->host, "cancelled");
		CURL *c = ir->conn ? ir->conn : curl_easy_init();
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
		} else if (part) {
			/* streamed from the file, its length known: no blob is held in memory */
			part->done = 0;
			curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
			curl_easy_setopt(c, CURLOPT_READFUNCTION, part_read);
			curl_easy_setopt(c, CURLOPT_READDATA, part);
			curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, part_seek);
			curl_easy_setopt(c, CURLOPT_SEEKDATA, part);
			curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)part->len);
			h = curl_slist_append(h, "Expect:"); /* no wait for a 100 Continue */
		}
		membuf sink = {0};
		if (body_fd >= 0) {
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fd_write);
			curl_easy_setopt(c, CURLOPT_WRITEDATA, &body_fd);
		} else {
			curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
			curl_easy_setopt(c, CURLOPT_WRITEDATA, body ? body : &sink);
		}
		resp_headers rh = RESP_HEADERS_EMPTY;
		curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(c, CURLOPT_HEADERDATA, &rh);
		xfer_ctx xc = {ir, watch, 0};
		if (ir->cancel || (watch && ir->progress)) {
			curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xfer_info);
			curl_easy_setopt(c, CURLOPT_XFERINFODATA, &xc);
			curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
		}
		CURLcode cr = curl_easy_perform(c);
		long status = 0;
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
		if (c != ir->conn)
			curl_easy_cleanup(c);
		else /* its connection stays; no option points into this frame any more */
			curl_easy_reset(c);
		curl_slist_free_all(h);
		free(sink.p);
		bool transient = cr == CURLE_COULDNT_CONNECT || cr == CURLE_SEND_ERROR ||
				 cr == CURLE_RECV_ERROR || cr == CURLE_GOT_NOTHING ||
				 cr == CURLE_OPERATION_TIMEDOUT || cr == CURLE_PARTIAL_FILE ||
				 (cr == CURLE_OK && (status >= 500 || status == 429));
		if (cr == CURLE_ABORTED_BY_CALLBACK && part && part->read_errno) {
			return oci_fail(err, -part->read_errno, url, "reading the blob: %s",
					strerror(part->read_errno));
		} else if (cr == CURLE_ABORTED_BY_CALLBACK) {
			return oci_fail(err, -ECANCELED, ir->host, "cancelled");
		} else if (cr == CURLE_SSL_CONNECT_ERROR && !ir->tls_verify && !ir->plain_http &&
		    strncmp(url, "https://", 8) == 0) {
			/* --tls-verify=false: a registry that speaks no TLS is spoken to in plain
			 * HTTP, as podman and skopeo do */
			ir->plain_http = true;
			snprintf(plain, sizeof plain, "http://%s", url + 8);
			url = plain;
		} else if (transient && once && cr != CURLE_OK) {
			return oci_fail(err, -EAGAIN, ir->host, "%s",
					cerr[0] ? cerr : curl_easy_strerror(cr));
		} else if (transient && tries < limits.tries && !once) {
			/* backoff: 250 ms, doubled each time, or what Retry-After asks (at most 30
			 * s) */
			long ms = rh.retry_after >= 0
				      ? (rh.retry_after > 30 ? 30 : rh.retry_after) * 1000
				      : 250L << (tries - 1 < 6 ? tries - 1 : 6);
			for (long slept = 0; slept < ms && !cancelled(ir); slept += 50) {
				long step = ms - slept < 50 ? ms - slept : 50;
				struct timespec ts = {0, step * 1000000};
				while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
					;
			}
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
			if (ret_headers)
				*ret_headers = rh;
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

int oci_registry_keep(oci_registry *ir)
{
	if (!ir->conn && !(ir->conn = curl_easy_init()))
		return -ENOMEM;
	return 0;
}

void oci_registry_close(oci_registry *ir)
{
	if (ir->conn)
		curl_easy_cleanup(ir->conn);
	ir->conn = NULL;
}

static void base_url(const oci_registry *r, char *out, size_t len)
{
	snprintf(out, len, "%s://%s/v2/%s", r->plain_http ? "http" : "https", r->host, r->repo);
}

static int http_fail(const oci_registry *ir, lyr_oci_error *err, const char *what, long status,
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

/* URL: the repository's base URL followed by PATH and ARG. */
static void repo_url(const oci_registry *r, char *url, size_t len, const char *path,
		     const char *arg)
{
	base_url(r, url, len);
	snprintf(url + strlen(url), len - strlen(url), "%s%s", path, arg);
}

int oci_registry_manifest_get(oci_registry *ir, const char *ref, int blobs, lyr_oci_error *err,
			      char ret_digest[LYR_DIGEST_TEXT_LEN], json_t **ret)
{
	char url[2048];
	repo_url(ir, url, sizeof url, "/manifests/", ref);
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
	if (r == 0 && blobs >= 0)
		r = oci_write_file(blobs, ret_digest + 7, body.p, body.n);
	if (r == 0 && !(*ret = json_loadb(body.p, body.n, 0, NULL)))
		r = oci_fail(err, -EBADMSG, ref, "the manifest is not JSON");
	free(body.p);
	return r;
}

int oci_registry_blob_get(oci_registry *ir, const char *digest, int blobs, lyr_oci_error *err)
{
	if (!digest || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 71 ||
	    strspn(digest + 7, "0123456789abcdef") != 64)
		return oci_fail(err, -EBADMSG, digest ? digest : "blob", "not a sha256 digest");
	char url[2048];
	repo_url(ir, url, sizeof url, "/blobs/", digest);
	int fd = openat(blobs, digest + 7, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return oci_fail(err, -errno, digest, "%s", strerror(errno));
	xfer_watch w = {digest, 0, 0};
	long st = request_body(ir, "GET", url, NULL, fd, NULL, NULL, NULL, false, &w, NULL, err);
	int r = st < 0 ? (int)st : 0;
	struct stat sb;
	if (st == 200 && fstat(fd, &sb) == 0) /* the last word: all of it */
		lyr_oci_blob_progress_report(ir->progress, digest, (uint64_t)sb.st_size, (uint64_t)sb.st_size);
	if (st >= 0 && st != 200) {
		/* what came is the registry's error, not the blob */
		char text[8192];
		ssize_t n = pread(fd, text, sizeof text - 1, 0);
		membuf body = {text, n > 0 ? (size_t)n : 0};
		text[body.n] = '\0';
		r = http_fail(ir, err, digest, st, &body);
		unlinkat(blobs, digest + 7, 0);
	}
	close(fd);
	return r;
}

/* The downloads of oci_registry_blobs_get: workers take the next digest until none is left or
 * one failed; LOCK guards NEXT and the first failure (R, ERR). */
typedef struct blobs_job {
	const oci_registry *base;
	const char *const *digests;
	size_t n, next;
	int blobs;
	pthread_mutex_t lock;
	atomic_bool cancel;
	int r;
	lyr_oci_error *err;
} blobs_job;

static void *blobs_worker(void *arg)
{
	blobs_job *j = arg;
	/* a handle of its own: a worker that must log in again does so on its copy */
	oci_registry ir = *j->base;
	ir.cancel = &j->cancel;
	ir.conn = NULL;
	for (;;) {
		pthread_mutex_lock(&j->lock);
		size_t i = j->next < j->n && j->r == 0 ? j->next++ : j->n;
		pthread_mutex_unlock(&j->lock);
		if (i >= j->n)
			return NULL;
		lyr_oci_error e = {.entry = ""};
		int r = oci_registry_blob_get(&ir, j->digests[i], j->blobs, &e);
		if (r >= 0)
			continue;
		pthread_mutex_lock(&j->lock);
		if (j->r == 0 && r != -ECANCELED) {
			j->r = r;
			if (j->err)
				*j->err = e;
			atomic_store(&j->cancel, true);
		}
		pthread_mutex_unlock(&j->lock);
	}
}

int oci_registry_blobs_get(oci_registry *ir, const char *const *digests, size_t n, int blobs,
			   lyr_oci_error *err)
{
	blobs_job j = {.base = ir, .digests = digests, .n = n, .blobs = blobs, .err = err};
	pthread_mutex_init(&j.lock, NULL);
	atomic_init(&j.cancel, false);
	pthread_t t[OCI_REGISTRY_DOWNLOADS];
	size_t started = 0;
	for (size_t i = 0; i < n; i++) /* shown in this order, whichever starts first */
		lyr_oci_blob_progress_report(ir->progress, digests[i], 0, 0);
	/* the first download runs here: one blob needs no thread */
	while (started + 1 < OCI_REGISTRY_DOWNLOADS && started + 1 < n &&
	       pthread_create(&t[started], NULL, blobs_worker, &j) == 0)
		started++;
	blobs_worker(&j);
	for (size_t i = 0; i < started; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&j.lock);
	return j.r;
}

int oci_registry_blob_has(oci_registry *ir, const char *digest, lyr_oci_error *err)
{
	char url[2048];
	repo_url(ir, url, sizeof url, "/blobs/", digest);
	long st = request(ir, "HEAD", url, NULL, -1, NULL, NULL, NULL, err);
	if (st < 0)
		return (int)st;
	return st == 200 ? 1 : st == 404 ? 0 : http_fail(ir, err, digest, st, NULL);
}

/* An upload's LOCATION (relative to the registry or whole) as a URL into OUT. */
static void upload_url(const oci_registry *ir, const char *location, char *out, size_t len)
{
	if (location[0] == '/')
		snprintf(out, len, "%s://%s%s", ir->plain_http ? "http" : "https", ir->host,
			 location);
	else
		snprintf(out, len, "%s", location);
}

/* POST /blobs/uploads/: a new upload session of DIGEST, its URL into LOC, the smallest chunk
 * the registry takes into *CHUNK_MIN.  With FROM (may be NULL), the registry is asked to mount
 * the blob from that repository instead: 1 when it did (201, nothing to upload), 0 when it
 * opened a session (202) as without FROM. */
static int upload_start(oci_registry *ir, const char *digest, const char *from, char *loc,
			size_t len, long *chunk_min, lyr_oci_error *err)
{
	char url[2600], arg[700] = "";
	if (from) {
		CURL *c = curl_easy_init();
		char *e = c ? curl_easy_escape(c, from, 0) : NULL;
		if (c)
			curl_easy_cleanup(c);
		if (!e)
			return -ENOMEM;
		snprintf(arg, sizeof arg, "?mount=%s&from=%s", digest, e);
		curl_free(e);
	}
	repo_url(ir, url, sizeof url, "/blobs/uploads/", arg);
	membuf empty = {0}, resp = {0};
	resp_headers rh;
	long st = request(ir, "POST", url, NULL, -1, &resp, &empty, &rh, err);
	int r = st < 0				 ? (int)st
		: st == 201 && from		 ? 1
		: st != 202 || !rh.location[0] ? http_fail(ir, err, digest, st, &resp)
						 : 0;
	free(resp.p);
	if (r == 0) {
		upload_url(ir, rh.location, loc, len);
		*chunk_min = rh.chunk_min;
	}
	return r;
}

/* Sends the SIZE bytes of FD (the blob DIGEST) to the upload session at LOC: one PUT with
 * the digest when the blob fits in a chunk of CHUNK bytes (monolithic), else a PATCH per
 * chunk (Content-Range START-END) and a closing PUT with the digest and no body.  A part that
 * fails on the way (no connection, a reset, 5xx, 429) is not sent again blindly: the session is
 * asked where it stands (GET, 204 with Range 0-END) and the upload goes on from there, at most
 * TRIES times in all.  -EAGAIN when the registry no longer knows the session (the caller
 * starts a new one). */
static int upload_send(oci_registry *ir, int fd, off_t size, off_t chunk, const char *digest,
		       char *loc, size_t loc_len, int tries, lyr_oci_error *err)
{
	bool monolithic = size <= chunk;
	off_t done = 0;
	for (int failed = 0;;) {
		bool last = monolithic || done == size;
		off_t len = last ? size - done : size - done < chunk ? size - done : chunk;
		char url[4300], range[80];
		snprintf(url, sizeof url, "%s%s%s%s", loc, last ? strchr(loc, '?') ? "&" : "?" : "",
			 last ? "digest=" : "", last ? digest : "");
		struct curl_slist *h =
		    curl_slist_append(NULL, "Content-Type: application/octet-stream");
		if (!last) {
			snprintf(range, sizeof range, "Content-Range: %lld-%lld", (long long)done,
				 (long long)(done + len - 1));
			h = curl_slist_append(h, range);
		}
		file_part part = {.fd = fd, .off = done, .len = len};
		membuf resp = {0};
		resp_headers rh = RESP_HEADERS_EMPTY;
		xfer_watch w = {digest, (uint64_t)done, (uint64_t)size};
		long st = request_body(ir, last ? "PUT" : "PATCH", url, h, -1, &resp, NULL, &part,
				       true, &w, &rh, err);
		curl_slist_free_all(h);
		bool transient = st == -EAGAIN || st >= 500 || st == 429;
		int r = st == (last ? 201 : 202) ? 0
			: transient		 ? -EAGAIN
			: st < 0		 ? (int)st
						 : http_fail(ir, err, digest, st, &resp);
		if (r == -EAGAIN && st > 0)
			http_fail(ir, err, digest, st, &resp); /* the words, should this be the last */
		free(resp.p);
		if (r == 0 && last) {
			lyr_oci_blob_progress_report(ir->progress, digest, (uint64_t)size, (uint64_t)size);
			return 0;
		}
		if (r == 0) {
			done += len;
			if (rh.location[0])
				upload_url(ir, rh.location, loc, loc_len);
			continue;
		}
		if (st == 416)
			return -EAGAIN; /* the session holds other bytes than we thought */
		if (r != -EAGAIN)
			return r;
		if (++failed >= tries) {
			char why[sizeof err->why];
			snprintf(why, sizeof why, "%s", err ? err->why : "");
			return oci_fail(err, -EIO, digest, "%s (%d tries)", why, failed);
		}
		long ms = rh.retry_after >= 0 ? (rh.retry_after > 30 ? 30 : rh.retry_after) * 1000
					      : 250L << (failed - 1 < 6 ? failed - 1 : 6);
		struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		/* where the session stands: the bytes it holds are not sent again */
		lyr_oci_error status_err;
		rh = RESP_HEADERS_EMPTY;
		st = request(ir, "GET", loc, NULL, -1, NULL, NULL, &rh, &status_err);
		if (st == 404)
			return -EAGAIN;
		if (st != 204)
			continue; /* unknown: the same part again */
		/* "0-END", END the last byte held; the reference registry says "0-0" for none as
		 * for one byte: taken as none (had the byte come, the next part gets a 416, which
		 * starts a new session) */
		const char *dash = strchr(rh.range, '-');
		long long end = dash ? strtoll(dash + 1, NULL, 10) : -1;
		if (end == 0)
			end = -1;
		if (end + 1 > size)
			return oci_fail(err, -EPROTO, digest,
					"the registry holds %lld bytes of a %lld-byte blob",
					end + 1, (long long)size);
		done = monolithic ? 0 : end + 1;
		if (monolithic && end >= 0)
			return -EAGAIN; /* a PUT cut short: that session is spoilt */
		if (rh.location[0])
			upload_url(ir, rh.location, loc, loc_len);
	}
}

int oci_registry_blob_put(oci_registry *ir, int blobs, const char *digest, lyr_oci_error *err)
{
	return oci_registry_blob_put_from(ir, blobs, digest, NULL, err);
}

int oci_registry_blob_put_from(oci_registry *ir, int blobs, const char *digest, const char *from,
			       lyr_oci_error *err)
{
	int r = oci_registry_blob_has(ir, digest, err);
	if (r != 0)
		return r < 0 ? r : 0; /* the registry has it */
	char loc[4200];
	long chunk_min = 0;
	bool opened = false; /* a session the mount request opened */
	if (from) {
		r = upload_start(ir, digest, from, loc, sizeof loc, &chunk_min, err);
		if (r != 0)
			return r < 0 ? r : 1;
		opened = true;
	}
	int fd = openat(blobs, digest + 7, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return -ENODATA; /* known by its note only: the caller writes it first */
	struct stat sb;
	if (fd < 0 || fstat(fd, &sb) < 0) {
		int e = errno;
		if (fd >= 0)
			close(fd);
		return oci_fail(err, -e, digest, "%s", strerror(e));
	}
	request_limits limits;
	long chunk = OCI_REGISTRY_CHUNK;
	r = request_limits_get(ir, &limits, err);
	if (r == 0)
		r = env_number("LAYERFS_REGISTRY_CHUNK", 1, LONG_MAX, &chunk, err);
	/* a session the registry forgot (or a PUT cut short) is started again, as often as a
	 * request is tried */
	for (int session = 0; r == 0; session++) {
		if (!opened)
			r = upload_start(ir, digest, NULL, loc, sizeof loc, &chunk_min, err);
		opened = false;
		if (r == 0)
			r = upload_send(ir, fd, sb.st_size, chunk > chunk_min ? chunk : chunk_min,
					digest, loc, sizeof loc, limits.tries, err);
		if (r != -EAGAIN)
			break;
		r = session + 1 < limits.tries ? 0
					       : oci_fail(err, -EIO, digest,
							  "the registry lost the upload %d times",
							  session + 1);
	}
	close(fd);
	return r;
}

int oci_registry_manifest_put(oci_registry *ir, const char *ref, const char *media_type,
			      const void *data, size_t len, lyr_oci_error *err)
{
	char url[2048], ct[256];
	repo_url(ir, url, sizeof url, "/manifests/", ref);
	snprintf(ct, sizeof ct, "Content-Type: %s", media_type);
	struct curl_slist *h = curl_slist_append(NULL, ct);
	membuf body = {(char *)data, len}, resp = {0};
	long st = request(ir, "PUT", url, h, -1, &resp, &body, NULL, err);
	int r = st < 0 ? (int)st : st == 201 ? 0 : http_fail(ir, err, ref, st, &resp);
	curl_slist_free_all(h);
	free(resp.p);
	return r;
}

int oci_registry_manifest_delete(oci_registry *ir, const char *digest, lyr_oci_error *err)
{
	char url[2048];
	repo_url(ir, url, sizeof url, "/manifests/", digest);
	membuf resp = {0};
	long st = request(ir, "DELETE", url, NULL, -1, &resp, NULL, NULL, err);
	int r = st < 0			 ? (int)st
		: st == 202 || st == 200 ? 0
					 : http_fail(ir, err, digest, st, &resp);
	free(resp.p);
	return r;
}

int oci_registry_tags_list(oci_registry *ir, lyr_oci_error *err, json_t **ret)
{
	char url[4200];
	repo_url(ir, url, sizeof url, "/tags/list?n=", "1000");
	json_t *all = json_array();
	int r = all ? 0 : -ENOMEM;
	/* a registry that pages the list says where the next page is in a Link header:
	 * <URL>; rel="next", URL relative to the registry */
	for (int page = 0; r == 0 && url[0]; page++) {
		membuf body = {0};
		resp_headers rh;
		long st = request(ir, "GET", url, NULL, -1, &body, NULL, &rh, err);
		json_t *j = NULL;
		if (st < 0)
			r = (int)st;
		else if (st == 404 && page == 0)
			url[0] = '\0'; /* no such repository: no tags */
		else if (st != 200)
			r = http_fail(ir, err, ir->repo, st, &body);
		else if (!(j = json_loadb(body.p, body.n, 0, NULL)))
			r = oci_fail(err, -EBADMSG, ir->repo, "the tag list is not JSON");
		else {
			json_t *tags = json_object_get(j, "tags"), *t;
			size_t i;
			json_array_foreach(tags, i, t) if (json_is_string(t))
			    json_array_append(all, t);
			const char *lt = strchr(rh.link, '<'), *gt = lt ? strchr(lt, '>') : NULL;
			url[0] = '\0';
			if (lt && gt && strstr(gt, "rel=\"next\"")) {
				if (lt[1] == '/')
					snprintf(url, sizeof url, "%s://%s%.*s",
						 ir->plain_http ? "http" : "https", ir->host,
						 (int)(gt - lt - 1), lt + 1);
				else
					snprintf(url, sizeof url, "%.*s", (int)(gt - lt - 1),
						 lt + 1);
			}
			if (page > 10000)
				r = oci_fail(err, -EPROTO, ir->repo, "the tag list does not end");
		}
		json_decref(j);
		free(body.p);
	}
	if (r < 0)
		json_decref(all);
	else
		*ret = all;
	return r;
}
