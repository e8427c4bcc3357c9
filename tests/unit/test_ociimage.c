/* job/ociimage.c's gitlab-runner semantics (pull_policy against
 * allowed_pull_policies, the credential order, a service's command from
 * its image), the `oci:` config section and the agent's User resolution. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/imageuser.h"
#include "job/ociimage.h"
#include "job/services.h"
#include "oci/dockercfg.h"
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
	struct ociimage_registry regs[] = { { "reg.example:5000", "cfguser", "cfgpass", "/ca.pem", false, NULL, 0 },
					    { "docker.io", "hubuser", "hubpass", NULL, false, NULL, 0 } };
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
			   "  disable_entrypoint_overwrite: true\n"
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
	ck_assert(cfg.oci.disable_entrypoint_overwrite);
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

START_TEST(config_services_keys)
{
	static const char *const bad[][2] = {
		{ "oci:\n  allowed_images: ruby\n", "x.yml:2: oci.allowed_images: expected a list of 1 to 64 image patterns" },
		{ "oci:\n  allowed_services: [[a]]\n", "oci.allowed_services: [0]: expected an image pattern" },
		{ "oci:\n  services_limit: -2\n", "oci.services_limit: -2 out of range -1..16" },
		{ "oci:\n  wait_for_services_timeout: soon\n", "oci.wait_for_services_timeout: expected an integer" },
		{ "oci:\n  services:\n    - alias: db\n", "x.yml:3: oci.services[0]: missing key 'name'" },
		{ "oci:\n  services:\n    - name: a\n      environment: [X=1]\n",
		  "oci.services[0]: unknown key 'environment'" },
		{ "oci:\n  services:\n    - name: a\n      variables: [X]\n", "oci.services[0]: variables: expected a mapping" },
		{ "oci:\n  services: {name: a}\n", "oci.services: expected a list" },
	};
	const char *good = "oci:\n  allowed_images: [\"ruby:*\", \"registry.example.com/**\"]\n"
			   "  allowed_services: [\"postgres:*\"]\n  services_limit: 2\n  wait_for_services_timeout: -1\n"
			   "  services:\n    - name: docker:dind\n      alias: docker\n      entrypoint: [dockerd-entrypoint.sh]\n"
			   "      command: [--tls=false]\n      variables:\n        DOCKER_TLS_CERTDIR: \"\"\n";
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	struct ociimage_opts o;
	struct ociimage_registry regs[1];
	json_t *svc;
	size_t i;

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ociimage_opts_init(&o, &cfg, regs);
	ck_assert_int_eq(o.services_limit, -1);
	ck_assert_int_eq(o.wait_services_s, 30);
	ck_assert_ptr_null(o.services);
	ck_assert_msg(kiln_config_parse(&cfg, "good.yml", good, strlen(good), &e) == KILN_OK, "%s", e.msg);
	ociimage_opts_init(&o, &cfg, regs);
	ck_assert_uint_eq(o.n_allowed_images, 2);
	ck_assert_str_eq(o.allowed_images[1], "registry.example.com/**");
	ck_assert_uint_eq(o.n_allowed_services, 1);
	ck_assert_int_eq(o.services_limit, 2);
	ck_assert_int_eq(o.wait_services_s, -1);
	ck_assert_uint_eq(json_array_size(o.services), 1);
	svc = json_array_get(o.services, 0);
	ck_assert_str_eq(json_string_value(json_object_get(svc, "name")), "docker:dind");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc, "entrypoint"), 0)), "dockerd-entrypoint.sh");
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(svc, "command"), 0)), "--tls=false");
	ck_assert_str_eq(json_string_value(json_object_get(json_array_get(json_object_get(svc, "variables"), 0), "key")),
			 "DOCKER_TLS_CERTDIR");
	kiln_config_free(&cfg);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
		ck_assert_int_ne(kiln_config_parse(&cfg, "x.yml", bad[i][0], strlen(bad[i][0]), &e), KILN_OK);
		ck_assert_msg(strstr(e.msg, bad[i][1]), "%s: %s", bad[i][0], e.msg);
		kiln_config_free(&cfg);
	}
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

/* What the agent reads to run an exec step as a user, or to add one. */
START_TEST(exec_user_entries)
{
	const char *passwd = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n"
			     "runner:x:1234:4321::/home/runner:/bin/sh\nbroken\nsvc:x:999:999::/srv\n";
	const char *group = "root:x:0:\nsudo:x:27:admin,runner\ndocker:x:998:runner\nrunners:x:77:runnerx\nbad:x:z:runner\n";
	gid_t g[8];
	char home[64];

	ck_assert_int_eq(passwd_home(passwd, "runner", home, sizeof(home)), 0);
	ck_assert_str_eq(home, "/home/runner");
	ck_assert_int_eq(passwd_home(passwd, "svc", home, sizeof(home)), 0);
	ck_assert_str_eq(home, "/srv");
	ck_assert_int_eq(passwd_home(passwd, "runne", home, sizeof(home)), -1);
	ck_assert_int_eq(passwd_home(passwd, "broken", home, sizeof(home)), -1);
	ck_assert_int_eq(passwd_home(passwd, "runner", home, 5), -1);
	/* Past 1000 and past 1234; nobody's 65534 does not count. */
	ck_assert_uint_eq(passwd_free_id(passwd), 1235);
	ck_assert_uint_eq(passwd_free_id("root:x:0:0::/:/bin/sh\n"), 1001);
	ck_assert_uint_eq(passwd_free_id(NULL), 1001);
	ck_assert_uint_eq(group_ids_of(group, "runner", g, 8), 2);
	ck_assert(g[0] == 27 && g[1] == 998);
	ck_assert_uint_eq(group_ids_of(group, "runner", g, 1), 1);
	ck_assert_uint_eq(group_ids_of(group, "nobody", g, 8), 0);
	ck_assert(user_name_ok("runner") && user_name_ok("_svc-1"));
	ck_assert(!user_name_ok("") && !user_name_ok("Root") && !user_name_ok("a:b") && !user_name_ok("a\nb") &&
		  !user_name_ok("1abc") && !user_name_ok("abcdefghijklmnopqrstuvwxyz0123456"));
}
END_TEST

