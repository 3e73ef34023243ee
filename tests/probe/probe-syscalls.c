/* probe-syscalls: run inside a sandbox, tries the system calls the default seccomp filter
 * refuses (and a few it must leave alone) and prints one line per try: its name and "0" for
 * success or the errno's name ("EPERM").  Linked statically, so that tests can copy it into a
 * busybox root.  The arguments are chosen so that, without the filter, most calls end
 * differently (success, EBADF, EFAULT, ...): an EPERM then comes from the filter, not from a
 * missing capability.
 *
 * Each call runs in a child of its own, so that one that succeeds (a new user namespace, a
 * personality) does not change how the next one ends.
 *
 * On x86_64 it also makes calls through the i386 ABI (int 0x80) and the x32 ABI (bit 30 of
 * the syscall number), which a filter for x86_64 alone would not see; "i386_getpid" says
 * whether this kernel runs i386 calls at all ("unavailable" when not).
 *
 * Run without a filter by root, several of these calls would act on the host, so it refuses
 * to run unless it is an early process of a pid namespace; the calls that could act anyway
 * name targets that do not exist. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void report(const char *name, long r)
{
	if (r < 0)
		printf("%s %s\n", name, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
	else
		printf("%s 0\n", name);
	fflush(stdout);
}

/* Reports CALL (a long, -1 with errno on failure) made in a fresh child. */
#define PROBE(name, call)                                                                          \
	do {                                                                                       \
		pid_t pid_ = fork();                                                               \
		if (pid_ == 0) {                                                                   \
			report(name, (call));                                                      \
			_exit(0);                                                                  \
		}                                                                                  \
		if (pid_ > 0)                                                                      \
			waitpid(pid_, NULL, 0);                                                    \
	} while (0)

/* A raw clone with FLAGS; the child exits at once.  Returns 0 or -1 with errno. */
static long clone_flags(unsigned long flags)
{
	long pid = syscall(SYS_clone, flags | SIGCHLD, NULL, NULL, NULL, 0);
	if (pid == 0)
		_exit(0);
	if (pid > 0)
		waitpid((pid_t)pid, NULL, 0);
	return pid < 0 ? -1 : 0;
}

#if defined(__x86_64__)
/* An i386 system call through int 0x80 (arguments truncated to 32 bits); returns the result,
 * or -1 with errno. */
static long int80(long nr, long a, long b)
{
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b)
			 : "memory", "r8", "r9", "r10", "r11");
	if (ret < 0 && ret > -4096) {
		errno = (int)-ret;
		return -1;
	}
	return ret;
}

