/* The session loop: worker threads that read requests from /dev/fuse and hand them to libfuse's
 * dispatcher.  It is our own rather than fuse_session_loop_mt for one reason: libfuse 3.14 (Debian
 * 12) predates FUSE_TMPFILE and answers it ENOSYS, after which the kernel fails every O_TMPFILE
 * open on the mount with EOPNOTSUPP.  A FUSE_TMPFILE request carries exactly the arguments of a
 * FUSE_CREATE (fuse_create_in and a name) and takes exactly its reply (entry and open), so the
 * loop hands it to libfuse as a create and marks the thread (ovl_loop_tmpfile) for the create
 * handler, which then makes an unnamed file.  Requests are read into memory (splice read is off),
 * so the header is always there to look at.
 *
 * Threads: one reads requests at a time (the reader) and handles the quick ones itself, going
 * straight back to reading: the thread the kernel wakes for the next request is the one that just
 * replied, as in a single-threaded loop, which is what a client issuing one request after another
 * (find, cat, tar, a compiler) waits on.  A request that may wait long on data (a data copy-up,
 * I/O of more than a few pages, fsync) makes its thread give up reading first: a waiting worker,
 * or a new one up to MAX, takes over, so that such a request never holds up the others.
 * Listings and lookups stay with the reader: they wait on the disk at most for the inodes they
 * name.
 * Workers live until the session ends.  The session ends when the kernel connection goes
 * (unmount: every read fails with ENODEV, which libfuse turns into fuse_session_exit) or when a
 * signal handler of fuse_set_signal_handlers calls fuse_session_exit; the signals are blocked in
 * workers, so they reach the main thread, which waits on a semaphore, wakes, and cancels the
 * reader (each worker blocks cancellation while it handles a request, so a reply is never cut
 * short). */
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <semaphore.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ovl.h"

_Thread_local bool ovl_loop_tmpfile;
_Thread_local bool ovl_loop_kill_suidgid;

/* FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot negotiate (it predates it): when the
 * kernel offers it, the loop notes the INIT request and the reply to it, on its way out through
 * io_writev, gets the flag added.  The kernel then leaves the clearing of set-id bits on write,
 * truncate and chown to the daemon, marks each such request (ovl_loop_kill_suidgid for the
 * handlers), and stops asking for security.capability before every write() call and for fresh
 * attributes before every chown (docs/overlay.md, "Round trips"). */
static _Atomic uint64_t init_unique; /* the INIT request that offered it, 0 before */
static atomic_bool *killpriv_set;    /* &fs->killpriv: set once the reply carries the flag */

struct worker {
	pthread_t thread;
	struct worker *next;
	struct loop *loop;
	struct fuse_buf buf;
};

struct loop {
	struct fuse_session *se;
	pthread_mutex_t lock;
	pthread_cond_t turn;	/* signalled when the reader's place is free */
	struct worker *workers; /* lock: every worker started, joined at the end */
	unsigned nworkers;	/* lock */
	unsigned waiting;	/* lock: workers waiting for the reader's place */
	bool reading;		/* lock: a worker holds the reader's place */
	unsigned max;
	bool closing;	/* lock: the session has ended, no worker may start */
	sem_t finished; /* posted by each worker that leaves its loop */
	int error;	/* lock: the first read error other than the end of the session */
};

static int start_worker(struct loop *l);

/* A FUSE_TMPFILE in BUF becomes the create it is shaped like (see the top of the file).
 * Returns true when the request may wait long on data (see the top of the file). */
static bool translate(struct fuse_buf *buf)
{
	ovl_loop_tmpfile = false;
	ovl_loop_kill_suidgid = false;
	if ((buf->flags & FUSE_BUF_IS_FD) || buf->size < sizeof(struct fuse_in_header))
		return true;
	struct fuse_in_header *h = buf->mem;
	const void *arg = h + 1;
	size_t argsize = buf->size - sizeof(*h);
	ovl_stats_count(h->opcode);
	switch (h->opcode) {
	case FUSE_INIT: {
		const struct fuse_init_in *in = arg;
		if (argsize >= offsetof(struct fuse_init_in, flags) + sizeof(in->flags) &&
		    (in->flags & FUSE_HANDLE_KILLPRIV_V2))
			atomic_store(&init_unique, h->unique);
		return false;
	}
	case FUSE_TMPFILE:
		h->opcode = FUSE_CREATE;
		ovl_loop_tmpfile = true;
		return false;
	case FUSE_OPEN: {
		/* opening for writing copies the data up, unless it truncates */
		const struct fuse_open_in *in = arg;
		ovl_loop_kill_suidgid =
		    argsize >= sizeof(*in) && (in->open_flags & FUSE_OPEN_KILL_SUIDGID);
		return argsize < sizeof(*in) ||
		       ((in->flags & O_ACCMODE) != O_RDONLY && !(in->flags & O_TRUNC));
	}
	case FUSE_SETATTR: {
		const struct fuse_setattr_in *in = arg;
		ovl_loop_kill_suidgid = argsize >= sizeof(*in) && (in->valid & FATTR_KILL_SUIDGID);
		return argsize < sizeof(*in) || (in->valid & FATTR_SIZE);
	}
	case FUSE_READ: {
		const struct fuse_read_in *in = arg;
		return argsize < sizeof(*in) || in->size > (16u << 10);
	}
	case FUSE_WRITE: {
		const struct fuse_write_in *in = arg;
		ovl_loop_kill_suidgid =
		    argsize >= sizeof(*in) && (in->write_flags & FUSE_WRITE_KILL_SUIDGID);
		return true;
	}
	case FUSE_FSYNC:
	case FUSE_FSYNCDIR:
	case FUSE_FALLOCATE:
	case FUSE_COPY_FILE_RANGE:
	case FUSE_SYNCFS:
		return true;
	default:
		return false;
	}
}