static bool no_override;  /* job_entrypoint's disable_entrypoint_overwrite */
static char said[2048];   /* its notices, a line each */

static void keep_notice(void *arg, const char *line)
{
	size_t n = strlen(said);

	(void)arg;
	snprintf(said + n, sizeof(said) - n, "%s\n", line);
}

/* The argv ociimage_service_spec gives a service with entrypoint ep and
 * command cmd (NULL: none) in an image with Entrypoint iep and Cmd icmd
 * (JSON or NULL), as one space-joined string; "" when it fails. The
 * service's entrypoint is dropped first under no_override. */
static const char *service_argv(const char *iep, const char *icmd, const char **ep, size_t n_ep, const char **cmd,
				size_t n_cmd)
{
	static char out[256];
	struct ociimage img = { .user = "redis" };
	struct job_service svc = { .name = "redis:7", .entrypoint = ep, .n_entrypoint = n_ep, .command = cmd,
				   .n_command = n_cmd };
	struct ociimage_opts o = { .disable_entrypoint_overwrite = no_override, .notice = keep_notice };
	struct kiln_err e = { 0 };
	char *spec = strdup("{\"mode\":\"service\",\"argv\":[],\"env\":[[\"A\",\"job\"]]}");
	json_t *doc, *v;
	size_t i, len = 0;

	img.env = json_pack("[[ss][ss]]", "A", "image", "B", "image");
	img.entrypoint = iep ? json_loads(iep, 0, NULL) : NULL;
	img.cmd = icmd ? json_loads(icmd, 0, NULL) : NULL;
	out[0] = '\0';
	ociimage_service_entrypoint(&o, &svc);
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
	/* disable_entrypoint_overwrite: the image's Entrypoint, the service's
	 * command or else the image's Cmd (docker without an Entrypoint given). */
	no_override = true;
	said[0] = '\0';
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", ep, 2, cmd, 1),
			 "docker-entrypoint.sh echo hi");
	ck_assert_str_eq(said, "WARNING: service redis:7: Entrypoint override disabled (oci: "
			       "disable_entrypoint_overwrite): its entrypoint is ignored\n");
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", ep, 2, NULL, 0),
			 "docker-entrypoint.sh redis-server");
	said[0] = '\0';
	ck_assert_str_eq(service_argv("[\"docker-entrypoint.sh\"]", "[\"redis-server\"]", NULL, 0, cmd, 1),
			 "docker-entrypoint.sh echo hi");
	ck_assert_str_eq(said, "");
	no_override = false;
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
	struct ociimage_opts o = { .disable_entrypoint_overwrite = no_override, .notice = keep_notice };
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
	/* disable_entrypoint_overwrite: the image's stays, [""] too, with a warning. */
	no_override = true;
	said[0] = '\0';
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"/bin/env\"]}", "[\"/e\"]"), "[\"/e\"]");
	ck_assert_msg(strstr(said, "image:entrypoint [\"/bin/env\"] is ignored\nimage entrypoint [\"/e\"] runs"), "%s",
		      said);
	said[0] = '\0';
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"\"]}", NULL), "none");
	ck_assert_msg(strstr(said, "WARNING: Entrypoint override disabled (oci: disable_entrypoint_overwrite): "
				   "image:entrypoint [\"\"] is ignored"),
		      "%s", said);
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\", \"entrypoint\": [\"\"]}", "[\"/e\"]"), "[\"/e\"]");
	ck_assert_str_eq(job_entrypoint("{\"name\": \"a\"}", "[\"/e\"]"), "[\"/e\"]");
	no_override = false;
}
END_TEST

