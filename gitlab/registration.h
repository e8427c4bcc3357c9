/* What `kiln register`, `verify --delete` and `unregister` keep on disk:
 * the runner manager's system_id, and the runners: list of the
 * configuration file.
 *
 * kiln owns its configuration file: these functions rewrite it whole
 * (through a temporary file and a rename, mode 0600 since it holds
 * tokens). Every key and value is kept, comments and formatting are not.
 * The result is parsed as kiln would read it before it replaces the file. */
#ifndef KILN_GLCONFIG_H
#define KILN_GLCONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define GLC_SYSTEM_ID_FILE ".runner_system_id"
#define GLC_SYSTEM_ID_SIZE 16   /* "s_" + 12 + NUL, rounded */

/* Whether s matches ^[sr]_[0-9a-zA-Z]{12}$. */
bool glc_system_id_valid(const char *s);

/* "s_" + the first 12 hex digits of HMAC-SHA256(key machine_id, message
 * "gitlab-runner"), as gitlab-runner derives it. */
void glc_system_id_from_machine_id(const char *machine_id, char out[GLC_SYSTEM_ID_SIZE]);

/* The system_id kept in .runner_system_id beside config_path; made when
 * missing or invalid (from /etc/machine-id, else "r_" + 12 random
 * alphanumerics) and written there (its folder is created). */
enum kiln_rc glc_system_id(const char *config_path, char out[GLC_SYSTEM_ID_SIZE], struct kiln_err *e);

/* A runner to add. NULL fields (and zero times) are left out. */
struct glc_runner {
	const char *name, *url, *token, *tls_ca_file, *executor, *image;
	long long token_obtained_at, token_expires_at;   /* seconds since the epoch */
};

/* Append r to the runners: list of the file at path (made when missing). */
enum kiln_rc glc_config_add(const char *path, const struct glc_runner *r, struct kiln_err *e);

/* Drop the runners whose index i has drop[i] set (n entries, in the
 * file's order, which is the order kiln_config_load gives). */
enum kiln_rc glc_config_remove(const char *path, const bool *drop, size_t n, struct kiln_err *e);

/* Give the runner with url and old_token its new token, token_obtained_at
 * and token_expires_at (0: the key is dropped). KILN_E_NOTFOUND when no
 * runner has them. */
enum kiln_rc glc_config_set_token(const char *path, const char *url, const char *old_token, const char *new_token,
				  long long obtained_at, long long expires_at, struct kiln_err *e);

#endif
