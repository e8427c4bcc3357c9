/* services: (issue #16): gitlab-runner's aliases (its services_test.go
 * cases), taken aliases, the port kiln waits for, the /etc/hosts lines and
 * the service VM's spec. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "job/payload.h"
#include "job/services.h"
#include "tests/unit/suites.h"

static const struct {
	const char *ref, *a1, *a2;
} alias_cases[] = {
	{ "service", "service", NULL },
	{ "service:latest", "service", NULL },
	{ "postgres:16", "postgres", NULL },
	{ "tutum/wordpress", "tutum__wordpress", "tutum-wordpress" },
	{ "tutum/wordpress:latest", "tutum__wordpress", "tutum-wordpress" },
	{ "gitlab/service@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	  "gitlab__service", "gitlab-service" },
	{ "registry.example.com:4999/valkey/valkey:8", "registry.example.com__valkey__valkey",
	  "registry.example.com-valkey-valkey" },
	{ "domain.tld:8080/service:version", "domain.tld__service", "domain.tld-service" },
	{ "domain.tld/service:1.2@sha256:00", "domain.tld__service", "domain.tld-service" },
	{ "subdomain.domain.tld:8080/service", "subdomain.domain.tld__service", "subdomain.domain.tld-service" },
};

START_TEST(aliases_as_gitlab_runner)
{
	char out[2][SERVICE_ALIAS_MAX];
	size_t n = service_name_aliases(alias_cases[_i].ref, out);

	ck_assert_uint_eq(n, alias_cases[_i].a2 ? 2 : 1);
	ck_assert_str_eq(out[0], alias_cases[_i].a1);
	if (alias_cases[_i].a2)
		ck_assert_str_eq(out[1], alias_cases[_i].a2);
}
END_TEST

START_TEST(alias_of_nothing_or_too_long)
{
	char out[2][SERVICE_ALIAS_MAX], big[400];

	ck_assert_uint_eq(service_name_aliases("", out), 0);
	ck_assert_uint_eq(service_name_aliases(":tag", out), 0);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ck_assert_uint_eq(service_name_aliases(big, out), 0);
}
END_TEST

static void parse(const char *text, struct job_payload *p)
{
	struct kiln_err e = { 0 };

	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
}

#define PAYLOAD_HEAD                                                                                            \
	"{\"id\":1,\"token\":\"t\",\"job_info\":{\"name\":\"j\",\"project_name\":\"p\"},"                     \
	"\"git_info\":{\"repo_url\":\"https://x/p.git\",\"sha\":\"0123456789abcdef0123456789abcdef01234567\"}," \
	"\"steps\":[{\"name\":\"script\",\"script\":[\"true\"],\"timeout\":60,\"when\":\"on_success\"}],"

static void collect(void *arg, const char *line)
{
	char *buf = arg;

	strncat(buf, line, 1023 - strlen(buf));
	strncat(buf, "\n", 1023 - strlen(buf));
}

START_TEST(parse_aliases_taken_and_ports)
{
	struct job_payload p = { 0 };
	struct job_services s;
	struct kiln_err e = { 0 };
	char warnings[1024] = "";

	parse(PAYLOAD_HEAD "\"variables\":[{\"key\":\"healthcheck_tcp_port\",\"value\":\"6379\",\"public\":true}],"
			   "\"services\":[{\"name\":\"postgres:16\",\"alias\":\"db, pg\",\"command\":[\"postgres\",\"-c\",\"x=1\"],"
			   "\"variables\":[{\"key\":\"HEALTHCHECK_TCP_PORT\",\"value\":\"5432\"}]},"
			   "{\"name\":\"registry.example.com/postgres\",\"alias\":\"pg\"},"
			   "\"tutum/wordpress\","
			   "{\"name\":\"other/db\",\"alias\":\"db\"}, {\"name\":\"db\"}]}",
		      &p);
	ck_assert_int_eq(services_parse(&p, NULL, &s, collect, warnings, &e), KILN_OK);
	/* The last service's every alias (db) is taken: never started. */
	ck_assert_uint_eq(s.n, 4);
	ck_assert_uint_eq(s.v[0].n_aliases, 3);
	ck_assert_str_eq(s.v[0].aliases[0], "postgres");
	ck_assert_str_eq(s.v[0].aliases[1], "db");
	ck_assert_str_eq(s.v[0].aliases[2], "pg");
	ck_assert_uint_eq(s.v[0].n_command, 3);
	ck_assert_ptr_null(s.v[0].entrypoint);
	ck_assert_uint_eq(s.v[0].n_ports, 1);
	ck_assert_int_eq(s.v[0].ports[0], 5432);
	/* pg is taken: only the derived names. */
	ck_assert_uint_eq(s.v[1].n_aliases, 2);
	ck_assert_str_eq(s.v[1].aliases[0], "registry.example.com__postgres");
	/* A plain string, as a local pipeline writes it; the job's port. */
	ck_assert_str_eq(s.v[2].name, "tutum/wordpress");
	ck_assert_uint_eq(s.v[2].n_aliases, 2);
	ck_assert_int_eq(s.v[2].ports[0], 6379);
	ck_assert_uint_eq(s.v[3].n_aliases, 2);
	ck_assert_str_eq(s.v[3].aliases[0], "other__db");
	ck_assert_uint_eq(s.v[4 - 1].index, 3);
	ck_assert_ptr_nonnull(strstr(warnings, "alias pg is taken"));
	ck_assert_ptr_nonnull(strstr(warnings, "service db: every alias is taken, the service is not started"));
	services_free(&s);
	payload_free(&p);
}
END_TEST

