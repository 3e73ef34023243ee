/* Registries for tests (registry.h). */
#include "registry.h"

#include "layerfs/common.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

/* In a server's child before its exec: the server goes with the test's process, also when
 * Criterion kills that at a timeout and no teardown runs. */
static void die_with_parent(pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(127);
}

static void stop(pid_t *pid)
{
	if (*pid > 0) {
		kill(*pid, SIGTERM);
		waitpid(*pid, NULL, 0);
		*pid = 0;
	}
}

void tu_registry_stop(tu_registry *r)
{
	stop(&r->front_pid);
	stop(&r->pid);
}

void tu_registry_start(tu_registry *r, const char *dir, const char *ip, const char *config)
{
	tu_need_tool("docker-registry");
	memset(r, 0, sizeof *r);
	snprintf(r->dir, sizeof r->dir, "%s", dir);
	int s = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = inet_addr(ip)};
	socklen_t len = sizeof a;
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
	cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
	int port = ntohs(a.sin_port);
	close(s);
	snprintf(r->addr, sizeof r->addr, "%s:%d", ip, port);
	_cleanup_free_ char *cfg = tu_path(dir, "registry.yml");
	cr_assert_eq(tu_sh("mkdir %s/registry && printf 'version: 0.1\\nlog:\\n  level: error\\n"
			   "storage:\\n  delete:\\n    enabled: true\\n  filesystem:\\n"
			   "    rootdirectory: %s/registry\\nhttp:\\n  addr: %s\\n%s' > %s",
			   dir, dir, r->addr, config, cfg),
		     0);
	_cleanup_free_ char *log = tu_path(dir, "registry.log");
	pid_t self = getpid();
	r->pid = fork();
	cr_assert_geq(r->pid, 0);
	if (r->pid == 0) {
		die_with_parent(self);
		int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execlp("docker-registry", "docker-registry", "serve", cfg, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100; i++) { /* up to 5 s for it to listen */
		int c = socket(AF_INET, SOCK_STREAM, 0);
		int ok = connect(c, (struct sockaddr *)&a, sizeof a) == 0;
		close(c);
		if (ok)
			return;
		usleep(50000);
	}
	cr_assert_fail("docker-registry did not start listening on %s", r->addr);
}

void tu_registry_start_tls(tu_registry *r, const char *dir, const char *ip)
{
	tu_need_tool("openssl");
	cr_assert_eq(tu_sh("cd %s && openssl req -x509 -newkey ec -pkeyopt "
			   "ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem "
			   "-days 2 -subj /CN=%s -addext subjectAltName=IP:%s 2>/dev/null",
			   dir, ip, ip),
		     0);
	char config[9000];
	snprintf(config, sizeof config,
		 "  tls:\\n    certificate: %s/cert.pem\\n    key: %s/key.pem\\n", dir, dir);
	tu_registry_start(r, dir, ip, config);
}

char *tu_front_start(tu_registry *r, const char *user_pass, int fails, const char *mode)
{
	tu_need_tool("python3");
	char port_file[4200], log[4200];
	int n = ++r->fronts;
	snprintf(port_file, sizeof port_file, "%s/front-%d.port", r->dir, n);
	snprintf(log, sizeof log, "%s/front-%d.log", r->dir, n);
	char nfails[16];
	snprintf(nfails, sizeof nfails, "%d", fails);
	stop(&r->front_pid);
	pid_t self = getpid();
	r->front_pid = fork();
	cr_assert_geq(r->front_pid, 0);
	if (r->front_pid == 0) {
		die_with_parent(self);
		int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		execlp("python3", "python3", LAYERFS_SOURCE_DIR "/tests/oci/front.py", port_file,
		       r->addr, user_pass, nfails, mode, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200; i++) { /* up to 10 s */
		FILE *f = fopen(port_file, "r");
		int port = 0;
		if (f) {
			int got = fscanf(f, "%d", &port);
			fclose(f);
			if (got == 1) {
				char *ret;
				cr_assert(asprintf(&ret, "127.0.0.1:%d", port) > 0);
				return ret;
			}
		}
		usleep(50000);
	}
	cr_assert_fail("front.py did not start");
	return NULL;
}

int tu_registry_requests(const tu_registry *r, const char *text)
{
	_cleanup_free_ char *log = tu_read(r->dir, "registry.log");
	int n = 0;
	for (const char *p = log; p && (p = strstr(p, text)); p++)
		n++;
	return n;
}

double tu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