/* oci_dockercfg_lookup on text for host: "user:pass", or the error's text. */
static const char *cfg_lookup(const char *text, const char *host)
{
	static char out[600];
	char u[OCI_DOCKERCFG_FIELD_MAX], pw[OCI_DOCKERCFG_FIELD_MAX];
	struct kiln_err e = { 0 };

	if (oci_dockercfg_lookup(text, strlen(text), "/c.json", host, u, pw, &e) == KILN_OK)
		snprintf(out, sizeof(out), "%s:%s", u, pw);
	else
		snprintf(out, sizeof(out), "%s", e.msg);
	ck_assert_ptr_null(strchr(out, '\n'));
	return out;
}

START_TEST(docker_config_json)
{
	/* As docker login writes it: auth is base64 of user:password
	 * (dTpwOnc= is "u:p:w", the password keeps its colon). */
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r.example:5000\": {\"auth\": \"dTpwOnc=\"}}}", "r.example:5000"),
			 "u:p:w");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"https://index.docker.io/v1/\": {\"auth\": \"dTpwOnc=\"}}}",
				    "docker.io"),
			 "u:p:w");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"R.example\": {\"username\": \"a\", \"password\": \"b\"}}}",
				    "r.example"),
			 "a:b");
	/* auth wins over username and password. */
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"dTpwOnc=\", \"username\": \"x\", "
				    "\"password\": \"y\"}}}", "r"),
			 "u:p:w");
	/* Credential helpers for this host (or for all): refused, saying so. */
	ck_assert_str_eq(cfg_lookup("{\"credHelpers\": {\"r\": \"gcr\"}, \"auths\": {\"r\": {}}}", "r"),
			 "/c.json: credHelpers[\"r\"] is not supported: kiln runs no credential helper; put the "
			 "credentials in auths");
	ck_assert_str_eq(cfg_lookup("{\"credHelpers\": {\"gcr.io\": \"gcr\"}, \"auths\": {\"r\": {\"auth\": "
				    "\"dTpwOnc=\"}}}", "r"),
			 "u:p:w");
	ck_assert_str_eq(cfg_lookup("{\"credsStore\": \"desktop\", \"auths\": {\"r\": {}}}", "r"),
			 "/c.json: credsStore (docker-credential-desktop) is not supported: kiln runs no credential "
			 "helper; put the credentials in auths");
	/* Hostile and malformed files: one line naming the file and key. */
	ck_assert_str_eq(cfg_lookup("{\"auths\": ", "r"), "/c.json: line 1: unexpected token near end of file");
	ck_assert_str_eq(cfg_lookup("[1]", "r"), "/c.json: not a JSON object");
	ck_assert_str_eq(cfg_lookup("{\"auths\": []}", "r"), "/c.json: auths: not an object");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {}, \"credHelpers\": 1}", "r"), "/c.json: credHelpers: not an object");
	ck_assert_str_eq(cfg_lookup("{\"credsStore\": 5}", "r"), "/c.json: credsStore: not a string");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": \"x\"}}", "r"), "/c.json: auths[\"r\"]: not an object");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": 7}}}", "r"),
			 "/c.json: auths[\"r\"]: auth, username, password and identitytoken must be strings");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"!!!!\"}}}", "r"),
			 "/c.json: auths[\"r\"].auth: not base64 (of user:password)");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"dTpw\\n\"}}}", "r"),
			 "/c.json: auths[\"r\"].auth: not base64 (of user:password)");
	/* "dXNlcg==" is "user": no colon; "OnA=" is ":p": no user; "dQBwOnc=" holds a NUL. */
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"dXNlcg==\"}}}", "r"),
			 "/c.json: auths[\"r\"].auth: not user:password (no ':')");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"OnA=\"}}}", "r"),
			 "/c.json: auths[\"r\"].auth: not user:password (the user is empty)");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"auth\": \"dQBwOnc=\"}}}", "r"),
			 "/c.json: auths[\"r\"].auth: holds a NUL byte");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"username\": \"a\"}}}", "r"),
			 "/c.json: auths[\"r\"]: username without password");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {\"identitytoken\": \"t\"}}}", "r"),
			 "/c.json: auths[\"r\"].identitytoken: not supported by kiln (use auth or username and password)");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r\": {}}}", "r"),
			 "/c.json: auths[\"r\"]: no auth and no username (a credential helper's entry? kiln runs none)");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"r/x\\ny\": {}}}", "r"),
			 "/c.json: auths[\"r/x?y\"]: no auth and no username (a credential helper's entry? kiln runs none)");
	ck_assert_str_eq(cfg_lookup("{\"auths\": {\"other\": {\"auth\": \"dTpwOnc=\"}}}", "r"),
			 "/c.json: auths has no entry for r");
	ck_assert_str_eq(cfg_lookup("{}", "r"), "/c.json: auths has no entry for r");
}
END_TEST

