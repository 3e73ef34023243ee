/* The sandbox's default seccomp filter.  The policy lives in exec/seccomp/gen-filter.c, which
 * libseccomp compiles into a BPF program at build time (seccomp_program.h in the build tree);
 * loading it here is one prctl.  docs/security.md lists what it refuses and why. */
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>

#include "internal.h"
#include "seccomp_program.h"

int lyr_exec_seccomp_load(void)
{
	struct sock_fprog prog = {
	    .len = (unsigned short)LYR_ARRAY_SIZE(seccomp_program),
	    .filter = (struct sock_filter *)seccomp_program,
	};
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0)
		return -errno;
	return 0;
}