/* Whether int 0x80 works: a kernel without i386 emulation answers it with a signal. */
static bool have_i386(void)
{
	pid_t pid = fork();
	if (pid == 0)
		_exit(int80(20 /* getpid */, 0, 0) == getpid() ? 0 : 1);
	int st;
	return pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void compat_abis(void)
{
	if (have_i386()) {
		printf("i386_getpid 0\n");
		fflush(stdout);
		PROBE("i386_unshare_user", int80(310 /* unshare */, CLONE_NEWUSER, 0));
		PROBE("i386_keyctl", int80(288 /* keyctl */, 0, -3));
	} else {
		printf("i386_getpid unavailable\n");
	}
	PROBE("x32_unshare_user", syscall(0x40000000 | SYS_unshare, CLONE_NEWUSER));
}
#endif

/* "probe-syscalls tty": the ioctls that act on a terminal from outside the sandbox, on the
 * terminal of standard input (the caller's, with stdin passed through).  TIOCSTI pushes a
 * byte ('#') into the terminal's input, as if typed, where the caller's shell would read it;
 * TIOCLINUX (0x541c) does the like on a virtual console.  The command bits go through the
 * 64-bit argument with a high bit set too: the kernel reads only the low 32.  Whether
 * /dev/tty opens (the sandbox has a controlling terminal) is reported first. */
static void tty_ioctls(void)
{
	int tty = open("/dev/tty", O_RDWR | O_CLOEXEC);
	report("open_tty", tty);
	if (tty >= 0)
		close(tty);
	int fd = 0;
	char c = '#';
	PROBE("tiocsti", ioctl(fd, TIOCSTI, &c));
	PROBE("tiocsti_high_bits", syscall(SYS_ioctl, fd, (1UL << 32) | TIOCSTI, &c));
	char sel[2] = {3 /* TIOCL_SETSEL, with no selection data */, 0};
	PROBE("tioclinux", ioctl(fd, 0x541c /* TIOCLINUX */, sel));
#if defined(__x86_64__)
	/* the same request through the i386 and x32 tables (x32's ioctl is 514) */
	if (have_i386())
		PROBE("i386_tiocsti", int80(54 /* ioctl */, fd, TIOCSTI));
	PROBE("x32_tiocsti", syscall(0x40000000 | 514, fd, TIOCSTI, &c));
#endif
}

int main(int argc, char **argv)
{
	/* ptrace of pid 1 and the rest are meant for a sandbox's pid 1, not a host's */
	if (getpid() > 64) {
		fprintf(stderr, "probe-syscalls: runs only as an early process of a new pid "
				"namespace (a sandbox)\n");
		return 2;
	}
	if (argc > 1 && strcmp(argv[1], "tty") == 0) {
		tty_ioctls();
		return 0;
	}
	PROBE("unshare_user", unshare(CLONE_NEWUSER));
	PROBE("unshare_fs", unshare(CLONE_FS));
	PROBE("clone_newuser", clone_flags(CLONE_NEWUSER));
	PROBE("clone_newns", clone_flags(CLONE_NEWNS));
	PROBE("fork", clone_flags(0));
	PROBE("clone3", syscall(SYS_clone3, NULL, 0));
	PROBE("setns", setns(-1, 0));
	/* KEYCTL_GET_KEYRING_ID of the session keyring (-3); the process keyring is -2 */
	PROBE("keyctl", syscall(SYS_keyctl, 0, -3, 0));
	PROBE("add_key", syscall(SYS_add_key, "user", "probe", "x", 1, -2));
	PROBE("request_key", syscall(SYS_request_key, "user", "probe-absent", NULL, 0));
	PROBE("bpf", syscall(SYS_bpf, 0 /* BPF_MAP_CREATE */, NULL, 0));
	PROBE("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
	PROBE("kexec_load", syscall(SYS_kexec_load, 0, 0, NULL, 0));
	PROBE("init_module", syscall(SYS_init_module, NULL, 0, ""));
	PROBE("open_by_handle_at", syscall(SYS_open_by_handle_at, -1, NULL, 0));
	PROBE("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));
	/* targets that do not exist: ENOENT without the filter, even for root on a host */
	PROBE("mount", mount("none", "/probe-absent", "tmpfs", 0, NULL));
	PROBE("umount2", umount2("/probe-absent", MNT_DETACH));
	PROBE("open_tree", syscall(SYS_open_tree, AT_FDCWD, "/", 0));
	PROBE("fsopen", syscall(SYS_fsopen, "tmpfs", 0));
	PROBE("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, NULL));
	PROBE("userfaultfd", syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */));
	PROBE("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
	PROBE("personality_addr_no_randomize", personality(ADDR_NO_RANDOMIZE));
	PROBE("personality_all_but_query", personality(0xfffffff7));
	PROBE("personality_linux32", personality(PER_LINUX32));
	PROBE("personality_uname26_linux32", personality(UNAME26 | PER_LINUX32));
	PROBE("personality_query", personality(0xffffffff));
	PROBE("ptrace_init", ptrace(PTRACE_ATTACH, 1, NULL, NULL));
#if defined(__x86_64__)
	compat_abis();
#endif
	return 0;
}
