/* kiln exec's payloads: the facts of a local repository (read with
 * libgit2 from one made with git), GitLab's predefined variables, and the
 * payload of a job of examples/pipelines/matrix, which must parse and turn
 * into the agent's job spec like a payload from GitLab. */
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "job/jobspec.h"
#include "localci/project.h"
#include "job/payload.h"
#include "localci/pipeline.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define GIT \
	"GIT_CONFIG_NOSYSTEM=1 HOME=/nonexistent GIT_AUTHOR_NAME=Ada GIT_AUTHOR_EMAIL=ada@example.invalid " \
	"GIT_COMMITTER_NAME=Ada GIT_COMMITTER_EMAIL=ada@example.invalid git"

/* A repository: two commits on feature/x, origin at
 * git@gitlab.example.com:group/sub/demo.git whose HEAD is develop. */
static void make_repo(char *dir, size_t size)
{
	snprintf(dir, size, "/tmp/kiln-localci-test-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(test_sh("set -e; cd '%s'; exec >/dev/null 2>&1\n"
			    GIT " init -q -b develop\n"
			    "echo one > a.txt; " GIT " add a.txt; " GIT " commit -q -m first\n"
			    GIT " checkout -q -b feature/x\n"
			    "echo two >> a.txt; " GIT " commit -q -am 'Fix the $thing' -m 'Longer text.'\n"
			    GIT " remote add origin git@gitlab.example.com:group/sub/demo.git\n"
			    GIT " update-ref refs/remotes/origin/develop HEAD~1\n"
			    GIT " symbolic-ref refs/remotes/origin/HEAD refs/remotes/origin/develop\n"
			    "echo dirty >> a.txt; echo new > b.txt\n",
			    dir),
			 0);
}

static void sha_of(const char *dir, const char *rev, char *buf, size_t size)
{
	char cmd[PATH_MAX + 64];
	FILE *p;

	snprintf(cmd, sizeof(cmd), GIT " -C '%s' rev-parse %s", dir, rev);
	p = popen(cmd, "r");
	ck_assert_ptr_nonnull(p);
	ck_assert_ptr_nonnull(fgets(buf, (int)size, p));
	buf[strcspn(buf, "\n")] = '\0';
	pclose(p);
}

START_TEST(repo_facts_from_libgit2)
{
	struct localci_repo r;
	struct kiln_err e = { 0 };
	char dir[PATH_MAX], sub[PATH_MAX + 8], sha[64];

	make_repo(dir, sizeof(dir));
	snprintf(sub, sizeof(sub), "%s/.git", dir);
	/* From a folder inside it, as from the top. */
	ck_assert_msg(localci_repo_open(sub, &r, &e) == KILN_OK, "%s", e.msg);
	sha_of(dir, "HEAD", sha, sizeof(sha));
	ck_assert_str_eq(r.dir, dir);
	ck_assert_str_eq(r.sha, sha);
	ck_assert_int_eq(strncmp(r.short_sha, sha, 8), 0);
	ck_assert_uint_eq(strlen(r.short_sha), 8);
	ck_assert_str_eq(r.branch, "feature/x");
	ck_assert_str_eq(r.ref_name, "feature/x");
	ck_assert_str_eq(r.tag, "");
	ck_assert_str_eq(r.default_branch, "develop");
	ck_assert_str_eq(r.project_path, "group/sub/demo");
	ck_assert_str_eq(r.project_name, "demo");
	ck_assert_str_eq(r.namespace_, "group/sub");
	ck_assert_str_eq(r.message, "Fix the $thing\n\nLonger text.\n");
	ck_assert_str_eq(r.author, "Ada <ada@example.invalid>");
	ck_assert_uint_eq(r.changes, 2);
	localci_repo_free(&r);

	/* Detached at a tag; no origin: the folder's name. */
	ck_assert_int_eq(test_sh("cd '%s' && " GIT " tag v1 HEAD~1 && " GIT " checkout -q -f --detach v1 && "
			    GIT " -C '%s' remote remove origin", dir, dir), 0);
	ck_assert_msg(localci_repo_open(dir, &r, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(r.branch, "");
	ck_assert_str_eq(r.tag, "v1");
	ck_assert_str_eq(r.ref_name, "v1");
	ck_assert_str_eq(r.project_path, strrchr(dir, '/') + 1);
	ck_assert_str_eq(r.namespace_, "");
	localci_repo_free(&r);

	ck_assert_int_eq(localci_repo_open("/", &r, &e), KILN_E_NOTFOUND);
	ck_assert_ptr_nonnull(strstr(e.msg, "not in a git repository"));
	test_sh("rm -rf '%s'", dir);
}
END_TEST

START_TEST(slugs)
{
	char b[80];

	localci_slug("Feature/JIRA-12_x", b, sizeof(b));
	ck_assert_str_eq(b, "feature-jira-12-x");
	localci_slug("--a..b--", b, sizeof(b));
	ck_assert_str_eq(b, "a-b");
	localci_slug("0123456789012345678901234567890123456789012345678901234567890123456789", b, sizeof(b));
	ck_assert_uint_eq(strlen(b), 63);
}
END_TEST

/* A repository's facts, made up. */
static void fake_repo(struct localci_repo *r)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->dir, sizeof(r->dir), "/src/demo");
	snprintf(r->sha, sizeof(r->sha), "0123456789abcdef0123456789abcdef01234567");
	snprintf(r->short_sha, sizeof(r->short_sha), "01234567");
	snprintf(r->branch, sizeof(r->branch), "Feature/X");
	snprintf(r->ref_name, sizeof(r->ref_name), "Feature/X");
	snprintf(r->default_branch, sizeof(r->default_branch), "main");
	snprintf(r->project_path, sizeof(r->project_path), "group/demo");
	snprintf(r->project_name, sizeof(r->project_name), "demo");
	snprintf(r->namespace_, sizeof(r->namespace_), "group");
	snprintf(r->author, sizeof(r->author), "Ada <ada@example.invalid>");
	snprintf(r->timestamp, sizeof(r->timestamp), "2026-01-01T00:00:00+00:00");
	snprintf(r->user_name, sizeof(r->user_name), "Ada");
	snprintf(r->user_email, sizeof(r->user_email), "ada@example.invalid");
	r->message = strdup("Fix the $thing\n\nLonger text.\n");
}

