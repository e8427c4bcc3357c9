/* Run a fuzz target over files, without libFuzzer: each argument is an
 * input file or a folder of them. Built with the normal compiler, so that
 * make check replays every seed and every input that once crashed. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests/fuzz/fuzz.h"

/* Replay builds have no libFuzzer to provide it; a target may. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	return 0;
}

#define REPLAY_MAX (1 << 20)  /* bytes per input, as libFuzzer's -max_len allows */

static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = malloc(REPLAY_MAX), *input;
	size_t n = 0;
	int rc = 1;

	if (!f || !buf) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		goto out;
	}
	n = fread(buf, 1, REPLAY_MAX, f);
	/* Exactly its size, so that a read past the input's end is caught. */
	input = realloc(buf, n ? n : 1);
	if (!input)
		goto out;
	buf = input;
	printf("replay: %s\n", path);
	fflush(stdout);
	LLVMFuzzerTestOneInput(buf, n);
	rc = 0;
out:
	if (f)
		fclose(f);
	free(buf);
	return rc;
}

static int run_path(const char *path, unsigned *count)
{
	struct stat st;
	struct dirent **names;
	int n, i, rc = 0;

	if (stat(path, &st) < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	if (!S_ISDIR(st.st_mode)) {
		(*count)++;
		return run_file(path);
	}
	/* Sorted, so a failure names the same file every time. */
	n = scandir(path, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return 1;
	}
	for (i = 0; i < n; i++) {
		char sub[4096];

		if (names[i]->d_name[0] != '.') {
			snprintf(sub, sizeof(sub), "%s/%s", path, names[i]->d_name);
			rc |= run_path(sub, count);
		}
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	unsigned count = 0;
	int i, rc = 0;

	LLVMFuzzerInitialize(&argc, &argv);
	for (i = 1; i < argc; i++)
		rc |= run_path(argv[i], &count);
	printf("replay: %u inputs\n", count);
	return rc;
}
