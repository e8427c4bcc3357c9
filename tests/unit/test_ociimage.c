/* job/ociimage.c's gitlab-runner semantics (pull_policy against
 * allowed_pull_policies, the credential order, a service's command from
 * its image), the `oci:` config section and the agent's User resolution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/imageuser.h"
#include "job/ociimage.h"
#include "job/services.h"
#include "runner/config.h"
#include "tests/unit/suites.h"

static void load(struct job_payload *p, const char *image_json, const char *extra)
{
	char text[4096];
	struct kiln_err e = { 0 };

	snprintf(text, sizeof(text),
		 "{\"id\": 1, \"token\": \"t\", \"job_info\": {\"name\": \"j\", \"project_id\": 1},"
		 " \"git_info\": {\"repo_url\": \"https://x/y.git\", \"sha\": \"0123456789012345678901234567890123456789\"},"
		 " \"image\": %s, \"steps\": [{\"name\": \"script\", \"script\": [\"true\"], \"timeout\": 60,"
		 " \"when\": \"on_success\"}]%s}",
		 image_json, extra);
	ck_assert_msg(payload_parse(text, strlen(text), p, &e) == KILN_OK, "%s", e.msg);
}

START_TEST(policies)
{
	struct job_payload p;
	struct ociimage_opts o = { 0 };
	enum ociimage_policy v[OCIIMAGE_MAX_POLICIES];
	struct kiln_err e = { 0 };
	size_t n;

	/* No job policy, no allowed list: always. */
	load(&p, "{\"name\": \"alpine\"}", "");
	ck_assert_int_eq(ociimage_policies(&p, &o, v, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0], PULL_ALWAYS);
	payload_free(&p);
	/* The job asks for one the runner does not allow. */
	load(&p, "{\"name\": \"alpine\", \"pull_policy\": [\"if-not-present\"]}", "");
	ck_assert_int_eq(ociimage_policies(&p, &o, v, &n, &e), KILN_E_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "is not one of the allowed_pull_policies ([always])"));
	/* Allowed: the job's order, intersected. */
	o.allowed[0] = PULL_NEVER;
	o.allowed[1] = PULL_IF_NOT_PRESENT;
	o.n_allowed = 2;
	ck_assert_int_eq(ociimage_policies(&p, &o, v, &n, &e), KILN_OK);
	ck_assert_uint_eq(n, 1);
	ck_assert_int_eq(v[0], PULL_IF_NOT_PRESENT);
	payload_free(&p);
	load(&p, "{\"name\": \"alpine\", \"pull_policy\": \"never\"}", "");
	ck_assert_int_eq(ociimage_policies(&p, &o, v, &n, &e), KILN_OK);
	ck_assert_int_eq(v[0], PULL_NEVER);
	payload_free(&p);
	load(&p, "{\"name\": \"alpine\", \"pull_policy\": [\"sometimes\"]}", "");
	ck_assert_int_eq(ociimage_policies(&p, &o, v, &n, &e), KILN_E_INVALID);
	ck_assert_ptr_nonnull(strstr(e.msg, "pull_policy[0]"));
	payload_free(&p);
}
END_TEST