/* kiln_config_parse of text, with F (a config.json) written first. */
static enum kiln_rc parse_with_file(struct kiln_config *cfg, const char *text, const char *json, struct kiln_err *e)
{
	FILE *f = fopen("/tmp/kiln-test-dockercfg.json", "w");

	ck_assert_ptr_nonnull(f);
	fputs(json, f);
	fclose(f);
	ck_assert_int_eq(kiln_config_defaults(cfg, e), KILN_OK);
	return kiln_config_parse(cfg, "c.yml", text, strlen(text), e);
}

START_TEST(config_docker_config_and_mirrors)
{
	const char *good = "oci:\n  registries:\n    - host: r.example:5000\n"
			   "      docker_config: /tmp/kiln-test-dockercfg.json\n"
			   "    - host: docker.io\n      mirrors: [127.0.0.1:5000, 'http://m.example/', "
			   "'https://m2.example:443']\n";
	const char *both = "oci:\n  registries:\n    - host: r.example:5000\n      username: a\n      password: b\n"
			   "      docker_config: /tmp/kiln-test-dockercfg.json\n";
	const char *missing = "oci:\n  registries:\n    - host: r.example:5000\n"
			      "      docker_config: /nonexistent/config.json\n";
	const char *bad_mirror = "oci:\n  registries:\n    - host: docker.io\n      mirrors: [ok.example, 'ftp://x']\n";
	const char *not_list = "oci:\n  registries:\n    - host: docker.io\n      mirrors: m.example\n";
	struct kiln_config cfg;
	struct kiln_err e = { 0 };

	ck_assert_msg(parse_with_file(&cfg, good, "{\"auths\": {\"r.example:5000\": {\"auth\": \"dTpwOnc=\"}}}",
				      &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(cfg.oci.registries[0].username, "u");
	ck_assert_str_eq(cfg.oci.registries[0].password, "p:w");
	ck_assert_uint_eq(cfg.oci.registries[1].n_mirrors, 3);
	ck_assert_str_eq(cfg.oci.registries[1].mirrors[0].host, "127.0.0.1:5000");
	ck_assert(!cfg.oci.registries[1].mirrors[0].insecure);
	ck_assert_str_eq(cfg.oci.registries[1].mirrors[1].host, "m.example");
	ck_assert(cfg.oci.registries[1].mirrors[1].insecure);
	ck_assert_str_eq(cfg.oci.registries[1].mirrors[2].host, "m2.example:443");
	kiln_config_free(&cfg);
	/* The file's own errors name the config line, the file and the key. */
	ck_assert_int_ne(parse_with_file(&cfg, good, "{\"credsStore\": \"pass\"}", &e), KILN_OK);
	ck_assert_str_eq(e.msg, "c.yml:3: oci.registries[0]: docker_config: /tmp/kiln-test-dockercfg.json: credsStore "
				"(docker-credential-pass) is not supported: kiln runs no credential helper; put the "
				"credentials in auths");
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, good, "{\"auths\": {\"r.example:5000\": {\"auth\": \"x\"}}}", &e),
			 KILN_OK);
	ck_assert_msg(strstr(e.msg, "/tmp/kiln-test-dockercfg.json: auths[\"r.example:5000\"].auth: not base64"), "%s",
		      e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, good, "not json", &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "c.yml:3: oci.registries[0]: docker_config: /tmp/kiln-test-dockercfg.json: line 1:"),
		      "%s", e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, both, "{}", &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "docker_config and username/password: set one of them"), "%s", e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, missing, "{}", &e), KILN_OK);
	ck_assert_str_eq(e.msg, "c.yml:3: oci.registries[0]: docker_config: /nonexistent/config.json: No such file or "
				"directory");
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, bad_mirror, "{}", &e), KILN_OK);
	ck_assert_str_eq(e.msg, "c.yml:4: oci.registries: mirrors[1]: 'ftp://x' is not a host[:port] (http:// for "
				"plain http)");
	kiln_config_free(&cfg);
	ck_assert_int_ne(parse_with_file(&cfg, not_list, "{}", &e), KILN_OK);
	ck_assert_msg(strstr(e.msg, "mirrors: expected a list of at most 8 hosts"), "%s", e.msg);
	kiln_config_free(&cfg);
	unlink("/tmp/kiln-test-dockercfg.json");
}
END_TEST

