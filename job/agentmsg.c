#include "job/agentmsg.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "agent/proto.h"

/* The payload as a JSON object, or NULL. */
static json_t *object(const uint8_t *payload, uint32_t len)
{
	json_t *o;

	if (len > AP_MAX_PAYLOAD)
		return NULL;
	o = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, NULL);
	if (o && !json_is_object(o)) {
		json_decref(o);
		return NULL;
	}
	return o;
}

bool agentmsg_hello(const uint8_t *payload, uint32_t len, struct agent_hello *h)
{
	json_t *o = object(payload, len), *f;
	size_t i;

	memset(h, 0, sizeof(*h));
	if (!o)
		return false;
	json_array_foreach(json_object_get(o, "features"), i, f) {
		if (!json_is_string(f))
			continue;
		h->shell |= !strcmp(json_string_value(f), AP_FEATURE_SHELL);
		h->late_workspace |= !strcmp(json_string_value(f), AP_FEATURE_LATE_WORKSPACE);
		h->oci_image |= !strcmp(json_string_value(f), AP_FEATURE_OCI_IMAGE);
		h->entrypoint |= !strcmp(json_string_value(f), AP_FEATURE_ENTRYPOINT);
	}
	json_decref(o);
	return true;
}

/* o's exit_code into *code when it is an integer within int's range. */
static bool exit_code_of(json_t *o, int *code)
{
	json_t *c = json_object_get(o, "exit_code");

	if (!json_is_integer(c) || json_integer_value(c) < INT_MIN || json_integer_value(c) > INT_MAX)
		return false;
	*code = (int)json_integer_value(c);
	return true;
}

bool agentmsg_step(const uint8_t *payload, uint32_t len, int *exit_code)
{
	json_t *o = object(payload, len);
	bool ok = exit_code_of(o, exit_code);

	json_decref(o);
	return ok;
}

/* Whether s can be a failure reason: 1-47 of a-z and '_'. */
static bool reason_word(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz_");

	return n > 0 && n < AGENTMSG_REASON_MAX && !s[n];
}

bool agentmsg_exit(const uint8_t *payload, uint32_t len, int *exit_code, char reason[AGENTMSG_REASON_MAX])
{
	json_t *o = object(payload, len);
	json_t *why = json_object_get(o, "failure_reason");
	bool ok = exit_code_of(o, exit_code);

	reason[0] = '\0';
	if (ok && json_is_string(why) && *json_string_value(why))
		snprintf(reason, AGENTMSG_REASON_MAX, "%s",
			 reason_word(json_string_value(why)) ? json_string_value(why) : "script_failure");
	json_decref(o);
	return ok;
}