START_TEST(credentials_order)
{
	struct job_payload p;
	struct ociimage_registry regs[] = { { "reg.example:5000", "cfguser", "cfgpass", "/ca.pem", false },
					    { "docker.io", "hubuser", "hubpass", NULL, false } };
	struct ociimage_opts o = { .registries = regs, .n_registries = 2 };
	const struct ociimage_registry *reg;
	const char *u, *pw;
	char buf[256];

	/* dXNlcjI6cGFzczI= is "user2:pass2". */
	load(&p, "{\"name\": \"reg.example:5000/a/b:1\"}",
	     ", \"credentials\": [{\"type\": \"registry\", \"url\": \"reg.example:5000\", \"username\": "
	     "\"gitlab-ci-token\", \"password\": \"jobtok\"}], \"variables\": [{\"key\": \"DOCKER_AUTH_CONFIG\", "
	     "\"value\": \"{\\\"auths\\\": {\\\"reg.example:5000\\\": {\\\"auth\\\": \\\"dXNlcjI6cGFzczI=\\\"}, "
	     "\\\"https://index.docker.io/v1/\\\": {\\\"username\\\": \\\"hu\\\", \\\"password\\\": \\\"hp\\\"}}}\"}]");
	/* The payload's credentials first. */
	ociimage_credentials(&p, &o, "reg.example:5000", &u, &pw, &reg, buf, sizeof(buf));
	ck_assert_str_eq(u, "gitlab-ci-token");
	ck_assert_str_eq(pw, "jobtok");
	ck_assert_ptr_eq(reg, &regs[0]);
	/* Then DOCKER_AUTH_CONFIG (Hub's legacy key names docker.io). */
	ociimage_credentials(&p, &o, "docker.io", &u, &pw, &reg, buf, sizeof(buf));
	ck_assert_str_eq(u, "hu");
	ck_assert_str_eq(pw, "hp");
	/* Then kiln's registries; none anywhere: anonymous. */
	ociimage_credentials(&p, &o, "other.example", &u, &pw, &reg, buf, sizeof(buf));
	ck_assert_ptr_null(u);
	ck_assert_ptr_null(reg);
	payload_free(&p);
	load(&p, "{\"name\": \"reg.example:5000/a/b:1\"}",
	     ", \"variables\": [{\"key\": \"DOCKER_AUTH_CONFIG\", \"value\": \"{\\\"auths\\\": "
	     "{\\\"reg.example:5000\\\": {\\\"auth\\\": \\\"dXNlcjI6cGFzczI=\\\"}}}\"}]");
	ociimage_credentials(&p, &o, "reg.example:5000", &u, &pw, &reg, buf, sizeof(buf));
	ck_assert_str_eq(u, "user2");
	ck_assert_str_eq(pw, "pass2");
	ociimage_credentials(&p, &o, "docker.io", &u, &pw, &reg, buf, sizeof(buf));
	ck_assert_str_eq(u, "hubuser");
	ck_assert_str_eq(pw, "hubpass");
	payload_free(&p);
}
END_TEST

