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

/* One library: loaded once per process; FAILURE says why not when it is not. */
typedef struct lib {
	pthread_once_t once;
	bool loaded;
	char failure[512];
} lib;

static lib archive_lib = {PTHREAD_ONCE_INIT, false, ""};
static lib curl_lib = {PTHREAD_ONCE_INIT, false, ""};

/* Looks up every name of the X-list in HANDLE; false with L->failure filled when one is
 * missing. */
#define OCI_LIB_LOOKUP(f)                                                                          \
	if (ok && !(oci_libs.f = (__typeof__(&f))dlsym(handle, #f))) {                             \
		snprintf(l->failure, sizeof l->failure, "%s: no symbol %s", soname, #f);           \
		ok = false;                                                                        \
	}

static void *open_lib(lib *l, const char *soname)
{
	void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
	if (!handle)
		snprintf(l->failure, sizeof l->failure, "%s", dlerror());
	return handle;
}

static void load_archive(void)
{
	lib *l = &archive_lib;
	const char *soname = "libarchive.so.13";
	void *handle = open_lib(l, soname);
	bool ok = handle != NULL;
	OCI_ARCHIVE_FUNCS(OCI_LIB_LOOKUP)
	l->loaded = ok;
}

static void load_curl(void)
{
	lib *l = &curl_lib;
	const char *soname = "libcurl.so.4";
	void *handle = open_lib(l, soname);
	bool ok = handle != NULL;
	OCI_CURL_FUNCS(OCI_LIB_LOOKUP)
	l->loaded = ok;
}

static int lib_load(lib *l, void (*load)(void), lyr_oci_error *err)
{
	pthread_once(&l->once, load);
	if (l->loaded)
		return 0;
	return oci_fail(err, -ENOSYS, "libraries", "cannot load libarchive and libcurl: %s",
			l->failure);
}

int oci_libs_load(lyr_oci_error *err)
{
	int r = lib_load(&archive_lib, load_archive, err);
	return r < 0 ? r : lib_load(&curl_lib, load_curl, err);
}

int oci_libs_load_curl(lyr_oci_error *err)
{
	return lib_load(&curl_lib, load_curl, err);
}

static void clear(lyr_oci_error *err)
{
	if (err)
		err->entry[0] = err->why[0] = '\0';
}

int oci_begin(lyr_oci_error *err)
{
	clear(err);
	return oci_libs_load(err);
}

int oci_begin_net(lyr_oci_error *err)
{
	clear(err);
	return oci_libs_load_curl(err);
}
