/* oci_libs: libarchive and libcurl opened with dlopen at first use (see libs.h for why). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define OCI_LIBS_SELF
#include "libs.h"
#include "oci-int.h"

struct oci_libs oci_libs;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static bool loaded;
static char failure[512]; /* why not, when not loaded */

/* Looks up every name of the X-list in HANDLE; false with FAILURE filled when one is missing. */
#define OCI_LIB_LOOKUP(f)                                                                          \
	if (ok && !(oci_libs.f = (__typeof__(&f))dlsym(handle, #f))) {                             \
		snprintf(failure, sizeof failure, "%s: no symbol %s", soname, #f);                 \
		ok = false;                                                                        \
	}

static void *open_lib(const char *soname)
{
	void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		snprintf(failure, sizeof failure, "%s", dlerror());
	return handle;
}

static void load(void)
{
	bool ok = true;
	const char *soname = "libarchive.so.13";
	void *handle = open_lib(soname);
	if (!handle)
		return;
	OCI_ARCHIVE_FUNCS(OCI_LIB_LOOKUP)
	if (!ok)
		return;
	soname = "libcurl.so.4";
	if (!(handle = open_lib(soname)))
		return;
	OCI_CURL_FUNCS(OCI_LIB_LOOKUP)
	loaded = ok;
}

int oci_libs_load(lyr_oci_error *err)
{
	pthread_once(&once, load);
	if (loaded)
		return 0;
	return oci_fail(err, -ENOSYS, "libraries", "cannot load libarchive and libcurl: %s",
			failure);
}

int oci_begin(lyr_oci_error *err)
{
	if (err)
		err->entry[0] = err->why[0] = '\0';
	return oci_libs_load(err);
}
