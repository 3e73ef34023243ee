/* layerfs: command dispatch, global options (--root, --json), exit codes. */
#include <stdio.h>
#include <string.h>

#include "layerfs/version.h"

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("layerfs %s\n", LAYERFS_VERSION);
		return 0;
	}
	fprintf(stderr, "usage: layerfs [--root DIR] [--json] COMMAND ...\n");
	return 2;
}
