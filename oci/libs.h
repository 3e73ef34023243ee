/* libarchive and libcurl, loaded when an OCI operation first needs them.  Linked in, the two
 * and what they pull in (xml2 and ICU, krb5, ldap, gnutls, ... 40 libraries) cost every
 * layerfs process some 12 ms of dynamic linking before main, exec and mount included; opened
 * with dlopen they cost only the commands that use them.  oci/ calls them by their own names:
 * below, each name stands for the pointer libs.c looked up. */
#pragma once

#define CURL_DISABLE_TYPECHECK /* curl_easy_setopt and friends stay plain calls */
#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>

#include "layerfs/oci.h"

#define OCI_ARCHIVE_FUNCS(X) \
	X(archive_entry_atime) \
	X(archive_entry_atime_is_set) \
	X(archive_entry_atime_nsec) \
	X(archive_entry_filetype) \
	X(archive_entry_free) \
	X(archive_entry_gid) \
	X(archive_entry_hardlink) \
	X(archive_entry_mtime) \
	X(archive_entry_mtime_nsec) \
	X(archive_entry_new) \
	X(archive_entry_pathname) \
	X(archive_entry_perm) \
	X(archive_entry_rdevmajor) \
	X(archive_entry_rdevminor) \
	X(archive_entry_set_filetype) \
	X(archive_entry_set_gid) \
	X(archive_entry_set_hardlink) \
	X(archive_entry_set_mode) \
	X(archive_entry_set_mtime) \
	X(archive_entry_set_pathname) \
	X(archive_entry_set_rdev) \
	X(archive_entry_set_size) \
	X(archive_entry_set_symlink) \
	X(archive_entry_set_uid) \
	X(archive_entry_size) \
	X(archive_entry_size_is_set) \
	X(archive_entry_symlink) \
	X(archive_entry_uid) \
	X(archive_entry_xattr_add_entry) \
	X(archive_entry_xattr_next) \
	X(archive_entry_xattr_reset) \
	X(archive_error_string) \
	X(archive_file_count) \
	X(archive_read_data) \
	X(archive_read_data_block) \
	X(archive_read_free) \
	X(archive_read_new) \
	X(archive_read_next_header) \
	X(archive_read_open) \
	X(archive_read_support_filter_gzip) \
	X(archive_read_support_filter_none) \
	X(archive_read_support_filter_zstd) \
	X(archive_read_support_format_gnutar) \
	X(archive_read_support_format_raw) \
	X(archive_read_support_format_tar) \
	X(archive_set_error) \
	X(archive_write_add_filter_gzip) \
	X(archive_write_add_filter_zstd) \
	X(archive_write_close) \
	X(archive_write_data) \
	X(archive_write_free) \
	X(archive_write_header) \
	X(archive_write_new) \
	X(archive_write_open2) \
	X(archive_write_open_filename) \
	X(archive_write_set_bytes_per_block) \
	X(archive_write_set_format_pax) \
	X(archive_write_set_format_pax_restricted) \
	X(archive_write_set_format_raw) \
	X(archive_write_set_options)

#define OCI_CURL_FUNCS(X) \
	X(curl_easy_cleanup) \
	X(curl_easy_escape) \
	X(curl_easy_getinfo) \
	X(curl_easy_init) \
	X(curl_easy_perform) \
	X(curl_easy_reset) \
	X(curl_easy_setopt) \
	X(curl_easy_strerror) \
	X(curl_free) \
	X(curl_slist_append) \
	X(curl_slist_free_all)

#define OCI_LIB_POINTER(f) __typeof__(&f) f;
struct oci_libs {
	OCI_ARCHIVE_FUNCS(OCI_LIB_POINTER)
	OCI_CURL_FUNCS(OCI_LIB_POINTER)
};
extern struct oci_libs oci_libs;

/* Opens both libraries, once per process.  0, or -ENOSYS with ERR (may be NULL) naming the
 * library and dlopen's reason. */
int oci_libs_load(lyr_oci_error *err);
/* oci_libs_load for libcurl alone: a registry request that imports nothing (a cache hit whose
 * layers the store has) need not pay for libarchive and the 15 libraries it pulls in. */
int oci_libs_load_curl(lyr_oci_error *err);
/* The start of every public OCI operation: ERR (may be NULL) cleared, then oci_libs_load. */
int oci_begin(lyr_oci_error *err);
/* oci_begin for an operation that talks to a registry and loads libarchive (oci_libs_load)
 * only once it reads or writes a tar. */
int oci_begin_net(lyr_oci_error *err);