START_TEST(names_expand_from_job_variables)
{
	struct job_payload p = { 0 };
	struct job_services s;
	struct kiln_err e = { 0 };

	/* gitlab-runner expands image:name, services:name and alias with
	 * every job variable before it pulls; a plain string service too. */
	parse(PAYLOAD_HEAD "\"variables\":[{\"key\":\"PG\",\"value\":\"16\",\"public\":true},"
			   "{\"key\":\"REG\",\"value\":\"registry.example.com\",\"public\":false},"
			   "{\"key\":\"ALIAS\",\"value\":\"db\",\"public\":true}],"
			   "\"image\":{\"name\":\"$REG/ruby:${PG}\"},"
			   "\"services\":[{\"name\":\"postgres:$PG\",\"alias\":\"${ALIAS}, $UNSET\"},\"$REG/redis\"]}",
		      &p);
	ck_assert_str_eq(p.image, "registry.example.com/ruby:16");
	ck_assert_int_eq(services_parse(&p, NULL, &s, NULL, NULL, &e), KILN_OK);
	ck_assert_uint_eq(s.n, 2);
	ck_assert_str_eq(s.v[0].name, "postgres:16");
	ck_assert_uint_eq(s.v[0].n_aliases, 2);
	ck_assert_str_eq(s.v[0].aliases[1], "db");
	ck_assert_str_eq(s.v[1].name, "registry.example.com/redis");
	ck_assert_str_eq(s.v[1].aliases[0], "registry.example.com__redis");
	services_free(&s);
	payload_free(&p);
}
END_TEST

