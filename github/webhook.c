#include "github/webhook.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "lib/sha256.h"

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

bool gh_webhook_signed(const char *secret, const void *body, size_t len, const char *sig)
{
	uint8_t want[32], got[32];
	int i;

	if (!secret || !*secret || !sig || strncmp(sig, "sha256=", 7) || strlen(sig) != 7 + 64)
		return false;
	for (i = 0; i < 32; i++) {
		int hi = hexval(sig[7 + 2 * i]), lo = hexval(sig[8 + 2 * i]);

		if (hi < 0 || lo < 0)
			return false;
		got[i] = (uint8_t)(hi << 4 | lo);
	}
	sha256_hmac(secret, strlen(secret), body, len, want);
	return CRYPTO_memcmp(want, got, sizeof(want)) == 0;
}

bool gh_delivery_once(struct gh_deliveries *d, const char *id)
{
	size_t i, n = id ? strlen(id) : 0;

	if (n == 0 || n > GH_DELIVERY_MAX || strspn(id, "0123456789abcdefABCDEF-") != n)
		return false;
	for (i = 0; i < d->n; i++)
		if (!strcmp(d->ids[i], id))
			return false;
	memcpy(d->ids[d->next], id, n + 1);
	d->next = (d->next + 1) % GH_DELIVERIES;
	if (d->n < GH_DELIVERIES)
		d->n++;
	return true;
}

void gh_wh_event_free(struct gh_wh_event *ev)
{
	gh_labels_free(&ev->labels);
	memset(ev, 0, sizeof(*ev));
}

enum kiln_rc gh_webhook_parse(const char *body, size_t len, struct gh_wh_event *ev, struct kiln_err *e)
{
	json_t *j = NULL, *job, *id;
	const char *action, *repo;
	struct kiln_err le;
	enum kiln_rc rc = KILN_OK;

	memset(ev, 0, sizeof(*ev));
	if (len > GH_WEBHOOK_MAX)
		return kiln_fail(e, KILN_E_LIMIT, "webhook: body over %u bytes", GH_WEBHOOK_MAX);
	if (!(j = json_loadb(body, len, 0, NULL)) || !json_is_object(j)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "webhook: the body is not a JSON object");
		goto out;
	}
	action = json_string_value(json_object_get(j, "action"));
	if (!action || !*action || strlen(action) >= sizeof(ev->action)) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "webhook: no usable action");
		goto out;
	}
	job = json_object_get(j, "workflow_job");
	id = json_object_get(job, "id");
	if (!json_is_object(job) || !json_is_integer(id) || json_integer_value(id) <= 0) {
		rc = kiln_fail(e, KILN_E_SYNTAX, "webhook: no workflow_job.id");
		goto out;
	}
	snprintf(ev->action, sizeof(ev->action), "%s", action);
	ev->job_id = json_integer_value(id);
	ev->run_id = json_integer_value(json_object_get(job, "run_id"));
	repo = json_string_value(json_object_get(json_object_get(j, "repository"), "full_name"));
	if (repo && strlen(repo) < sizeof(ev->repo))
		snprintf(ev->repo, sizeof(ev->repo), "%s", repo);
	ev->installation = json_integer_value(json_object_get(json_object_get(j, "installation"), "id"));
	if ((rc = gh_labels_from_json(&ev->labels, json_object_get(job, "labels"), "webhook: workflow_job", &le)))
		rc = kiln_fail(e, rc, "%s", le.msg);
out:
	if (rc)
		gh_wh_event_free(ev);
	json_decref(j);
	return rc;
}

enum gh_wh_verdict gh_webhook_accept(const char *secret, struct gh_deliveries *seen, const char *event,
				     const char *delivery, const char *signature, const char *body, size_t len,
				     struct gh_wh_event *ev, struct kiln_err *e)
{
	memset(ev, 0, sizeof(*ev));
	if (len > GH_WEBHOOK_MAX) {
		kiln_fail(e, KILN_E_LIMIT, "webhook: body over %u bytes", GH_WEBHOOK_MAX);
		return GH_WH_REFUSED;
	}
	if (!signature || !*signature) {
		kiln_fail(e, KILN_E_INVALID, "webhook: no X-Hub-Signature-256");
		return GH_WH_REFUSED;
	}
	if (!gh_webhook_signed(secret, body, len, signature)) {
		kiln_fail(e, KILN_E_INVALID, "webhook: X-Hub-Signature-256 does not match the body");
		return GH_WH_REFUSED;
	}
	if (!gh_delivery_once(seen, delivery)) {
		kiln_fail(e, KILN_E_INVALID, "webhook: delivery '%.70s' is missing, malformed or a replay",
			  delivery ? delivery : "");
		return GH_WH_REFUSED;
	}
	if (!event || strcmp(event, "workflow_job"))
		return GH_WH_IGNORED;
	return gh_webhook_parse(body, len, ev, e) ? GH_WH_REFUSED : GH_WH_JOB;
}
