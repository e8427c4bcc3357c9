#include "github/entry.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "github/fleet.h"
#include "github/jit.h"

/* e's message behind "github NAME: " (copied first: kiln_fail writes e). */
static enum kiln_rc prefix(struct kiln_err *e, enum kiln_rc rc, const char *name)
{
	char msg[sizeof(e->msg)];

	if (!strncmp(e->msg, "github ", 7))
		return rc; /* the layer below named it already */
	snprintf(msg, sizeof(msg), "%s", e->msg);
	return kiln_fail(e, rc, "github %s: %s", name, msg);
}

enum kiln_rc gh_entry_open(struct gh_entry *ent, const struct kiln_github_config *g, const char *state_dir,
			   struct kiln_err *e)
{
	char api[1024];
	enum kiln_rc rc;
	size_t i;

	memset(ent, 0, sizeof(*ent));
	ent->cfg = g;
	ent->f.entry = g->name;
	if ((rc = gh_scope_parse(g->url, &ent->f.scope, api, e)))
		goto fail;
	if ((rc = gh_client_init(&ent->c, g->api_url ? g->api_url : api, g->tls_ca_file, e)))
		goto fail;
	if (g->app_id) {
		if ((rc = gh_auth_app(&ent->a, g->app_id, g->private_key_file, g->installation_id, &ent->f.scope, e)))
			goto fail;
		gh_auth_attach(&ent->a, &ent->c);
	} else if ((rc = gh_auth_pat(&ent->a, &ent->c, g->token, e))) {
		goto fail;
	}
	for (i = 0; i < g->n_labels; i++)
		if ((rc = gh_labels_add(&ent->labels, g->labels[i], e)))
			goto fail;
	if ((rc = gh_rec_dir(state_dir, g->name, ent->f.dir, sizeof(ent->f.dir), e)))
		goto fail;
	ent->f.c = &ent->c;
	ent->f.installation = g->app_id != 0;
	ent->f.labels = &ent->labels;
	ent->f.prefix = g->name_prefix;
	ent->f.runner_group_id = g->runner_group_id;
	ent->f.warm_pool = g->warm_pool;
	ent->f.max_runners = g->max_runners;
	ent->f.idle_timeout = g->idle_timeout;
	return KILN_OK;
fail:
	return prefix(e, rc, g->name);
}

void gh_entry_close(struct gh_entry *ent)
{
	gh_labels_free(&ent->labels);
	gh_auth_free(&ent->a);
	gh_client_free(&ent->c);
}

enum kiln_rc gh_entry_status(struct gh_entry *ent, long long now, FILE *out, struct kiln_err *e)
{
	const struct kiln_github_config *g = ent->cfg;
	struct gh_demand d = { 0 };
	struct gh_runner *listed = NULL;
	struct gh_rec *recs = NULL;
	size_t n_listed = 0, n_recs = 0, i, busy = 0, online = 0;
	enum kiln_rc rc;

	fprintf(out, "github %s (%s), labels", g->name, g->url);
	for (i = 0; i < g->n_labels; i++)
		fprintf(out, "%s%s", i ? "," : " ", g->labels[i]);
	fprintf(out, "\n");
	if ((rc = gh_rec_load_all(ent->f.dir, &recs, &n_recs, e)))
		goto out;
	if ((rc = gh_demand_poll(&ent->c, &ent->f.scope, ent->f.installation, &ent->labels, &d, e)))
		goto out;
	fprintf(out, "  queued jobs: %zu served of %zu queued in %zu repositor%s\n", d.matching, d.queued, d.repos,
		d.repos == 1 ? "y" : "ies");
	if ((rc = gh_runners_list(&ent->c, &ent->f.scope, g->name_prefix, &listed, &n_listed, e)))
		goto out;
	for (i = 0; i < n_listed; i++) {
		busy += listed[i].busy;
		online += !strcmp(listed[i].status, "online");
	}
	fprintf(out, "  runners %s-*: %zu (%zu busy, %zu online, %zu offline)\n", g->name_prefix, n_listed, busy,
		online, n_listed - online);
	fprintf(out, "  VMs: %zu recorded in %s\n", n_recs, ent->f.dir);
	for (i = 0; i < n_recs; i++)
		fprintf(out, "    %s id %lld VM %s, %lld s old%s\n", recs[i].name, recs[i].id,
			recs[i].vm[0] ? recs[i].vm : "(not booted)", now - recs[i].created,
			recs[i].job_id ? ", took a job" : "");
out:
	if (rc)
		rc = prefix(e, rc, g->name);
	free(listed);
	free(recs);
	gh_demand_free(&d);
	return rc;
}

bool gh_entry_doctor(struct gh_entry *ent, FILE *out)
{
	const struct kiln_github_config *g = ent->cfg;
	const char *perm = ent->f.scope.repo[0] ? "Administration: read and write" : "Self-hosted runners: read and write";
	struct gh_runner *listed = NULL;
	struct gh_demand d = { 0 };
	struct kiln_err e = { 0 };
	size_t n = 0;
	bool ok = true;

	if (gh_runners_list(&ent->c, &ent->f.scope, g->name_prefix, &listed, &n, &e)) {
		fprintf(out, "FAIL  github %s: listing runners: %s\n", g->name, e.msg);
		fprintf(out, "      fix: give the %s the \"%s\" permission on %s\n", g->app_id ? "App" : "token", perm,
			g->url);
		ok = false;
	} else {
		fprintf(out, "ok    github %s: runners readable (%zu %s-*)\n", g->name, n, g->name_prefix);
	}
	free(listed);
	if (gh_demand_poll(&ent->c, &ent->f.scope, ent->f.installation, &ent->labels, &d, &e)) {
		fprintf(out, "FAIL  github %s: reading workflow runs: %s\n", g->name, e.msg);
		fprintf(out, "      fix: give the %s the \"Actions: read\" permission on %s\n", g->app_id ? "App" : "token",
			g->url);
		ok = false;
	} else {
		fprintf(out, "ok    github %s: workflow runs readable (%zu queued job%s served)\n", g->name, d.matching,
			d.matching == 1 ? "" : "s");
	}
	gh_demand_free(&d);
	return ok;
}
