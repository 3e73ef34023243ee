/* Measures lyr_exec_sandbox_run of /bin/true over a busybox root made in a temporary
 * directory (no FUSE, no store: the sandbox alone), with and without the seccomp filter (the
 * two interleaved, so that a change in load hits both), and the same with bwrap and unshare
 * when they are installed.  Prints the median, minimum and maximum of N runs in milliseconds.
 * Built as build/bench-exec-sandbox by scripts/build.
 * Run:   build/bench-exec-sandbox [N]   (as root; default N = 100) */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "layerfs/exec.h"

extern char **environ;

static double now_ms(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *name, double *t, int n)
{
	qsort(t, (size_t)n, sizeof *t, cmp_double);
	printf("%-28s median %6.2f ms   min %6.2f   max %6.2f   (n=%d)\n", name, t[n / 2], t[0],
	       t[n - 1], n);
}

/* Runs ARGV with posix_spawnp and waits; returns its exit status or -1. */
static int spawn_wait(char *const *argv)
{
	pid_t pid;
	if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0)
		return -1;
	int st;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void bench_cmd(const char *name, char *const *argv, int n, double *t)
{
	if (spawn_wait(argv) != 0) {
		printf("%-28s not available\n", name);
		return;
	}
	for (int i = 0; i < n; i++) {
		double a = now_ms();
		spawn_wait(argv);
		t[i] = now_ms() - a;
	}
	report(name, t, n);
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100;
	if (n < 1)
		n = 1;
	char root[] = "/tmp/layerfs-bench-XXXXXX";
	if (!mkdtemp(root)) {
		perror("mkdtemp");
		return 1;
	}
	chmod(root, 0755);
	char cmd[512];
	snprintf(cmd, sizeof cmd,
		 "mkdir -p %s/bin %s/proc %s/dev && cp /bin/busybox %s/bin/ && "
		 "ln -s busybox %s/bin/true",
		 root, root, root, root, root);
	if (system(cmd) != 0) {
		fprintf(stderr, "exec-sandbox: cannot build the root (needs /bin/busybox)\n");
		return 1;
	}
	double *t = calloc((size_t)n, sizeof *t), *t_insecure = calloc((size_t)n, sizeof *t);
	const char *args[] = {"/bin/true", NULL};
	lyr_sandbox sb = {.rootfs = root, .args = args};
	for (int i = 0; i < 2 * n; i++) {
		int st;
		lyr_exec_error err;
		sb.security = i % 2 ? LYR_SECURITY_INSECURE : LYR_SECURITY_SANDBOX;
		double a = now_ms();
		int r = lyr_exec_sandbox_run(&sb, &st, &err);
		(i % 2 ? t_insecure : t)[i / 2] = now_ms() - a;
		if (r < 0 || st != 0) {
			fprintf(stderr, "exec-sandbox: %s (status %d)\n", r < 0 ? err.msg : "", st);
			return 1;
		}
	}
	report("lyr_exec_sandbox_run", t, n);
	report("  --security=insecure", t_insecure, n);
	free(t_insecure);

	char *bwrap[] = {"bwrap", "--unshare-all", "--bind", root,	  "/", "--proc",
			 "/proc", "--dev",	   "/dev",   "/bin/true", NULL};
	bench_cmd("bwrap --unshare-all", bwrap, n, t);
	char *unshare[] = {"unshare", "-mpfiun", "--mount-proc", "--root", root, "/bin/true", NULL};
	bench_cmd("unshare -mpfiun --root", unshare, n, t);

	snprintf(cmd, sizeof cmd, "rm -rf %s", root);
	(void)!system(cmd);
	free(t);
	return 0;
}