#ifndef OCI_LIBS_SELF
/* curl.h makes these two macros that only count their arguments */
#undef curl_easy_getinfo
#undef curl_easy_setopt
#define archive_entry_atime (oci_libs.archive_entry_atime)
#define archive_entry_atime_is_set (oci_libs.archive_entry_atime_is_set)
#define archive_entry_atime_nsec (oci_libs.archive_entry_atime_nsec)
#define archive_entry_filetype (oci_libs.archive_entry_filetype)
#define archive_entry_free (oci_libs.archive_entry_free)
#define archive_entry_gid (oci_libs.archive_entry_gid)
#define archive_entry_hardlink (oci_libs.archive_entry_hardlink)
#define archive_entry_mtime (oci_libs.archive_entry_mtime)
#define archive_entry_mtime_nsec (oci_libs.archive_entry_mtime_nsec)
#define archive_entry_new (oci_libs.archive_entry_new)
#define archive_entry_pathname (oci_libs.archive_entry_pathname)
#define archive_entry_perm (oci_libs.archive_entry_perm)
#define archive_entry_rdevmajor (oci_libs.archive_entry_rdevmajor)
#define archive_entry_rdevminor (oci_libs.archive_entry_rdevminor)
#define archive_entry_set_filetype (oci_libs.archive_entry_set_filetype)
#define archive_entry_set_gid (oci_libs.archive_entry_set_gid)
#define archive_entry_set_hardlink (oci_libs.archive_entry_set_hardlink)
#define archive_entry_set_mode (oci_libs.archive_entry_set_mode)
#define archive_entry_set_mtime (oci_libs.archive_entry_set_mtime)
#define archive_entry_set_pathname (oci_libs.archive_entry_set_pathname)
#define archive_entry_set_rdev (oci_libs.archive_entry_set_rdev)
#define archive_entry_set_size (oci_libs.archive_entry_set_size)
#define archive_entry_set_symlink (oci_libs.archive_entry_set_symlink)
#define archive_entry_set_uid (oci_libs.archive_entry_set_uid)
#define archive_entry_size (oci_libs.archive_entry_size)
#define archive_entry_size_is_set (oci_libs.archive_entry_size_is_set)
#define archive_entry_symlink (oci_libs.archive_entry_symlink)
#define archive_entry_uid (oci_libs.archive_entry_uid)
#define archive_entry_xattr_add_entry (oci_libs.archive_entry_xattr_add_entry)
#define archive_entry_xattr_next (oci_libs.archive_entry_xattr_next)
#define archive_entry_xattr_reset (oci_libs.archive_entry_xattr_reset)
#define archive_error_string (oci_libs.archive_error_string)
#define archive_file_count (oci_libs.archive_file_count)
#define archive_read_data (oci_libs.archive_read_data)
#define archive_read_data_block (oci_libs.archive_read_data_block)
#define archive_read_free (oci_libs.archive_read_free)
#define archive_read_new (oci_libs.archive_read_new)
#define archive_read_next_header (oci_libs.archive_read_next_header)
#define archive_read_open (oci_libs.archive_read_open)
#define archive_read_support_filter_gzip (oci_libs.archive_read_support_filter_gzip)
#define archive_read_support_filter_none (oci_libs.archive_read_support_filter_none)
#define archive_read_support_filter_zstd (oci_libs.archive_read_support_filter_zstd)
#define archive_read_support_format_gnutar (oci_libs.archive_read_support_format_gnutar)
#define archive_read_support_format_raw (oci_libs.archive_read_support_format_raw)
#define archive_read_support_format_tar (oci_libs.archive_read_support_format_tar)
#define archive_set_error (oci_libs.archive_set_error)
#define archive_write_add_filter_gzip (oci_libs.archive_write_add_filter_gzip)
#define archive_write_add_filter_zstd (oci_libs.archive_write_add_filter_zstd)
#define archive_write_close (oci_libs.archive_write_close)
#define archive_write_data (oci_libs.archive_write_data)
#define archive_write_free (oci_libs.archive_write_free)
#define archive_write_header (oci_libs.archive_write_header)
#define archive_write_new (oci_libs.archive_write_new)
#define archive_write_open2 (oci_libs.archive_write_open2)
#define archive_write_open_filename (oci_libs.archive_write_open_filename)
#define archive_write_set_bytes_per_block (oci_libs.archive_write_set_bytes_per_block)
#define archive_write_set_format_pax (oci_libs.archive_write_set_format_pax)
#define archive_write_set_format_pax_restricted (oci_libs.archive_write_set_format_pax_restricted)
#define archive_write_set_format_raw (oci_libs.archive_write_set_format_raw)
#define archive_write_set_options (oci_libs.archive_write_set_options)
#define curl_easy_cleanup (oci_libs.curl_easy_cleanup)
#define curl_easy_escape (oci_libs.curl_easy_escape)
#define curl_easy_getinfo (oci_libs.curl_easy_getinfo)
#define curl_easy_init (oci_libs.curl_easy_init)
#define curl_easy_perform (oci_libs.curl_easy_perform)
#define curl_easy_reset (oci_libs.curl_easy_reset)
#define curl_easy_setopt (oci_libs.curl_easy_setopt)
#define curl_easy_strerror (oci_libs.curl_easy_strerror)
#define curl_free (oci_libs.curl_free)
#define curl_slist_append (oci_libs.curl_slist_append)
#define curl_slist_free_all (oci_libs.curl_slist_free_all)
#endif