START_TEST(runner_rules)
{
	struct job_payload p = { 0 };
	struct job_services s;
	struct kiln_err e = { 0 };
	const char *allowed[] = { "postgres:*", "registry.example.com/**" };
	json_t *mine = json_loads("[{\"name\":\"docker:dind\",\"alias\":\"dind\",\"command\":[\"--tls=false\"]}]", 0,
				  NULL);
	struct services_rules r = { mine, allowed, 2, -1 };

	parse(PAYLOAD_HEAD "\"services\":[\"postgres:16\",{\"name\":\"registry.example.com/a/redis:7\"}]}", &p);
	/* The runner's services first, then the job's, each allowed. */
	ck_assert_msg(services_parse(&p, &r, &s, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(s.n, 3);
	ck_assert_str_eq(s.v[0].name, "docker:dind");
	ck_assert_str_eq(s.v[0].aliases[1], "dind");
	ck_assert_uint_eq(s.v[0].n_command, 1);
	ck_assert_str_eq(s.v[1].name, "postgres:16");
	services_free(&s);
	/* services_limit counts the runner's too (gitlab-runner's message). */
	r.limit = 2;
	ck_assert_int_eq(services_parse(&p, &r, &s, NULL, NULL, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "too many services requested (3 > 2): oci: services_limit");
	ck_assert_uint_eq(s.n, 0);
	r.limit = 3;
	ck_assert_int_eq(services_parse(&p, &r, &s, NULL, NULL, &e), KILN_OK);
	services_free(&s);
	payload_free(&p);

	/* A job's service none of the patterns takes fails the job; the
	 * runner's own name passes even when no pattern takes it. */
	parse(PAYLOAD_HEAD "\"services\":[\"docker:dind\",\"redis:7\"]}", &p);
	ck_assert_int_eq(services_parse(&p, &r, &s, NULL, NULL, &e), KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "disallowed image: the redis:7 is not present on list of allowed services: postgres:*, "
				"registry.example.com/** (oci: allowed_services)");
	payload_free(&p);
	parse(PAYLOAD_HEAD "\"services\":[\"docker:dind\"]}", &p);
	r.n_allowed = 0;
	ck_assert_int_eq(services_parse(&p, &r, &s, NULL, NULL, &e), KILN_OK);
	/* Its alias repeats the runner's service: the job's copy has none left. */
	ck_assert_uint_eq(s.n, 1);
	services_free(&s);
	payload_free(&p);
	json_decref(mine);
	ck_assert_int_eq(services_image_allowed("a/b/c", "images", allowed, 1, NULL, 0, &e), KILN_E_INVALID);
	ck_assert_int_eq(services_image_allowed("anything", "images", NULL, 0, NULL, 0, &e), KILN_OK);
}
END_TEST

START_TEST(malformed_services_are_named)
{
	static const char *const bad[][2] = {
		{ "\"services\":{}", "payload: services: not an array" },
		{ "\"services\":[{\"alias\":\"x\"}]", "payload: services[0]: name: missing" },
		{ "\"services\":[\"a\",{\"name\":\"b\",\"command\":\"x\"}]", "payload: services[1]: command: not an array" },
		{ "\"services\":[{\"name\":\"b\",\"entrypoint\":[1]}]", "payload: services[0]: entrypoint[0]: not a string" },
		{ "\"services\":[{\"name\":\"b\",\"variables\":[{\"value\":\"v\"}]}]", "payload: services[0]: variables[0]" },
		{ "\"services\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\",\"j\",\"k\",\"l\",\"m\",\"n\",\"o\","
		  "\"p\",\"q\"]",
		  "too many services requested: 17, only 16 allowed" },
	};
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct job_payload p = { 0 };
		struct job_services s;
		struct kiln_err e = { 0 };
		char text[2048];

		snprintf(text, sizeof(text), PAYLOAD_HEAD "%s}", bad[i][0]);
		parse(text, &p);
		ck_assert_int_ne(services_parse(&p, NULL, &s, NULL, NULL, &e), KILN_OK);
		ck_assert_msg(strstr(e.msg, bad[i][1]), "%s: %s", bad[i][0], e.msg);
		ck_assert_uint_eq(s.n, 0);
		payload_free(&p);
	}
}
END_TEST

START_TEST(hosts_and_service_spec)
{
	struct job_payload p = { 0 };
	struct job_services s;
	struct kiln_err e = { 0 };
	const char *addrs[] = { "10.0.0.3", "10.0.0.4" };
	char *hosts, *spec, *job;
	json_t *o, *env;

	parse(PAYLOAD_HEAD "\"variables\":[{\"key\":\"DB\",\"value\":\"app\",\"public\":true},"
			   "{\"key\":\"SECRET\",\"value\":\"s3cr3t\",\"public\":false}],"
			   "\"services\":[{\"name\":\"postgres:16\",\"alias\":\"db\",\"entrypoint\":[\"/bin/sh\",\"-c\"],"
			   "\"command\":[\"exec postgres\"],\"variables\":[{\"key\":\"POSTGRES_DB\",\"value\":\"${DB}_test\"},"
			   "{\"key\":\"RAW\",\"value\":\"$DB\",\"raw\":true}]},"
			   "{\"name\":\"tutum/wordpress\"}]}",
		      &p);
	ck_assert_int_eq(services_parse(&p, NULL, &s, NULL, NULL, &e), KILN_OK);
	ck_assert_int_eq(services_hosts(&s, addrs, &hosts, &e), KILN_OK);
	ck_assert_str_eq(hosts, "10.0.0.3 postgres db\n10.0.0.4 tutum__wordpress tutum-wordpress\n");

	ck_assert_int_eq(services_spec_build(&p, &s.v[0], hosts, &spec, &e), KILN_OK);
	o = json_loads(spec, 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(o, "mode")), "service");
	ck_assert_uint_eq(json_array_size(json_object_get(o, "argv")), 3);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "argv"), 0)), "/bin/sh");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(o, "argv"), 2)), "exec postgres");
	env = json_object_get(o, "env");
	/* DB (public), POSTGRES_DB expanded, RAW as written; SECRET kept out. */
	ck_assert_uint_eq(json_array_size(env), 3);
	ck_assert_str_eq(json_string_value(json_array_get(json_array_get(env, 0), 0)), "DB");
	ck_assert_str_eq(json_string_value(json_array_get(json_array_get(env, 1), 1)), "app_test");
	ck_assert_str_eq(json_string_value(json_array_get(json_array_get(env, 2), 1)), "$DB");
	ck_assert_ptr_null(strstr(spec, "s3cr3t"));
	json_decref(o);
	free(spec);

	/* The image's own command: an empty argv for the launcher to fill. */
	ck_assert_int_eq(services_spec_build(&p, &s.v[1], NULL, &spec, &e), KILN_OK);
	o = json_loads(spec, 0, NULL);
	ck_assert_uint_eq(json_array_size(json_object_get(o, "argv")), 0);
	json_decref(o);
	free(spec);

	ck_assert_int_eq(services_spec_add_hosts("{\"steps\":[]}", hosts, &job, &e), KILN_OK);
	o = json_loads(job, 0, NULL);
	ck_assert_str_eq(json_string_value(json_object_get(o, "hosts")), hosts);
	json_decref(o);
	free(job);
	free(hosts);
	services_free(&s);
	payload_free(&p);
}
END_TEST

Suite *services_suite(void)
{
	Suite *s = suite_create("services");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, aliases_as_gitlab_runner, 0, sizeof(alias_cases) / sizeof(alias_cases[0]));
	tcase_add_test(tc, alias_of_nothing_or_too_long);
	tcase_add_test(tc, parse_aliases_taken_and_ports);
	tcase_add_test(tc, names_expand_from_job_variables);
	tcase_add_test(tc, runner_rules);
	tcase_add_test(tc, malformed_services_are_named);
	tcase_add_test(tc, hosts_and_service_spec);
	suite_add_tcase(s, tc);
	return s;
}
