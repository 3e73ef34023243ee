/* The sandbox's default seccomp policy, compiled with libseccomp into a classic BPF program
 * when layerfs is built.  Run as `gen-filter OUT.h`; it writes OUT.h holding the program as a
 * C array that exec/seccomp.c loads into the command just before execve.
 *
 * Why at build time: the policy is fixed, and libseccomp takes about a millisecond of CPU to
 * turn it into BPF for three ABIs, which every `layerfs exec` would pay; loading a finished
 * program costs microseconds.  The program is for the build machine's architecture (and its
 * compat ABIs), which is the architecture layerfs is built for.
 *
 * The policy is Docker's and podman's default profile turned around: everything is allowed
 * except the calls in the table below, which fail with EPERM (clone3 with ENOSYS, so that a
 * libc falls back to clone, whose flags a filter can see).  Each group and its reason are
 * listed in docs/security.md, "System calls"; keep the two in step.
 *
 * The 32-bit ABIs are filtered with the same rules: on x86_64 the i386 ABI (int 0x80, a
 * different syscall table and audit arch) and x32 (syscall numbers with bit 30 set) both get
 * the table, resolved by name for each.  A call from any other ABI kills the process. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif

/* Refused outright with EPERM: groups of space-separated names, as docs/security.md lists
 * them.  A name an ABI lacks (vm86 on x86_64, kexec_file_load on i386) is skipped for that ABI
 * by libseccomp. */
static const struct {
	const char *group, *names;
} refused[] = {
    {"namespaces (joining one; creating one is filtered by flags below)", "setns"},
    {"mounts, old and new API",
     "mount umount umount2 pivot_root move_mount open_tree fsopen fsconfig fsmount fspick "
     "mount_setattr"},
    {"kernel keyring", "add_key request_key keyctl"},
    {"BPF programs and performance counters", "bpf perf_event_open"},
    {"replacing or extending the kernel",
     "kexec_load kexec_file_load init_module finit_module delete_module create_module "
     "query_module get_kernel_syms reboot"},
    {"the host's clock",
     "settimeofday stime clock_settime clock_settime64 clock_adjtime clock_adjtime64"},
    {"swap, process accounting, quotas", "swapon swapoff acct quotactl quotactl_fd"},
    {"file handles", "open_by_handle_at name_to_handle_at"},
    {"user-space page faults, io_uring, filesystem-wide notification",
     "userfaultfd io_uring_setup io_uring_enter io_uring_register fanotify_init"},
    {"hardware access and legacy modes", "iopl ioperm vm86 vm86old"},
    {"kernel log, obsolete interfaces",
     "syslog lookup_dcookie nfsservctl _sysctl sysfs uselib ustat vhangup"},
};

/* Namespace flags: clone and unshare with any of them are refused.  CLONE_NEWTIME shares its
 * bit with clone's exit signal, so for clone it is left out (clone cannot create a time
 * namespace; only unshare and clone3 can). */
static const unsigned long ns_flags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
					 CLONE_NEWIPC, CLONE_NEWUSER,	CLONE_NEWPID,
					 CLONE_NEWNET, CLONE_NEWTIME};

/* personality(2): Docker allows only PER_LINUX (0), PER_LINUX32 (8), UNAME26 (0x20000), both
 * (0x20008) and the query 0xffffffff; everything else (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC,
 * MMAP_PAGE_ZERO, ...) weakens the exploit mitigations of the command and its children.
 * libseccomp allows one comparison per argument in a rule, so "none of those five" is built
 * from single masked comparisons, one rule each (rules for one call are ORed):
 *  - take the 30 bits of the low word other than 3 and 17 in a cycle; a value with some but
 *    not all of them set has a bit b set whose successor c in the cycle is clear: one rule
 *    "(x & (b|c)) == b" per pair;
 *  - a value with all 30 set is refused unless bits 3 and 17 are set too (0xffffffff): two
 *    rules "(x & (1|8)) == 1" and "(x & (1|0x20000)) == 1";
 *  - a value with none of the 30 set is one of the four allowed ones.
 * The kernel reads the argument as an unsigned int, so the high word does not matter. */
