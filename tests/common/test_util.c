#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>

#include "layerfs/common.h"
#include "testutil.h"

Test(common_util, hex_encodes_lower_case)
{
	const uint8_t bytes[] = {0x00, 0x9f, 0xa0, 0xff};
	char out[9];
	lyr_hex(bytes, sizeof bytes, out);
	cr_assert_str_eq(out, "009fa0ff");
}

Test(common_util, mkdir_p_creates_every_component_and_accepts_existing)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	_cleanup_free_ char *deep = tu_path(dir, "a/b/c");
	cr_assert_eq(lyr_mkdir_p(deep, 0755), 0);
	cr_assert_eq(lyr_mkdir_p(deep, 0755), 0);
	struct stat st;
	cr_assert_eq(stat(deep, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));
	tu_rmtree(dir);
}

Test(common_util, mkdir_p_reports_a_file_in_the_way)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "f", "x");
	_cleanup_free_ char *deep = tu_path(dir, "f/sub");
	cr_assert_eq(lyr_mkdir_p(deep, 0755), -ENOTDIR);
	tu_rmtree(dir);
}

Test(common_util, read_file_returns_exact_bytes)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "f", "hello\nworld");
	_cleanup_free_ char *p = tu_path(dir, "f");
	_cleanup_free_ char *buf = NULL;
	size_t len;
	cr_assert_eq(lyr_read_file(p, &buf, &len), 0);
	cr_assert_eq(len, 11);
	cr_assert_str_eq(buf, "hello\nworld");
	_cleanup_free_ char *missing = tu_path(dir, "nope");
	cr_assert_eq(lyr_read_file(missing, &buf, &len), -ENOENT);
	tu_rmtree(dir);
}

Test(common_util, read_file_max_stops_one_byte_past_the_limit)
{
	_cleanup_free_ char *dir = tu_mkdtemp();
	tu_write(dir, "f", "0123456789");
	_cleanup_free_ char *p = tu_path(dir, "f");
	_cleanup_free_ char *buf = NULL;
	size_t len = 0;
	cr_assert_eq(lyr_read_file_max(p, 10, &buf, &len), 0);
	cr_assert_eq(len, 10);
	cr_assert_str_eq(buf, "0123456789");
	char *none = NULL;
	cr_assert_eq(lyr_read_file_max(p, 9, &none, &len), -EFBIG);
	cr_assert_null(none);
	/* An endless file ends at the limit, not at memory's end. */
	cr_assert_eq(lyr_read_file_max("/dev/zero", 1 << 20, &none, &len), -EFBIG);
	cr_assert_null(none);
	tu_rmtree(dir);
}

Test(common_util, fault_point_kills_the_process_only_when_named, .signal = SIGKILL)
{
	setenv("LAYERFS_FAULT", "other,commit-after-rename", 1);
	lyr_fault("commit-before-rename");
	lyr_fault("commit-after-rename");
	cr_assert_fail("not reached");
}