/* Gives up the reader's place to a waiting worker, or to a new one. */
static void hand_over(struct loop *l)
{
	pthread_mutex_lock(&l->lock);
	l->reading = false;
	bool spawn = !l->waiting && l->nworkers < l->max;
	if (l->waiting)
		pthread_cond_signal(&l->turn);
	pthread_mutex_unlock(&l->lock);
	int e = spawn ? start_worker(l) : 0;
	if (e < 0 && e != -ECANCELED)
		ovl_log("cannot start another request thread: %s", strerror(-e));
}

/* Takes the reader's place, waiting while another worker holds it.  False when the session has
 * ended. */
static bool take_turn(struct loop *l)
{
	pthread_mutex_lock(&l->lock);
	while (l->reading && !l->closing && !fuse_session_exited(l->se)) {
		l->waiting++;
		pthread_cond_wait(&l->turn, &l->lock);
		l->waiting--;
	}
	bool ok = !l->closing && !fuse_session_exited(l->se);
	if (ok)
		l->reading = true;
	pthread_mutex_unlock(&l->lock);
	return ok;
}

/* The session has ended: every worker waiting for the reader's place leaves. */
static void end(struct loop *l, int error)
{
	pthread_mutex_lock(&l->lock);
	if (error && !l->error)
		l->error = error;
	l->reading = false;
	pthread_cond_broadcast(&l->turn);
	pthread_mutex_unlock(&l->lock);
}

static void *work(void *arg)
{
	struct worker *w = arg;
	struct loop *l = w->loop;
	pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
	while (take_turn(l)) {
		for (;;) {
			pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
			int res = fuse_session_receive_buf(l->se, &w->buf);
			pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
			if (res == -EINTR && !fuse_session_exited(l->se))
				continue;
			if (res <= 0 || fuse_session_exited(l->se)) {
				if (res < 0 && res != -EINTR)
					fuse_session_exit(l->se);
				end(l, res < 0 && res != -EINTR ? res : 0);
				goto out;
			}
			bool slow = translate(&w->buf);
			if (slow)
				hand_over(l);
			fuse_session_process_buf(l->se, &w->buf);
			if (slow)
				break; /* back to waiting for the reader's place */
		}
	}
out:
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
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static ssize_t io_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t io_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	uint64_t want = atomic_load(&init_unique);
	if (want && count >= 2 && iov[0].iov_len >= sizeof(struct fuse_out_header) &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t)) {
		const struct fuse_out_header *oh = iov[0].iov_base;
		if (oh->unique == want && oh->error == 0 &&
		    atomic_compare_exchange_strong(&init_unique, &want, 0)) {
			/* libfuse's own reply, in its memory until this returns */
			((struct fuse_init_out *)iov[1].iov_base)->flags |= FUSE_HANDLE_KILLPRIV_V2;
			atomic_store(killpriv_set, true);
		}
	}
	return writev(fd, iov, count);
}

static ssize_t io_splice_send(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			      unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int ovl_loop_attach(struct fuse_session *se, atomic_bool *killpriv)
{
	static const struct fuse_custom_io io = {
	    .read = io_read, .writev = io_writev, .splice_send = io_splice_send};
	atomic_store(&init_unique, 0);
	killpriv_set = killpriv;
	int r = fuse_session_custom_io(se, &io, fuse_session_fd(se));
	return r < 0 ? r : 0;
}

void ovl_block_exit_signals(sigset_t *old)
{
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &block, old);
}

int ovl_loop_run(struct fuse_session *se, unsigned max)
{
	struct loop l = {.se = se, .max = max ? max : 1};
	ovl_stats_start();
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.turn, NULL);
	sem_init(&l.finished, 0, 0);
	/* workers inherit this mask: the exit signals go to this thread and wake it */
	sigset_t old;
	ovl_block_exit_signals(&old);
	int r = start_worker(&l);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r == 0)
		while (!fuse_session_exited(se))
			sem_wait(&l.finished);
	pthread_mutex_lock(&l.lock);
	struct worker *all = l.workers;
	l.workers = NULL;
	l.closing = true;
	pthread_cond_broadcast(&l.turn);
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
	ovl_stats_finish();
	sem_destroy(&l.finished);
	pthread_cond_destroy(&l.turn);
	pthread_mutex_destroy(&l.lock);
	return r;
}