static int add_personality(scmp_filter_ctx ctx)
{
	int bits[32], n = 0;
	for (int b = 0; b < 32; b++)
		if (b != 3 && b != 17)
			bits[n++] = b;
	int r = 0;
	for (int i = 0; r == 0 && i < n; i++) {
		uint64_t b = UINT64_C(1) << bits[i], c = UINT64_C(1) << bits[(i + 1) % n];
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, b | c, b));
	}
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, 1 | 8, 1));
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(personality), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, 1 | 0x20000, 1));
	return r;
}

/* clone's flags are its first argument on every architecture layerfs builds for except s390,
 * where the stack comes first. */
#if defined(__s390__) || defined(__s390x__)
#define CLONE_FLAGS_ARG 1
#else
#define CLONE_FLAGS_ARG 0
#endif

static int add_namespaces(scmp_filter_ctx ctx)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < sizeof ns_flags / sizeof ns_flags[0]; i++) {
		uint64_t f = ns_flags[i];
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(unshare), 1,
				     SCMP_A0(SCMP_CMP_MASKED_EQ, f, f));
		if (r == 0 && f != CLONE_NEWTIME)
			r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
					     SCMP_CMP(CLONE_FLAGS_ARG, SCMP_CMP_MASKED_EQ, f, f));
	}
	/* clone3 passes its flags in memory, out of a filter's sight: pretend it does not
	 * exist, as Docker does, and libc uses clone. */
	if (r == 0)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	return r;
}

/* ioctl requests that reach outside the sandbox through the terminal it shares with the
 * caller: TIOCSTI types into the terminal's input, which the caller's shell reads and runs
 * (CVE-2017-5226); TIOCLINUX pastes a virtual console's selection into it the same way
 * (CVE-2023-1523).  The kernel reads the request as an unsigned int, so only the low 32 bits
 * are compared: a request with high bits set is the same request. */
static const unsigned long tty_requests[] = {TIOCSTI, TIOCLINUX};

static int add_tty_ioctls(scmp_filter_ctx ctx)
{
	int r = 0;
	for (size_t i = 0; r == 0 && i < sizeof tty_requests / sizeof tty_requests[0]; i++)
		r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
				     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffUL, tty_requests[i]));
	return r;
}

/* The compat ABIs the native one carries; each gets the same rules. */
static int add_arches(scmp_filter_ctx ctx)
{
	uint32_t native = seccomp_arch_native();
	uint32_t extra[2] = {0, 0};
	if (native == SCMP_ARCH_X86_64) {
		extra[0] = SCMP_ARCH_X86;
		extra[1] = SCMP_ARCH_X32;
	} else if (native == SCMP_ARCH_AARCH64) {
		extra[0] = SCMP_ARCH_ARM;
	}
	for (size_t i = 0; i < 2; i++) {
		if (!extra[i])
			continue;
		int r = seccomp_arch_add(ctx, extra[i]);
		if (r < 0 && r != -EEXIST)
			return r;
	}
	return 0;
}

/* Adds an EPERM rule for each of NAMES (space-separated); *RET_WHAT names a failing one. */
static int add_group(scmp_filter_ctx ctx, const char *names, const char **ret_what)
{
	static char name[64];
	for (const char *p = names; *p;) {
		size_t n = strcspn(p, " ");
		if (n >= sizeof name)
			return -ENAMETOOLONG;
		memcpy(name, p, n);
		name[n] = '\0';
		p += n + (p[n] == ' ');
		*ret_what = name;
		int nr = seccomp_syscall_resolve_name(name);
		if (nr == __NR_SCMP_ERROR)
			return -ENOENT; /* a libseccomp older than the table */
		int r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), nr, 0);
		if (r < 0)
			return r;
	}
	return 0;
}