START_TEST(service_pull_policy)
{
	struct job_payload p;
	struct job_services svcs = { 0 };
	struct ociimage_opts o = { .allowed = { PULL_ALWAYS, PULL_NEVER }, .n_allowed = 2 };
	struct ociimage img;
	struct kiln_err e = { 0 };
	char dir[] = "/tmp/kiln-test-svcpp-XXXXXX";

	ck_assert_ptr_nonnull(mkdtemp(dir));
	o.state_dir = dir;
	/* The job's image says always; each service pulls by its own policy
	 * (gitlab-runner's services[].pull_policy), never touching the
	 * network here. */
	load(&p, "{\"name\": \"alpine\", \"pull_policy\": \"always\"}",
	     ", \"services\": [{\"name\": \"reg.example/db:1\", \"pull_policy\": \"never\"}, "
	     "{\"name\": \"reg.example/cache:1\", \"pull_policy\": [\"if-not-present\"]}, "
	     "{\"name\": \"reg.example/x:1\", \"pull_policy\": 5}]");
	ck_assert_msg(services_parse(&p, NULL, &svcs, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(svcs.n, 3);
	ck_assert_int_eq(ociimage_prepare_ref(&p, &o, svcs.v[0].name, svcs.v[0].pull_policy, &img, &e),
			 KILN_E_NOTFOUND);
	ck_assert_str_eq(e.msg, "image reg.example/db:1 is not in the store and pull_policy is never");
	ociimage_free(&img);
	ck_assert_int_eq(ociimage_prepare_ref(&p, &o, svcs.v[1].name, svcs.v[1].pull_policy, &img, &e),
			 KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "pull_policy ([if-not-present]) defined in GitLab pipeline config is not one of the "
				"allowed_pull_policies ([always, never])");
	ociimage_free(&img);
	ck_assert_int_eq(ociimage_prepare_ref(&p, &o, svcs.v[2].name, svcs.v[2].pull_policy, &img, &e),
			 KILN_E_INVALID);
	ck_assert_str_eq(e.msg, "pull_policy: must be a string or a list");
	ociimage_free(&img);
	services_free(&svcs);
	payload_free(&p);
	rmdir(dir);
}
END_TEST

Suite *ociimage_suite(void)
{
	Suite *s = suite_create("ociimage");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, policies);
	tcase_add_test(tc, credentials_order);
	tcase_add_test(tc, config_section);
	tcase_add_test(tc, config_services_keys);
	tcase_add_test(tc, image_user);
	tcase_add_test(tc, exec_user_entries);
	tcase_add_test(tc, service_command);
	tcase_add_test(tc, job_entrypoint_rules);
	tcase_add_test(tc, docker_config_json);
	tcase_add_test(tc, service_pull_policy);
	tcase_add_test(tc, config_docker_config_and_mirrors);
	suite_add_tcase(s, tc);
	return s;
}
