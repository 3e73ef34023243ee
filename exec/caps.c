/* Capabilities of the sandboxed command, through libcap.  This is the one place that turns
 * libcap's -1/errno convention into -errno.  The set is the container default (docker's and
 * BuildKit's): CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP
 * NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE = 0xa80425fb.  The inheritable set is left
 * empty so that file capabilities cannot be gained through it (CVE-2022-24769). */
#include <sys/capability.h>
#include <sys/prctl.h>

#include "internal.h"

/* libcap returns -1 and sets errno on failure. */
static int cap_ret(int r)
{
	return r < 0 ? (errno ? -errno : -EPERM) : 0;
}

static void cap_freep(cap_t *c)
{
	if (*c)
		cap_free(*c);
}

static bool in_default(cap_value_t v)
{
	return v < 64 && (LYR_EXEC_DEFAULT_CAPS >> v) & 1;
}

int lyr_exec_caps_bound(void)
{
	int n = (int)cap_max_bits();
	for (cap_value_t v = 0; v < n; v++) {
		if (in_default(v))
			continue;
		errno = 0;
		int r = cap_ret(cap_drop_bound(v));
		if (r < 0)
			return r;
	}
	return 0;
}

int lyr_exec_caps_apply(uid_t uid)
{
	_cleanup_(cap_freep) cap_t c = cap_init(); /* all three sets empty */
	if (!c)
		return -ENOMEM;
	if (uid == 0) {
		cap_value_t vals[64];
		int n = 0;
		for (cap_value_t v = 0; v < 64; v++)
			if (in_default(v))
				vals[n++] = v;
		errno = 0;
		int r = cap_ret(cap_set_flag(c, CAP_PERMITTED, n, vals, CAP_SET));
		if (r == 0)
			r = cap_ret(cap_set_flag(c, CAP_EFFECTIVE, n, vals, CAP_SET));
		if (r < 0)
			return r;
	}
	errno = 0;
	int r = cap_ret(cap_set_proc(c));
	if (r < 0)
		return r;
	errno = 0;
	return cap_ret(cap_reset_ambient());
}
