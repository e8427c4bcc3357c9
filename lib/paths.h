/* Where kiln finds its own files: data (image recipes) and helper binaries.
 * Installed locations are compiled in; $KILN_DATA_DIR and $KILN_LIBEXEC_DIR
 * override them so the build tree can run without installing. */
#ifndef KILN_PATHS_H
#define KILN_PATHS_H

#include <stddef.h>

/* Folder holding images/recipes/ (the source tree or $(pkgdatadir)). */
const char *kiln_data_dir(void);
/* Folder holding kiln-agent and kiln-vmm. */
const char *kiln_libexec_dir(void);
/* Join dir and name into buf; returns buf, or NULL when it does not fit. */
char *kiln_path_join(char *buf, size_t size, const char *dir, const char *name);
/* Create dir and its parents with mode 0755; 0 or -1 with errno. */
int kiln_mkdir_p(const char *dir);
/* Remove path and everything below it; 0 or -1 with errno. */
int kiln_rm_rf(const char *path);
/* Write all n bytes to fd, again after EINTR and short writes; 0, or -1
 * with errno (a closed reader: the caller decides whether that matters). */
int kiln_write_all(int fd, const void *buf, size_t n);
/* Whether some open file holds an flock on path (a file or a folder): how
 * kiln marks what a live process owns, across pid namespaces; false when
 * nobody does or path is gone. Does not follow a final symlink. */
int kiln_path_held(const char *path);

#endif
