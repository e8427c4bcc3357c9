/* The job payload parser (job/payload.c): GitLab's JSON job, or a
 * replayed one. Whatever the bytes, it returns an error or a payload
 * within its ceilings whose every string is there to read. */
#include <string.h>

#include "job/payload.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct job_payload p;
	struct kiln_err e = { 0 };
	size_t i, k, sum = 0;

	memset(&p, 0, sizeof(p));
	if (payload_parse((const char *)data, size, &p, &e) != KILN_OK) {
		/* One line naming the field. */
		FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		payload_free(&p);
		return 0;
	}
	FUZZ_CHECK(p.n_vars <= PAYLOAD_MAX_VARS && p.n_steps <= PAYLOAD_MAX_STEPS + PAYLOAD_MAX_HOOKS);
	for (i = 0; i < p.n_vars; i++) {
		FUZZ_CHECK(p.vars[i].key && p.vars[i].value);
		sum += strlen(p.vars[i].key) + strlen(p.vars[i].value);
		FUZZ_CHECK(payload_var(&p, p.vars[i].key) != NULL);
	}
	for (i = 0; i < p.n_steps; i++) {
		FUZZ_CHECK(p.steps[i].name && p.steps[i].when && p.steps[i].n_script <= PAYLOAD_MAX_LINES);
		for (k = 0; k < p.steps[i].n_script; k++)
			sum += strlen(p.steps[i].script[k]);
	}
	for (i = 0; i < p.n_refspecs; i++)
		sum += strlen(p.refspecs[i]);
	FUZZ_CHECK(sum < (size_t)-1);
	payload_free(&p);
	return 0;
}
