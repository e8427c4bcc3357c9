/* GitHub webhooks (github/webhook.c): the first input byte picks the
 * workflow_job parser alone, the whole acceptance (signature made here
 * over the rest, so that the parser behind it is reached, and a delivery
 * id from the input) or the Link header parser. Whatever the bytes: a
 * one-line error or an event within its ceilings. */
#include <stdio.h>
#include <string.h>

#include "github/client.h"
#include "github/webhook.h"
#include "lib/sha256.h"
#include "tests/fuzz/fuzz.h"

static struct gh_deliveries seen;

static void check_event(enum kiln_rc rc, const struct gh_wh_event *ev, const struct kiln_err *e)
{
	if (rc == KILN_OK)
		FUZZ_CHECK(ev->job_id > 0 && ev->action[0] && ev->labels.n <= GH_MAX_LABELS);
	else
		FUZZ_CHECK(e->msg[0] && !strchr(e->msg, '\n') && ev->labels.v == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kiln_err e = { 0 };
	struct gh_wh_event ev;
	const char *body = (const char *)data + 1;
	size_t len = size ? size - 1 : 0;
	char sig[80], hex[65], delivery[16], *s;
	uint8_t mac[32];
	enum gh_wh_verdict v;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		check_event(gh_webhook_parse(body, len, &ev, &e), &ev, &e);
		gh_wh_event_free(&ev);
		break;
	case 1:
		sha256_hmac("secret", 6, body, len, mac);
		sha256_hex(mac, hex);
		snprintf(sig, sizeof(sig), "sha256=%s", hex);
		snprintf(delivery, sizeof(delivery), "%02x", data[0]);
		v = gh_webhook_accept("secret", &seen, "workflow_job", delivery, sig, body, len, &ev, &e);
		if (v == GH_WH_JOB)
			check_event(KILN_OK, &ev, &e);
		else
			FUZZ_CHECK(v == GH_WH_REFUSED && e.msg[0] && !strchr(e.msg, '\n'));
		gh_wh_event_free(&ev);
		/* A flipped bit in the signature never passes. */
		sig[7] = sig[7] == '0' ? '1' : '0';
		FUZZ_CHECK(!gh_webhook_signed("secret", body, len, sig));
		break;
	default: {
		char next[1024];

		if (!(s = strndup(body, len)))
			return 0;
		gh_link_next(s, next, sizeof(next));
		FUZZ_CHECK(strlen(next) < sizeof(next) && (!next[0] || strstr(s, next)));
		free(s);
		break;
	}
	}
	return 0;
}
