/* The GitHub API's JSON as kiln reads it (github/jit.c, demand.c,
 * client.c): the first input byte picks a generate-jitconfig reply, a
 * run's jobs, a list of runs, one job, or a runner entry's url. Whatever
 * the bytes: a one-line error (never quoting a JIT blob) or a result
 * within its ceilings. */
#include <string.h>

#include "github/client.h"
#include "github/demand.h"
#include "github/jit.h"
#include "tests/fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kiln_err e = { 0 };
	const char *body = (const char *)data + 1;
	size_t len = size ? size - 1 : 0, n = 0, i;
	struct gh_labels served = { 0 };
	struct gh_demand d = { 0 };
	struct gh_scope scope;
	struct gh_jit jit;
	struct gh_job job;
	long long ids[64];
	json_t *j;
	char api[1024], *s;

	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		if (gh_jit_parse(body, len, &jit, &e) == KILN_OK) {
			FUZZ_CHECK(jit.runner.id > 0 && jit.runner.name[0] && gh_jit_blob_valid(jit.encoded, jit.len));
			gh_jit_free(&jit);
		} else {
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n') && jit.encoded == NULL);
		}
		break;
	case 1:
		j = json_loadb(body, len, 0, NULL);
		gh_labels_add(&served, "self-hosted", &e);
		gh_labels_add(&served, "linux", &e);
		if (gh_demand_tally(&d, "o/r", json_is_object(j) ? json_object_get(j, "jobs") : j, &served, &e) ==
		    KILN_OK)
			FUZZ_CHECK(d.matching <= d.queued && d.n_ids == d.matching);
		else
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		gh_demand_free(&d);
		gh_labels_free(&served);
		json_decref(j);
		break;
	case 2:
		j = json_loadb(body, len, 0, NULL);
		if (gh_runs_ids(json_object_get(j, "workflow_runs"), ids, 64, &n, &e) == KILN_OK)
			for (i = 0; i < n; i++) {
				size_t k;

				FUZZ_CHECK(ids[i] > 0);
				for (k = 0; k < i; k++) /* each run once */
					FUZZ_CHECK(ids[k] != ids[i]);
			}
		else
			FUZZ_CHECK(e.msg[0] && n <= 64);
		json_decref(j);
		break;
	case 3:
		j = json_loadb(body, len, 0, NULL);
		if (gh_job_from_json(j, &job, &e) == KILN_OK)
			FUZZ_CHECK(job.id > 0 && job.status[0]);
		else
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		json_decref(j);
		break;
	default:
		if (!(s = strndup(body, len)))
			return 0;
		if (gh_scope_parse(s, &scope, api, &e) == KILN_OK)
			FUZZ_CHECK(scope.owner[0] && !strchr(scope.owner, '/') && !strchr(scope.repo, '/') &&
				   !strncmp(api, "http", 4));
		else
			FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		free(s);
		break;
	}
	return 0;
}
