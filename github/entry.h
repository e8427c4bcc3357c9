/* A `github:` entry of the configuration made live: its API client, its
 * auth (PAT or App, attached to the client), its served labels and its
 * fleet (github/round.h) with the records' folder. What `kiln github
 * status` and the daemon start from. */
#ifndef KILN_GHENTRY_H
#define KILN_GHENTRY_H

#include <stdbool.h>
#include <stdio.h>

#include "github/auth.h"
#include "github/client.h"
#include "github/demand.h"
#include "github/round.h"
#include "lib/result.h"
#include "runner/config.h"

struct gh_entry {
	const struct kiln_github_config *cfg;
	struct gh_client c;
	struct gh_auth a;
	struct gh_labels labels;
	struct gh_fleet f;      /* f.ops left to the caller */
};

/* Set ent up from g (nothing is asked of GitHub yet); state_dir holds the
 * records. Errors name the entry. On failure ent needs gh_entry_close. */
enum kiln_rc gh_entry_open(struct gh_entry *ent, const struct kiln_github_config *g, const char *state_dir,
			   struct kiln_err *e);

void gh_entry_close(struct gh_entry *ent);

/* `kiln github status` for one entry, to out: the queued jobs it serves,
 * GitHub's PREFIX-* runners (busy, online, offline) and kiln's records
 * (runner, VM, age). KILN_OK when GitHub answered. */
enum kiln_rc gh_entry_status(struct gh_entry *ent, long long now, FILE *out, struct kiln_err *e);

/* `kiln doctor`'s check of the entry's credentials, printed to out in
 * doctor's form ("ok  " or "FAIL" then the detail, "      fix: ..."): the
 * runner list (repository: Administration read and write; organization:
 * Self-hosted runners) and the workflow runs (Actions read). An App's
 * token is fetched by the first request. false on a failure. */
bool gh_entry_doctor(struct gh_entry *ent, FILE *out);

#endif
