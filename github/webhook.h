/* workflow_job webhooks: the signature check (X-Hub-Signature-256, the
 * HMAC-SHA256 of the raw body under the webhook secret, compared in
 * constant time), replay refusal (each X-GitHub-Delivery id accepted
 * once, remembered in a bounded ring) and the parse of the event. A
 * webhook only triggers a poll: state always comes from the API. */
#ifndef KILN_GHWEBHOOK_H
#define KILN_GHWEBHOOK_H

#include <stdbool.h>
#include <stddef.h>

#include "github/demand.h"
#include "lib/result.h"

#define GH_WEBHOOK_MAX (1u << 20) /* a body larger than this is refused unread */
#define GH_DELIVERIES 4096        /* delivery ids remembered */
#define GH_DELIVERY_MAX 64        /* bytes of one (a GUID is 36) */

/* Whether sig ("sha256=<64 hex>") is the HMAC of body under secret. */
bool gh_webhook_signed(const char *secret, const void *body, size_t len, const char *sig);

/* Delivery ids seen, oldest forgotten first (about 260 KiB: static or
 * on the heap, not on a stack). */
struct gh_deliveries {
	char ids[GH_DELIVERIES][GH_DELIVERY_MAX + 1];
	size_t next, n;
};

/* Record id; false when it was seen already (a replay) or is empty, too
 * long or not [A-Za-z0-9-]. */
bool gh_delivery_once(struct gh_deliveries *d, const char *id);

struct gh_wh_event {
	char action[16];          /* queued, waiting, in_progress, completed */
	long long job_id;
	long long run_id;
	char repo[2 * GH_NAME_MAX + 2]; /* repository.full_name, "" without */
	long long installation;   /* installation.id, 0 without */
	struct gh_labels labels;
};

/* Parse a workflow_job event's body into ev (labels: gh_wh_event_free).
 * KILN_E_SYNTAX naming the missing or bad field; KILN_E_LIMIT for more
 * than GH_MAX_LABELS labels. */
enum kiln_rc gh_webhook_parse(const char *body, size_t len, struct gh_wh_event *ev, struct kiln_err *e);
void gh_wh_event_free(struct gh_wh_event *ev);

enum gh_wh_verdict {
	GH_WH_JOB,       /* a workflow_job event, parsed into ev: poll now */
	GH_WH_IGNORED,   /* signed, but another event (ping, ...): 2xx, nothing to do */
	GH_WH_REFUSED,   /* bad or missing signature, a replay, a bad body: e says which */
};

/* The whole check of one delivery, in order: size, signature, delivery
 * id (a replay is refused only after the signature holds, so that forged
 * ids cannot fill the ring), event type, body. */
enum gh_wh_verdict gh_webhook_accept(const char *secret, struct gh_deliveries *seen, const char *event,
				     const char *delivery, const char *signature, const char *body, size_t len,
				     struct gh_wh_event *ev, struct kiln_err *e);

#endif