static void load_matrix(const struct localci_repo *r, struct localci_strv *pre, struct pipeline *pl)
{
	static char dir[PATH_MAX];
	struct pipeline_opts o = { 0 };
	struct kiln_err e = { 0 };
	const char *top = getenv("top_srcdir");

	snprintf(dir, sizeof(dir), "%s/examples/pipelines/matrix", top ? top : ".");
	ck_assert_int_eq(localci_predefined(r, 7, 7, "2026-01-02T03:04:05Z", pre, &e), KILN_OK);
	o.repo_dir = dir;
	o.predefined = (const char *const *)pre->v;
	o.n_predefined = pre->n;
	o.variables = (const char *const[]){ "EXTRA=from the command line", "PRICE=cost $$5" };
	o.n_variables = 2;
	ck_assert_msg(pipeline_load(&o, pl, &e) == KILN_OK, "%s", e.msg);
}

/* The env pair of key in the job spec, or NULL (the last one wins). */
static const char *spec_env(json_t *spec, const char *key)
{
	json_t *pair;
	const char *v = NULL;
	size_t i;

	json_array_foreach(json_object_get(spec, "env"), i, pair)
		if (!strcmp(json_string_value(json_array_get(pair, 0)), key))
			v = json_string_value(json_array_get(pair, 1));
	return v;
}

