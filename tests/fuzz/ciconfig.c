/* The .gitlab-ci.yml loader (lib/yaml.c, ciconfig.c, pipeline.c):
 * the input is the repository's .gitlab-ci.yml, which a merge request
 * controls. It is parsed, its local includes (only itself exists), extends
 * and !reference resolved; then loaded as a pipeline, planned and dumped.
 * Properties: an error of one line or a mapping; the result holds no
 * !reference node; it stays within a budget when walked as a tree, aliases
 * and shared subtrees counted each time they appear (what a consumer of
 * the configuration does); the pipeline stays within its ceilings. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "localci/config.h"
#include "localci/pipeline.h"
#include "tests/fuzz/fuzz.h"

#define WALK_BUDGET (8u * CY_MAX_NODES)

static char repo[64], file[96];
static FILE *devnull;

static const char *lookup(void *arg, const char *name)
{
	(void)arg;
	return !strcmp(name, "CI_COMMIT_BRANCH") ? "main" : NULL;
}

static enum kiln_rc exists(void *arg, const char *pattern, bool *found, struct kiln_err *e)
{
	(void)arg;
	(void)pattern;
	(void)e;
	*found = false;
	return KILN_OK;
}

/* Nodes below n as a tree; stops counting past the budget. */
static size_t walk(const struct cy_node *n, size_t seen)
{
	size_t i;

	if (++seen > WALK_BUDGET)
		return seen;
	FUZZ_CHECK(!n->ref && n->file);
	if (n->kind == CY_SEQ)
		for (i = 0; i < n->n && seen <= WALK_BUDGET; i++)
			seen = walk(n->items[i], seen);
	else if (n->kind == CY_MAP)
		for (i = 0; i < n->n && seen <= WALK_BUDGET; i++) {
			FUZZ_CHECK(n->pairs[i].key);
			seen = walk(n->pairs[i].value, seen);
		}
	return seen;
}

/* The same file as a pipeline: its jobs, a plan of them all, its dump. */
static void pipeline_check(void)
{
	static const char *const predefined[] = { "CI_COMMIT_BRANCH=main", "CI_PIPELINE_SOURCE=push" };
	struct pipeline_opts o = { .repo_dir = repo, .predefined = predefined, .n_predefined = 2 };
	struct pipeline pl;
	struct pipeline_plan plan = { 0 };
	struct kiln_err e = { 0 };

	if (pipeline_load(&o, &pl, &e) != KILN_OK) {
		FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
		pipeline_free(&pl);
		return;
	}
	FUZZ_CHECK(pl.n_jobs <= PIPELINE_MAX_JOBS);
	if (pipeline_plan(&pl, NULL, 0, false, NULL, 0, &plan, &e) == KILN_OK)
		FUZZ_CHECK(plan.n <= pl.n_jobs);
	pipeline_plan_free(&plan);
	pipeline_dump(&pl, devnull);
	pipeline_free(&pl);
}

static void cleanup(void)
{
	unlink(file);
	rmdir(repo);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(repo, sizeof(repo), "%s/kiln-fuzz-ci-XXXXXX", fuzz_tmpdir());
	FUZZ_CHECK(mkdtemp(repo));
	snprintf(file, sizeof(file), "%s/.gitlab-ci.yml", repo);
	atexit(cleanup);
	devnull = fopen("/dev/null", "w");
	FUZZ_CHECK(devnull);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct cy_arena *a = cy_arena_new();
	struct ciconfig_ctx c = {
		.a = a, .repo_dir = repo, .lookup = lookup, .exists = exists,
	};
	struct cy_node *root = NULL;
	struct kiln_err e = { 0 };
	int fd = open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	FUZZ_CHECK(a && fd >= 0 && write(fd, data, size) == (ssize_t)size);
	close(fd);
	if (ciconfig_load(&c, ".gitlab-ci.yml", &root, &e) == KILN_OK) {
		FUZZ_CHECK(root && root->kind == CY_MAP);
		if (walk(root, 0) > WALK_BUDGET) {
			fprintf(stderr, "ciconfig: the configuration expands past %u nodes\n", WALK_BUDGET);
			FUZZ_CHECK(!"bounded expansion");
		}
	} else {
		FUZZ_CHECK(e.msg[0] && !strchr(e.msg, '\n'));
	}
	cy_arena_free(&a);
	pipeline_check();
	return 0;
}
