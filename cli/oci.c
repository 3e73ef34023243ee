/* Commands of the OCI world: import --tar (one layer tar, from a file or standard input). */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "layerfs/oci.h"

int cli_import_tar(lyr_cli *cli, const char *file, const char *parent, const char *tag,
		   const char *desc)
{
	char pid[LYR_ID_MAX] = "";
	if (parent && cli_resolve(cli, parent, LYR_OBJ_LAYER, NULL, pid) < 0)
		return EXIT_FAIL;
	bool in = strcmp(file, "-") == 0;
	_cleanup_close_ int fd = in ? dup(STDIN_FILENO) : open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return cli_fail("import --tar '%s': %s", file, strerror(errno));
	_cleanup_free_ char *abs = in ? NULL : realpath(file, NULL);
	_cleanup_free_ char *d = NULL;
	if (!desc && asprintf(&d, "import --tar %s", in ? "-" : abs ? abs : file) < 0)
		return cli_fail("out of memory");
	lyr_store *s = cli_store(cli);
	if (!s)
		return EXIT_FAIL;
	progress_line pl;
	progress_start(&pl, cli, "import");
	lyr_oci_error err;
	char id[LYR_ID_MAX];
	int r =
	    lyr_oci_import_tar(s, fd, pid[0] ? pid : NULL, desc ? desc : d, tag, &pl.p, &err, id);
	progress_done(&pl);
	if (r < 0) {
		if (err.why[0] && err.entry[0])
			return cli_fail("import --tar '%s': entry '%s': %s", file, err.entry,
					err.why);
		if (err.why[0])
			return cli_fail("import --tar '%s': %s", file, err.why);
		const char *why = lyr_store_last_error();
		return cli_fail("import --tar '%s': %s", file, why[0] ? why : cli_strerror(r));
	}
	return cli_print_id(cli, "id", id);
}
