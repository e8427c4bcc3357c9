/* gitlab-runner's TLS variables for the job: CI_SERVER_TLS_CA_FILE (the CA
 * chain the runner trusts for its GitLab), CI_SERVER_TLS_CERT_FILE and
 * CI_SERVER_TLS_KEY_FILE (its client certificate), as file variables, so
 * that git and curl inside the job trust a GitLab with a private CA; and
 * the runner's short token, the other variable only the runner knows. */
#ifndef KILN_GLTLSVARS_H
#define KILN_GLTLSVARS_H

#include <stddef.h>

#include "lib/result.h"

#define GL_TLS_FILE_MAX (1u << 20) /* bytes read from each file */

/* The payload text (len bytes) with those variables put first in its
 * "variables" (the job's own come later and win), read from ca_file,
 * cert_file and key_file (each NULL or "": none), and, when runner_token
 * is given, CI_RUNNER_SHORT_TOKEN (gitlab-runner's ShortenToken of it).
 * *out (malloc'd, NUL terminated, *out_len bytes) is NULL when there is
 * nothing to add. Fails naming a file that cannot be read or a payload
 * that is not JSON. */
enum kiln_rc gl_payload_tls_vars(const char *text, size_t len, const char *ca_file, const char *cert_file,
				 const char *key_file, const char *runner_token, char **out, size_t *out_len,
				 struct kiln_err *e);

#endif
