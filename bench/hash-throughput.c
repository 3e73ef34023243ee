/* Measures lyr_hash_diff throughput over a directory: prints bytes, seconds and MB/s.
 * Built as build/bench-hash-throughput by scripts/build.
 * Run:   build/bench-hash-throughput DIR   (run twice: the first run may read from disk) */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "layerfs/hash.h"

static void last(void *ctx, uint64_t files, uint64_t bytes)
{
	uint64_t *out = ctx;
	out[0] = files;
	out[1] = bytes;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	int fd = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		perror(argv[1]);
		return 1;
	}
	uint64_t totals[2] = {0};
	lyr_progress p = {last, totals};
	char digest[LYR_DIGEST_TEXT_LEN], err[PATH_MAX] = "";
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	int r = lyr_hash_diff(fd, &p, digest, err);
	clock_gettime(CLOCK_MONOTONIC, &b);
	if (r < 0) {
		fprintf(stderr, "hash-throughput: '%s': %s\n", err, strerror(-r));
		return 1;
	}
	double s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	printf("%s\n%llu files, %llu bytes in %.3f s: %.0f MB/s\n", digest,
	       (unsigned long long)totals[0], (unsigned long long)totals[1], s,
	       (double)totals[1] / s / 1e6);
	return 0;
}
