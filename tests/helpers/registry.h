/* Test helpers for registries: the reference docker-registry started on a free port of a
 * loopback address with its storage in a test's directory, and tests/oci/front.py, a front
 * that logs in with a bearer token, fails, stalls or slows down on request. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>

typedef struct tu_registry {
	pid_t pid, front_pid;
	char addr[64]; /* "IP:PORT" of the registry */
	char dir[4096]; /* the test's directory: registry.yml, registry.log, registry/, front-N.* */
	int fronts;	/* fronts started so far (their logs: front-N.log) */
} tu_registry;

/* Starts docker-registry on a free port of IP (manifest deletes enabled) with its storage
 * DIR/registry and CONFIG (YAML lines added to its configuration, "" for none); access log in
 * DIR/registry.log. */
void tu_registry_start(tu_registry *r, const char *dir, const char *ip, const char *config);
/* The same speaking only TLS, with a certificate for IP that no one signed: its own
 * (DIR/cert.pem, its key DIR/key.pem).  IP should not be 127.0.0.1, which layerfs speaks
 * plain HTTP to by default. */
void tu_registry_start_tls(tu_registry *r, const char *dir, const char *ip);
/* Stops the front and the registry (either may have been stopped already). */
void tu_registry_stop(tu_registry *r);
/* Starts tests/oci/front.py before the registry: FAILS failures first (a 429, a dropped
 * connection, then 503s), then a bearer-token login with USER_PASS ("-": no login); MODE (may
 * be NULL): one of front.py's modes, e.g. "stall" (no answer ever), "500" (every answer a 500),
 * "delay:S" (every answer after S seconds), "delay=MS" (each blob GET held MS ms).  Returns "127.0.0.1:PORT" (heap); its requests are logged in
 * DIR/front-N.log.  A front started before is stopped first. */
char *tu_front_start(tu_registry *r, const char *user_pass, int fails, const char *mode);
/* Requests in the registry's access log that contain TEXT ("\"POST /v2/", ...). */
int tu_registry_requests(const tu_registry *r, const char *text);
/* Seconds on the monotonic clock. */
double tu_now(void);