static scmp_filter_ctx build(const char **ret_what)
{
	scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
	if (!ctx) {
		*ret_what = "seccomp_init";
		return NULL;
	}
	int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	/* a binary tree of syscall numbers: few comparisons per call whatever the table size */
	if (r == 0)
		r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
	if (r < 0)
		*ret_what = "filter attributes";
	if (r == 0 && (r = add_arches(ctx)) < 0)
		*ret_what = "compat ABIs";
	for (size_t i = 0; r == 0 && i < sizeof refused / sizeof refused[0]; i++)
		r = add_group(ctx, refused[i].names, ret_what);
	if (r == 0 && (r = add_namespaces(ctx)) < 0)
		*ret_what = "namespace flags";
	if (r == 0 && (r = add_personality(ctx)) < 0)
		*ret_what = "personality";
	if (r == 0 && (r = add_tty_ioctls(ctx)) < 0)
		*ret_what = "terminal ioctls";
	if (r < 0) {
		errno = -r;
		seccomp_release(ctx);
		return NULL;
	}
	return ctx;
}

/* Writes the BPF program of CTX to OUT as a C array. */
static int write_header(scmp_filter_ctx ctx, FILE *out)
{
	FILE *bin = tmpfile();
	if (!bin)
		return -errno;
	int r = seccomp_export_bpf(ctx, fileno(bin));
	if (r < 0) {
		fclose(bin);
		return r;
	}
	rewind(bin);
	const struct scmp_version *v = seccomp_version();
	fprintf(
	    out,
	    "/* Generated by exec/seccomp/gen-filter.c with libseccomp %u.%u.%u: the sandbox's\n"
	    " * default seccomp filter as a BPF program for this machine's ABIs.  Do not edit. */\n"
	    "\n"
	    "/*\n",
	    v->major, v->minor, v->micro);
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
		fprintf(out, " * EPERM, %s: %s\n", refused[i].group, refused[i].names);
	fprintf(out, " * EPERM: unshare and clone with namespace flags, personality but for 0, 8,\n"
		     " * 0x20000, 0x20008, 0xffffffff; ioctl TIOCSTI and TIOCLINUX.  ENOSYS:\n"
		     " * clone3.\n"
		     " */\n"
		     "static const struct sock_filter seccomp_program[] = {\n");
	/* struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, in host byte order */
	unsigned char ins[8];
	size_t n = 0;
	while (fread(ins, 1, sizeof ins, bin) == sizeof ins) {
		uint16_t code;
		uint32_t k;
		memcpy(&code, ins, 2);
		memcpy(&k, ins + 4, 4);
		fprintf(out, "\t{0x%04x, %u, %u, 0x%08x},\n", code, ins[2], ins[3], k);
		n++;
	}
	fclose(bin);
	fprintf(out, "};\n");
	return n > 0 ? 0 : -EIO;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: gen-filter OUT.h\n");
		return 2;
	}
	const char *what = "";
	scmp_filter_ctx ctx = build(&what);
	if (!ctx) {
		fprintf(stderr, "gen-filter: %s: %s\n", what, strerror(errno));
		return 1;
	}
	/* written next to OUT and renamed, so that an interrupted build leaves no half file */
	size_t len = strlen(argv[1]);
	char *tmp = malloc(len + 5);
	if (!tmp)
		return 1;
	memcpy(tmp, argv[1], len);
	memcpy(tmp + len, ".tmp", 5);
	FILE *out = fopen(tmp, "w");
	int r = out ? write_header(ctx, out) : -errno;
	if (out && fclose(out) != 0 && r == 0)
		r = -errno;
	if (r == 0 && rename(tmp, argv[1]) < 0)
		r = -errno;
	if (r < 0) {
		fprintf(stderr, "gen-filter: writing '%s': %s\n", argv[1], strerror(-r));
		unlink(tmp);
	}
	free(tmp);
	seccomp_release(ctx);
	return r < 0 ? 1 : 0;
}
