/* The session loop: worker threads that read requests from /dev/fuse and hand them to libfuse's
 * dispatcher.  It is our own rather than fuse_session_loop_mt for one reason: libfuse 3.14 (Debian
 * 12) predates FUSE_TMPFILE and answers it ENOSYS, after which the kernel fails every O_TMPFILE
 * open on the mount with EOPNOTSUPP.  A FUSE_TMPFILE request carries exactly the arguments of a
 * FUSE_CREATE (fuse_create_in and a name) and takes exactly its reply (entry and open), so the
 * loop hands it to libfuse as a create and marks the thread (ovl_loop_tmpfile) for the create
 * handler, which then makes an unnamed file.  Requests spliced into a pipe (large writes) are not
 * looked at; a FUSE_TMPFILE is small and always arrives in memory.
 *
 * Threads: one at start; a worker that takes a request when no other is waiting starts another,
 * up to MAX.  Workers live until the session ends: an idle worker costs a blocked read.  The
 * session ends when the kernel connection goes (unmount: every read fails with ENODEV, which
 * libfuse turns into fuse_session_exit) or when a signal handler of fuse_set_signal_handlers calls
 * fuse_session_exit; the signals are blocked in workers, so they reach the main thread, which
 * waits on a semaphore, wakes, and cancels the workers (each blocks cancellation while it
 * handles a request, so a reply is never cut short). */
#include <errno.h>
#include <linux/fuse.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ovl.h"

_Thread_local bool ovl_loop_tmpfile;

struct worker {
	pthread_t thread;
	struct worker *next;
	struct loop *loop;
	struct fuse_buf buf;
};

struct loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	struct worker *workers; /* lock: every worker started, joined at the end */
	unsigned nworkers;	/* lock */
	unsigned idle;		/* lock: workers waiting for a request */
	unsigned max;
	bool closing;	/* lock: the session has ended, no worker may start */
	sem_t finished; /* posted by each worker that leaves its loop */
	int error;	/* lock: the first read error other than the end of the session */
};

static int start_worker(struct loop *l);

/* A FUSE_TMPFILE in BUF becomes the create it is shaped like (see the top of the file). */
static void translate(struct fuse_buf *buf)
{
	ovl_loop_tmpfile = false;
	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(struct fuse_in_header))
		return;
	struct fuse_in_header *h = buf->mem;
	if (h->opcode == FUSE_TMPFILE) {
		h->opcode = FUSE_CREATE;
		ovl_loop_tmpfile = true;
	}
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct loop *l = w->loop;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (!fuse_session_exited(l->se)) {
		pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
		int res = fuse_session_receive_buf(l->se, &w->buf);
		pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
		if (res == -EINTR)
			continue;
		if (res <= 0) {
			if (res < 0) {
				pthread_mutex_lock(&l->lock);
				if (!l->error)
					l->error = res;
				pthread_mutex_unlock(&l->lock);
				fuse_session_exit(l->se);
			}
			break;
		}
		pthread_mutex_lock(&l->lock);
		bool spawn = --l->idle == 0 && l->nworkers < l->max;
		pthread_mutex_unlock(&l->lock);
		int e = spawn ? start_worker(l) : 0;
		if (e < 0 && e != -ECANCELED)
			ovl_log("cannot start another request thread: %s", strerror(-e));
		translate(&w->buf);
		fuse_session_process_buf(l->se, &w->buf);
		ovl_loop_tmpfile = false;
		pthread_mutex_lock(&l->lock);
		l->idle++;
		pthread_mutex_unlock(&l->lock);
	}
	sem_post(&l->finished);
	return NULL;
}

static int start_worker(struct loop *l)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->loop = l;
	pthread_mutex_lock(&l->lock);
	int e = l->closing ? ECANCELED : pthread_create(&w->thread, NULL, work, w);
	if (e) {
		pthread_mutex_unlock(&l->lock);
		free(w);
		return -e;
	}
	w->next = l->workers;
	l->workers = w;
	l->nworkers++;
	l->idle++;
	pthread_mutex_unlock(&l->lock);
	return 0;
}

int ovl_loop_run(struct fuse_session *se, unsigned max)
{
	struct loop l = {.se = se, .max = max ? max : 1};
	pthread_mutex_init(&l.lock, NULL);
	sem_init(&l.finished, 0, 0);
	/* workers inherit this mask: the exit signals go to this thread and wake it */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int r = start_worker(&l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		while (!fuse_session_exited(se))
			sem_wait(&l.finished);
	pthread_mutex_lock(&l.lock);
	struct worker *all = l.workers;
	l.workers = NULL;
	l.closing = true;
	if (r == 0)
		r = l.error;
	pthread_mutex_unlock(&l.lock);
	for (struct worker *w = all; w; w = w->next)
		pthread_cancel(w->thread);
	while (all) {
		struct worker *w = all;
		all = w->next;
		pthread_join(w->thread, NULL);
		free(w->buf.mem);
		free(w);
	}
	sem_destroy(&l.finished);
	pthread_mutex_destroy(&l.lock);
	return r;
}