START_TEST(payload_of_a_matrix_job)
{
	struct localci_repo r;
	struct localci_strv pre = { 0 };
	struct pipeline pl;
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *json = NULL, *spec_text = NULL;
	json_t *spec;
	ssize_t k;
	static const char *const want[][2] = {
		{ "CI", "true" },
		{ "GITLAB_CI", "true" },
		{ "CI_JOB_ID", "70002" },
		{ "CI_JOB_NAME", "unit: [slow]" },
		{ "CI_JOB_NAME_SLUG", "unit-slow" },
		{ "CI_JOB_STAGE", "test" },
		{ "CI_PIPELINE_ID", "7" },
		{ "CI_PIPELINE_IID", "7" },
		{ "CI_PIPELINE_SOURCE", "push" },
		{ "CI_COMMIT_SHA", "0123456789abcdef0123456789abcdef01234567" },
		{ "CI_COMMIT_SHORT_SHA", "01234567" },
		{ "CI_COMMIT_REF_NAME", "Feature/X" },
		{ "CI_COMMIT_REF_SLUG", "feature-x" },
		{ "CI_COMMIT_BRANCH", "Feature/X" },
		{ "CI_COMMIT_MESSAGE", "Fix the $thing\n\nLonger text.\n" },
		{ "CI_COMMIT_TITLE", "Fix the $thing" },
		{ "CI_COMMIT_DESCRIPTION", "Longer text.\n" },
		{ "CI_DEFAULT_BRANCH", "main" },
		{ "CI_PROJECT_NAME", "demo" },
		{ "CI_PROJECT_PATH", "group/demo" },
		{ "CI_PROJECT_NAMESPACE", "group" },
		{ "CI_PROJECT_DIR", "/builds/group/demo" },
		{ "CI_NODE_INDEX", "2" },
		{ "CI_NODE_TOTAL", "2" },
		{ "SUITE", "slow" },
		{ "EXTRA", "from the command line" },
	};
	size_t i;

	fake_repo(&r);
	load_matrix(&r, &pre, &pl);
	k = pipeline_find(&pl, "unit: [slow]");
	ck_assert_int_ge(k, 0);
	ck_assert_int_eq(localci_payload(&r, &pl, &pl.jobs[k], 70002, 7, "2026-01-02T03:04:06Z", &json, &e), KILN_OK);
	/* The same path as --job-file. */
	ck_assert_msg(payload_parse(json, strlen(json), &p, &e) == KILN_OK, "%s: %s", e.msg, json);
	ck_assert_int_eq(p.id, 70002);
	ck_assert_str_eq(p.job_name, "unit: [slow]");
	ck_assert_str_eq(p.stage, "test");
	ck_assert_int_eq(p.pipeline_id, 7);
	ck_assert_str_eq(p.repo_url, "/src/demo");
	ck_assert_str_eq(p.sha, r.sha);
	ck_assert_str_eq(p.ref, "Feature/X");
	ck_assert_str_eq(p.ref_type, "branch");
	ck_assert_uint_eq(p.n_refspecs, 3);
	ck_assert_str_eq(p.refspecs[2], "+0123456789abcdef0123456789abcdef01234567:refs/pipelines/7");
	ck_assert_int_eq(p.depth, 0);
	ck_assert_int_eq(p.timeout, LOCALCI_DEFAULT_TIMEOUT);
	ck_assert_str_eq(p.image, "tiny");
	ck_assert_uint_eq(p.n_steps, 1);
	ck_assert_str_eq(p.steps[0].name, "script");
	ck_assert_str_eq(p.steps[0].when, "on_success");
	ck_assert_uint_eq(p.steps[0].n_script, 1);
	ck_assert_str_eq(p.steps[0].script[0], "echo \"suite $SUITE on node $CI_NODE_INDEX of $CI_NODE_TOTAL\"");
	for (i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *v = payload_var(&p, want[i][0]);

		ck_assert_msg(v && !strcmp(v, want[i][1]), "%s = '%s', want '%s'", want[i][0], v ? v : "(unset)",
			      want[i][1]);
	}
	ck_assert_ptr_null(payload_var(&p, "CI_COMMIT_TAG"));
	/* Predefined values are raw: $thing is not expanded by anyone. */
	for (i = 0; i < p.n_vars; i++)
		if (!strcmp(p.vars[i].key, "CI_COMMIT_MESSAGE"))
			ck_assert(p.vars[i].raw);

	/* What the agent gets: the runner's own variables on top. */
	ck_assert_int_eq(jobspec_build(&p, &spec_text, &e), KILN_OK);
	spec = json_loads(spec_text, 0, NULL);
	ck_assert_ptr_nonnull(spec);
	ck_assert_str_eq(json_string_value(json_object_get(spec, "workdir")), "/builds/group/demo");
	ck_assert_str_eq(spec_env(spec, "CI_PROJECT_DIR"), "/builds/group/demo");
	ck_assert_str_eq(spec_env(spec, "CI_DISPOSABLE_ENVIRONMENT"), "true");
	ck_assert_str_eq(spec_env(spec, "CI_JOB_ID"), "70002");
	ck_assert_str_eq(spec_env(spec, "CI_NODE_INDEX"), "2");
	/* GitLab keeps `$$`; the runner's pass makes it `$`. */
	ck_assert_str_eq(spec_env(spec, "PRICE"), "cost $5");
	json_decref(spec);
	free(spec_text);
	payload_free(&p);
	free(json);

	/* A job with a timeout and an after_script. */
	k = pipeline_find(&pl, "slow");
	ck_assert_int_ge(k, 0);
	ck_assert_int_eq(localci_payload(&r, &pl, &pl.jobs[k], 70005, 7, "2026-01-02T03:04:06Z", &json, &e), KILN_OK);
	ck_assert_msg(payload_parse(json, strlen(json), &p, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(p.timeout, 10);
	ck_assert_uint_eq(p.n_steps, 2);
	ck_assert_int_eq(p.steps[0].timeout, 10);
	ck_assert_str_eq(p.steps[1].name, "after_script");
	ck_assert_str_eq(p.steps[1].when, "always");
	ck_assert_int_eq(p.steps[1].timeout, LOCALCI_AFTER_SCRIPT_TIMEOUT);
	ck_assert(p.steps[1].allow_failure);
	ck_assert_ptr_null(payload_var(&p, "CI_NODE_INDEX"));
	payload_free(&p);
	free(json);

	pipeline_free(&pl);
	localci_strv_free(&pre);
	localci_repo_free(&r);
}
END_TEST

START_TEST(payload_when_detached_at_a_tag)
{
	struct localci_repo r;
	struct localci_strv pre = { 0 };
	struct pipeline pl;
	struct job_payload p;
	struct kiln_err e = { 0 };
	char *json = NULL;

	fake_repo(&r);
	r.branch[0] = '\0';
	snprintf(r.tag, sizeof(r.tag), "v1.2");
	snprintf(r.ref_name, sizeof(r.ref_name), "v1.2");
	load_matrix(&r, &pre, &pl);
	ck_assert_int_eq(localci_payload(&r, &pl, &pl.jobs[0], 70001, 7, "2026-01-02T03:04:06Z", &json, &e), KILN_OK);
	ck_assert_msg(payload_parse(json, strlen(json), &p, &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(p.ref_type, "tag");
	ck_assert_str_eq(payload_var(&p, "CI_COMMIT_TAG"), "v1.2");
	ck_assert_str_eq(payload_var(&p, "CI_COMMIT_REF_NAME"), "v1.2");
	ck_assert_ptr_null(payload_var(&p, "CI_COMMIT_BRANCH"));
	payload_free(&p);
	free(json);
	pipeline_free(&pl);
	localci_strv_free(&pre);
	localci_repo_free(&r);
}
END_TEST

/* yml as dir's .gitlab-ci.yml, whose path goes to path. */
static void write_ci_yml(const char *dir, char path[PATH_MAX], const char *yml)
{
	FILE *f;

	snprintf(path, PATH_MAX, "%s/.gitlab-ci.yml", dir);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(yml, f);
	fclose(f);
}

/* The payload of pl's job name as job id, parsed into *p; free both with
 * payload_free(p) and free(*json). */
static void job_payload_of(const struct localci_repo *r, const struct pipeline *pl, const char *name, long long id,
			   char **json, struct job_payload *p)
{
	struct kiln_err e = { 0 };

	ck_assert_int_eq(localci_payload(r, pl, &pl->jobs[pipeline_find(pl, name)], id, 7, "x", json, &e), KILN_OK);
	ck_assert_msg(payload_parse(*json, strlen(*json), p, &e) == KILN_OK, "%s", e.msg);
}

/* The deprecated top-level services: applies to jobs without their own
 * (as a top-level image: does); its names expand with the job's variables. */
START_TEST(top_level_services)
{
	static const char yml[] = "variables: {PG: '16'}\n"
				  "services: ['postgres:$PG']\n"
				  "a:\n  script: [echo a]\n"
				  "b:\n  script: [echo b]\n  services: [redis]\n";
	char dir[] = "/tmp/kiln-localci-svc-XXXXXX", path[PATH_MAX];
	struct localci_repo r;
	struct localci_strv pre = { 0 };
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct job_payload p;
	struct kiln_err e = { 0 };
	json_t *svc;
	char *json = NULL;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_ci_yml(dir, path, yml);
	fake_repo(&r);
	ck_assert_int_eq(localci_predefined(&r, 7, 7, "2026-01-02T03:04:05Z", &pre, &e), KILN_OK);
	o.repo_dir = dir;
	ck_assert_msg(pipeline_load(&o, &pl, &e) == KILN_OK, "%s", e.msg);
	job_payload_of(&r, &pl, "a", 1, &json, &p);
	svc = json_object_get(p.doc, "services");
	ck_assert_uint_eq(json_array_size(svc), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(svc, 0), "name")), "postgres:16");
	payload_free(&p);
	free(json);
	job_payload_of(&r, &pl, "b", 2, &json, &p);
	svc = json_object_get(p.doc, "services");
	ck_assert_uint_eq(json_array_size(svc), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(svc, 0), "name")), "redis");
	payload_free(&p);
	free(json);
	unlink(path);
	rmdir(dir);
	pipeline_free(&pl);
	localci_strv_free(&pre);
	localci_repo_free(&r);
}
END_TEST