START_TEST(config_section)
{
	const char *good = "oci:\n  max_size_mib: 2048\n  allowed_pull_policies: [if-not-present, always]\n"
			   "  registries:\n    - host: ghcr.io\n      username: u\n      password: p\n"
			   "      tls_ca_file: /ca.pem\n      insecure: false\n";
	const char *bad_key = "oci:\n  registries:\n    - host: a\n      user: u\n";
	const char *bad_policy = "oci:\n  allowed_pull_policies: [sometimes]\n";
	const char *half = "oci:\n  registries:\n    - host: a\n      username: u\n";
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_parse(&cfg, "good.yml", good, strlen(good), &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_eq(cfg.oci.max_size_mib, 2048);
	ck_assert_str_eq(cfg.oci.allowed_pull_policies[0], "if-not-present");
	ck_assert_str_eq(cfg.oci.allowed_pull_policies[1], "always");
	ck_assert_ptr_null(cfg.oci.allowed_pull_policies[2]);
	ck_assert_uint_eq(cfg.oci.n_registries, 1);
	ck_assert_str_eq(cfg.oci.registries[0].host, "ghcr.io");
	ck_assert_str_eq(cfg.oci.registries[0].tls_ca_file, "/ca.pem");
	kiln_config_free(&cfg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_ne(kiln_config_parse(&cfg, "bad.yml", bad_key, strlen(bad_key), &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "bad.yml:4") && strstr(e.msg, "unknown key 'user'"), "%s", e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_ne(kiln_config_parse(&cfg, "p.yml", bad_policy, strlen(bad_policy), &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "unknown value 'sometimes'"), "%s", e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_ne(kiln_config_parse(&cfg, "h.yml", half, strlen(half), &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "username and password go together"), "%s", e.msg);
	kiln_config_free(&cfg);
}
END_TEST

START_TEST(image_user)
{
	const char *passwd = "root:x:0:0:root:/root:/bin/sh\nrunner:x:1234:4321::/home/runner:/bin/sh\n";
	const char *group = "root:x:0:\nstaff:x:50:\n";
	char err[128];
	uid_t u;
	gid_t g;

	ck_assert_int_eq(image_resolve_user("", passwd, group, &u, &g, err, sizeof(err)), 0);
	ck_assert(u == 0 && g == 0);
	ck_assert_int_eq(image_resolve_user("runner", passwd, group, &u, &g, err, sizeof(err)), 0);
	ck_assert(u == 1234 && g == 4321);
	ck_assert_int_eq(image_resolve_user("1234", passwd, group, &u, &g, err, sizeof(err)), 0);
	ck_assert(u == 1234 && g == 4321);
	ck_assert_int_eq(image_resolve_user("runner:staff", passwd, group, &u, &g, err, sizeof(err)), 0);
	ck_assert(u == 1234 && g == 50);
	ck_assert_int_eq(image_resolve_user("77:88", NULL, NULL, &u, &g, err, sizeof(err)), 0);
	ck_assert(u == 77 && g == 88);
	ck_assert_int_eq(image_resolve_user("nobody", passwd, group, &u, &g, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "user nobody: not in the image's /etc/passwd");
	ck_assert_int_eq(image_resolve_user("runner:wheel", passwd, group, &u, &g, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "group wheel: not in the image's /etc/group");
	/* "runner" must not match "runnerx". */
	ck_assert_int_eq(image_resolve_user("runne", passwd, group, &u, &g, err, sizeof(err)), -1);
}
END_TEST

/* The argv ociimage_service_spec gives a service with entrypoint ep and
 * command cmd (NULL: none) in an image with Entrypoint iep and Cmd icmd
 * (JSON or NULL), as one space-joined string; "" when it fails. */
static const char *service_argv(const char *iep, const char *icmd, const char **ep, size_t n_ep, const char **cmd,
				size_t n_cmd)
{
	static char out[256];
	struct ociimage img = { .user = "redis" };
	struct job_service svc = { .name = "redis:7", .entrypoint = ep, .n_entrypoint = n_ep, .command = cmd,
				   .n_command = n_cmd };
	struct kiln_err e = { 0 };
	char *spec = strdup("{\"mode\":\"service\",\"argv\":[],\"env\":[[\"A\",\"job\"]]}");
	json_t *doc, *v;
	size_t i, len = 0;

	img.env = json_pack("[[ss][ss]]", "A", "image", "B", "image");
	img.entrypoint = iep ? json_loads(iep, 0, NULL) : NULL;
	img.cmd = icmd ? json_loads(icmd, 0, NULL) : NULL;
	out[0] = '\0';
	if (ociimage_service_spec(&img, &svc, &spec, &e) == KILN_OK) {
		doc = json_loads(spec, 0, NULL);
		json_array_foreach(json_object_get(doc, "argv"), i, v)
			len += (size_t)snprintf(out + len, sizeof(out) - len, "%s%s", i ? " " : "", json_string_value(v));
		/* The image's Env first, the service's later (the agent's last wins). */
		ck_assert_str_eq(json_string_value(json_array_get(json_array_get(json_object_get(doc, "env"), 0), 1)),
				 "image");
		ck_assert_str_eq(json_string_value(json_array_get(json_array_get(json_object_get(doc, "env"), 2), 1)),
				 "job");
		ck_assert_str_eq(json_string_value(json_object_get(json_object_get(doc, "image"), "user")), "redis");
		json_decref(doc);
	} else {
		ck_assert_msg(strstr(e.msg, "service redis:7: no command"), "%s", e.msg);
	}
	free(spec);
	ociimage_free(&img);
	return out;
}

START_TEST(service_command)
{
	const char *ep[] = { "/bin/sh", "-c" }, *cmd[] = { "echo hi" };

	/* Nothing from the service: the image's Entrypoint + Cmd. */
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", NULL, 0, NULL, 0),
			 "docker-entrypoint.sh redis-server");
	ck_assert_str_eq(service_argv(NULL, "[\"redis-server\", \"--port\", \"1\"]", NULL, 0, NULL, 0),
			 "redis-server --port 1");
	/* command: replaces Cmd, keeps Entrypoint. */
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", NULL, 0, cmd, 1),
			 "docker-entrypoint.sh echo hi");
	/* entrypoint: replaces Entrypoint and drops the image's Cmd (docker). */
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", ep, 2, NULL, 0),
			 "/bin/sh -c");
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", ep, 2, cmd, 1),
			 "/bin/sh -c echo hi");
	/* No command anywhere: a clear error. */
	ck_assert_str_eq(service_argv(NULL, NULL, NULL, 0, NULL, 0), "");
	ck_assert_str_eq(service_argv("[]", NULL, NULL, 0, NULL, 0), "");
}
END_TEST

/* The steps' entrypoint for an image whose Entrypoint is image_ep (JSON or
 * NULL) and a payload image object image_json, as the spec's JSON (or
 * "none", or "error: MSG"). */
static const char *job_entrypoint(const char *image_json, const char *image_ep)
{
	static char out[512];
	struct job_payload p;
	struct ociimage img = { 0 };
	struct ociimage_opts o = { 0 };
	struct kiln_err e = { 0 };
	char *spec = strdup("{\"env\": []}"), *dumped;
	json_t *doc;

	load(&p, image_json, "");
	snprintf(img.ref, sizeof(img.ref), "img");
	img.env = json_array();
	img.entrypoint = image_ep ? json_loads(image_ep, 0, NULL) : NULL;
	if (ociimage_entrypoint(&p, &o, &img, &e)) {
		snprintf(out, sizeof(out), "error: %s", e.msg);
	} else {
		ck_assert_int_eq(ociimage_spec(&img, &spec, &e), KILN_OK);
		doc = json_loads(spec, 0, NULL);
		dumped = json_dumps(json_object_get(json_object_get(doc, "image"), "entrypoint"), JSON_COMPACT);
		snprintf(out, sizeof(out), "%s", dumped ? dumped : "none");
		free(dumped);
		json_decref(doc);
	}
	free(spec);
	ociimage_free(&img);
	payload_free(&p);
	return out;
}

START_TEST(job_entrypoint_rules)
{
	/* The image's Entrypoint runs the shell, as docker runs it with a Cmd. */
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\"}", "[\"/entry.sh\", \"-x\"]"), "[\"/entry.sh\",\"-x\"]");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\"}", NULL), "none");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\"}", "[]"), "none");
	/* image:entrypoint replaces it; [""] is none; [] keeps the image's. */
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"/bin/env\", \"A=1\"]}", "[\"/e\"]"),
			 "[\"/bin/env\",\"A=1\"]");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"\"]}", "[\"/e\"]"), "none");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": []}", "[\"/e\"]"), "[\"/e\"]");
	/* Malformed: named. */
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": \"/e\"}", NULL),
			 "error: image:entrypoint: must be a list of strings");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"/e\", 3]}", NULL),
			 "error: image:entrypoint[1]: must be a string");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"\", \"x\"]}", NULL),
			 "error: image img: entrypoint[0] is empty");
}
END_TEST

Suite *ociimage_suite(void)
{
	Suite *s = suite_create("ociimage");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, policies);
	tcase_add_test(tc, credentials_order);
	tcase_add_test(tc, config_section);
	tcase_add_test(tc, image_user);
	tcase_add_test(tc, service_command);
	tcase_add_test(tc, job_entrypoint_rules);
	suite_add_tcase(s, tc);
	return s;
}
