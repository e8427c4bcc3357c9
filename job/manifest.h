/* An image manifest: what was built, from which inputs, and the hashes of
 * its files. Stored as NAME/manifest.json in the images directory. */
#ifndef KILN_MANIFEST_H
#define KILN_MANIFEST_H

#include <stdint.h>

#include "lib/result.h"

#define MANIFEST_MAX_FILES 16
#define MANIFEST_MAX_INPUTS 256

struct manifest_file {
	char *name;
	uint64_t size;
	char sha256[65];
};

struct manifest {
	char *name;
	char *kind;
	char *built;            /* UTC, ISO 8601 */
	double build_seconds;
	char inputs_sha256[65];
	char **inputs;          /* the recipe's input lines */
	size_t n_inputs;
	struct manifest_file files[MANIFEST_MAX_FILES];
	size_t n_files;
};

/* Read and validate path; each error names the file and the field. */
enum kiln_rc manifest_load(struct manifest *m, const char *path, struct kiln_err *e);
/* Write m to path atomically (temporary file, then rename). */
enum kiln_rc manifest_save(const struct manifest *m, const char *path, struct kiln_err *e);
/* Total size of all files. */
uint64_t manifest_size(const struct manifest *m);
/* The file named name, or NULL. */
const struct manifest_file *manifest_find(const struct manifest *m, const char *name);
void manifest_free(struct manifest *m);

#endif