/* services: in a local pipeline (issue #16): default: and the job's own,
 * as the payload's services[] (names, alias, command, variables). */
START_TEST(payload_with_services)
{
	static const char yml[] =
		"default:\n  services: [tiny]\n"
		"a:\n  script: [echo a]\n"
		"b:\n  script: [echo b]\n"
		"  image:\n    name: alpine:3\n    entrypoint: ['']\n    pull_policy: if-not-present\n"
		"  services:\n    - name: tiny:latest\n      alias: db, pg\n      pull_policy: [never, always]\n"
		"      command: [nc, -ll, -p, '5432', -e, echo, hi]\n"
		"      variables: {HEALTHCHECK_TCP_PORT: '5432'}\n";
	char dir[] = "/tmp/kiln-localci-svc-XXXXXX", path[PATH_MAX];
	struct localci_repo r;
	struct localci_strv pre = { 0 };
	struct pipeline_opts o = { 0 };
	struct pipeline pl;
	struct job_payload p;
	struct kiln_err e = { 0 };
	json_t *svc;
	char *json = NULL;
	FILE *f;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_ci_yml(dir, path, yml);
	fake_repo(&r);
	ck_assert_int_eq(localci_predefined(&r, 7, 7, "2026-01-02T03:04:05Z", &pre, &e), KILN_OK);
	o.repo_dir = dir;
	ck_assert_msg(pipeline_load(&o, &pl, &e) == KILN_OK, "%s", e.msg);

	job_payload_of(&r, &pl, "a", 1, &json, &p);
	svc = json_object_get(p.doc, "services");
	ck_assert_uint_eq(json_array_size(svc), 1);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(svc, 0), "name")), "tiny");
	ck_assert_ptr_null(payload_unsupported(&p));
	payload_free(&p);
	free(json);

	job_payload_of(&r, &pl, "b", 2, &json, &p);
	svc = json_array_get(json_object_get(p.doc, "services"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(svc, "name")), "tiny:latest");
	ck_assert_str_eq(json_string_value(json_object_get(svc, "alias")), "db, pg");
	ck_assert_uint_eq(json_array_size(json_object_get(svc, "command")), 7);
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(svc, "variables"), 0), "key")),
			 "HEALTHCHECK_TCP_PORT");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc, "pull_policy"), 1)), "always");
	/* image: entrypoint and pull_policy as GitLab's payload has them. */
	ck_assert_str_eq(p.image, "alpine:3");
	svc = json_object_get(p.doc, "image");
	ck_assert_uint_eq(json_array_size(json_object_get(svc, "entrypoint")), 1);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc, "entrypoint"), 0)), "");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc, "pull_policy"), 0)), "if-not-present");
	payload_free(&p);
	free(json);
	pipeline_free(&pl);

	/* A bad shape is an error naming the job and the entry. */
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("a:\n  script: [echo a]\n  services: [{alias: x}]\n", f);
	fclose(f);
	ck_assert_int_ne(pipeline_load(&o, &pl, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "services[0]: expected a name or a map with a name"), "%s", e.msg);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs("a:\n  script: [echo a]\n  image: {name: x, entrypoint: /bin/sh}\n", f);
	fclose(f);
	ck_assert_int_ne(pipeline_load(&o, &pl, &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "job 'a': image:entrypoint: expected a list of strings"), "%s", e.msg);
	unlink(path);
	rmdir(dir);
	localci_strv_free(&pre);
	localci_repo_free(&r);
}
END_TEST

Suite *localci_suite(void)
{
	Suite *s = suite_create("localci");
	TCase *tc = tcase_create("payload");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, repo_facts_from_libgit2);
	tcase_add_test(tc, slugs);
	tcase_add_test(tc, payload_of_a_matrix_job);
	tcase_add_test(tc, payload_when_detached_at_a_tag);
	tcase_add_test(tc, payload_with_services);
	tcase_add_test(tc, top_level_services);
	suite_add_tcase(s, tc);
	return s;
}
