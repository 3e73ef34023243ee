/* Hashing file contents on all cores, for the content hash (contenthash.c).
 *
 * A job is one regular file: an fd open for reading, the header bytes that precede the content
 * in the digest, and the expected size.  hjob_run computes sha256(header + content) into the
 * job; the pool runs that on its worker threads.  Workers touch nothing but the job they hold
 * (its fd, header and result fields) and their own read buffer: every source operation (lookup,
 * open, xattrs) and every cache call stays with the thread that submits, so sources and caches
 * need not be thread-safe.  The submitter hands a job over with hpool_submit and gets it back,
 * finished, from hpool_take; the lock orders the worker's writes before the submitter's reads.
 *
 * Reading: whole files are read once, front to back, 1 MiB at a time.  posix_fadvise tells the
 * kernel so (SEQUENTIAL), and a WILLNEED window keeps READ_AHEAD bytes past the read position
 * queued at the disk, so a cold file streams while the previous chunk is being hashed instead
 * of waiting for the kernel's small default readahead.
 *
 * Locking: `lock` protects the queue of waiting jobs, the list of finished jobs and `stop`.
 * `abort` is read by workers without the lock, between chunks, to drop the rest of the work
 * after a failure.  The pool does not bound its queue; the submitter bounds how many jobs it has
 * out (each holds an open fd). */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "layerfs/hash.h"

#define READ_AHEAD ((off_t)8 << 20)

struct hpool {
	pthread_mutex_t lock;
	pthread_cond_t work, done;
	hjob *qhead, *qtail; /* waiting, FIFO */
	hjob *finished;      /* done, any order */
	bool stop;
	atomic_bool abort;
	pthread_t *threads;
	unsigned n;
};

unsigned hpool_default_threads(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0) {
		int n = CPU_COUNT(&set);
		if (n > 0)
			return n > HPOOL_MAX_THREADS ? HPOOL_MAX_THREADS : (unsigned)n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > HPOOL_MAX_THREADS ? HPOOL_MAX_THREADS : (unsigned)n;
}

int hjob_run(hjob *j, uint8_t *buf, const atomic_bool *abort)
{
	lyr_sha256_ctx *h = NULL;
	int r = lyr_sha256_new(&h);
	if (r < 0)
		return j->err = r;
	lyr_sha256_update(h, j->hdr.p, j->hdr.len);
	/* A file that fits one read needs no hints; the kernel reads the request at once. */
	if (j->size > (off_t)HJOB_BUF)
		(void)posix_fadvise(j->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	off_t pos = 0, advised = j->size > (off_t)HJOB_BUF ? 0 : j->size;
	for (;;) {
		if (abort && atomic_load_explicit(abort, memory_order_relaxed)) {
			r = -ECANCELED;
			break;
		}
		if (advised < j->size && advised < pos + READ_AHEAD) {
			off_t end = pos + READ_AHEAD;
			(void)posix_fadvise(j->fd, advised, end - advised, POSIX_FADV_WILLNEED);
			advised = end;
		}
		ssize_t n = read(j->fd, buf, HJOB_BUF);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			r = -errno;
		if (n <= 0)
			break;
		lyr_sha256_update(h, buf, (size_t)n);
		pos += n;
	}
	uint8_t d[LYR_SHA256_LEN];
	lyr_sha256_final(h, d);
	lyr_sha256_free(h);
	if (r == 0)
		lyr_digest_text(d, j->digest);
	return j->err = r;
}

static void *worker(void *arg)
{
	hpool *p = arg;
	uint8_t *buf = malloc(HJOB_BUF);
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->qhead && !p->stop)
			pthread_cond_wait(&p->work, &p->lock);
		hjob *j = p->qhead;
		if (!j)
			break; /* stopping, and nothing left */
		p->qhead = j->next;
		if (!p->qhead)
			p->qtail = NULL;
		pthread_mutex_unlock(&p->lock);

		if (buf)
			hjob_run(j, buf, &p->abort);
		else
			j->err = -ENOMEM;

		pthread_mutex_lock(&p->lock);
		j->next = p->finished;
		p->finished = j;
		pthread_cond_signal(&p->done);
	}
	pthread_mutex_unlock(&p->lock);
	free(buf);
	return NULL;
}

int hpool_new(unsigned threads, hpool **ret)
{
	if (threads < 1 || threads > HPOOL_MAX_THREADS)
		return -EINVAL;
	hpool *p = calloc(1, sizeof *p);
	if (!p)
		return -ENOMEM;
	p->threads = calloc(threads, sizeof *p->threads);
	if (!p->threads) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->done, NULL);
	atomic_init(&p->abort, false);
	for (; p->n < threads; p->n++) {
		int r = pthread_create(&p->threads[p->n], NULL, worker, p);
		if (r != 0) {
			if (p->n > 0)
				break; /* fewer workers still do the work */
			hpool_free(p);
			return -r;
		}
	}
	*ret = p;
	return 0;
}

void hpool_submit(hpool *p, hjob *j)
{
	j->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->qtail)
		p->qtail->next = j;
	else
		p->qhead = j;
	p->qtail = j;
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->lock);
}

hjob *hpool_take(hpool *p, bool wait)
{
	pthread_mutex_lock(&p->lock);
	while (wait && !p->finished)
		pthread_cond_wait(&p->done, &p->lock);
	hjob *list = p->finished;
	p->finished = NULL;
	pthread_mutex_unlock(&p->lock);
	return list;
}

void hpool_abort(hpool *p)
{
	atomic_store(&p->abort, true);
}

void hpool_free(hpool *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->work);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->threads[i], NULL);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->work);
	pthread_mutex_destroy(&p->lock);
	free(p->threads);
	free(p);
}
