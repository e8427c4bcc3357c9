/* Repository URLs (workspace/url): credentials redacted from what is logged,
 * parsed, and scrubbed from messages. */
#include <stdio.h>
#include <string.h>

#include "workspace/url.h"
#include "workspace/workspace.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

#define SECRET "s3ntinelT0ken"

START_TEST(redact_urls)
{
	static const struct { const char *in, *out; } cases[] = {
		{ "https://gitlab-ci-token:tok123@gitlab.example.com/group/p.git",
		  "https://gitlab.example.com/group/p.git" },
		{ "https://glpat-abcdef@gitlab.com/a/b.git", "https://gitlab.com/a/b.git" },
		{ "https://user:p%40ss@host:8443/x.git", "https://host:8443/x.git" },
		{ "http://u:p@ss@host/x", "http://host/x" },
		{ "https://host/path/with@sign.git", "https://host/path/with@sign.git" },
		{ "https://gitlab.com/a/b.git", "https://gitlab.com/a/b.git" },
		{ "ssh://git:secret@host:2222/a/b.git", "ssh://git@host:2222/a/b.git" },
		{ "ssh://git@host/a/b.git", "ssh://git@host/a/b.git" },
		{ "ssh://:pw@host/a.git", "ssh://host/a.git" },
		{ "git@gitlab.com:group/p.git", "git@gitlab.com:group/p.git" },
		{ "git://host/p.git", "git://host/p.git" },
		{ "/srv/repo.git", "/srv/repo.git" },
		{ "file:///srv/repo.git", "file:///srv/repo.git" },
	};
	char out[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_ptr_eq(ws_redact_url(cases[i].in, out, sizeof(out)), out);
		ck_assert_str_eq(out, cases[i].out);
	}
	ck_assert_ptr_null(ws_redact_url("https://a:b@host/x", out, 8));      /* does not fit */
	ck_assert_ptr_null(ws_redact_url("https://host/a b", out, sizeof(out))); /* space */
	ck_assert_ptr_null(ws_redact_url("", out, sizeof(out)));
}
END_TEST

START_TEST(url_credentials_parsed_and_scrubbed)
{
	struct ws_url u, c;
	struct kiln_err e = { 0 };
	char msg[128];

	ck_assert_int_eq(ws_url_parse("https://gitlab-ci-token:p%40ss%3Aw@GitLab.Example.com:8443/g/p.git", &u, &e), KILN_OK);
	ck_assert_int_eq(u.kind, WS_URL_HTTP);
	ck_assert_str_eq(u.user, "gitlab-ci-token");
	ck_assert_str_eq(u.pass, "p@ss:w");
	ck_assert_str_eq(u.host, "gitlab.example.com:8443");
	snprintf(msg, sizeof(msg), "failed: p@ss:w and gitlab-ci-token:p%%40ss%%3Aw@x");
	ws_url_scrub(&u, msg, sizeof(msg));
	ck_assert_msg(strstr(msg, "p@ss") == NULL && strstr(msg, "p%40ss") == NULL, "%s", msg);
	/* A token alone in the user part is scrubbed too. */
	ck_assert_int_eq(ws_url_parse("https://" SECRET "@h/x", &c, &e), KILN_OK);
	ck_assert_str_eq(c.user, SECRET);
	snprintf(msg, sizeof(msg), "401 for " SECRET);
	ws_url_scrub(&c, msg, sizeof(msg));
	ck_assert_str_eq(msg, "401 for ***");
	/* Short and star-made secrets are scrubbed without looping. */
	ck_assert_int_eq(ws_url_parse("https://u:*@h/x", &c, &e), KILN_OK);
	snprintf(msg, sizeof(msg), "a*b");
	ws_url_scrub(&c, msg, sizeof(msg));
	ck_assert_str_eq(msg, "a***b");
	/* Submodules on the same host inherit, others do not. */
	ck_assert_int_eq(ws_url_parse("https://gitlab.example.com:8443/g/sub.git", &c, &e), KILN_OK);
	ws_url_inherit(&c, &u);
	ck_assert_str_eq(c.pass, "p@ss:w");
	ck_assert_int_eq(ws_url_parse("https://other.example.com/g/sub.git", &c, &e), KILN_OK);
	ws_url_inherit(&c, &u);
	ck_assert_str_eq(c.pass, "");
	ck_assert_int_eq(ws_url_parse("git@host:g/p.git", &c, &e), KILN_OK);
	ck_assert_int_eq(c.kind, WS_URL_SSH);
	ck_assert_str_eq(c.user, "git");
	ck_assert_str_eq(c.host, "host");
	{
		static const char *const rel[][3] = {
			{ "https://host/group/proj.git", "../sub.git", "https://host/group/sub.git" },
			{ "https://host/group/proj.git/", "../../other/sub.git", "https://host/other/sub.git" },
			{ "https://host/proj.git", "../../../sub.git", "https://host/sub.git" },
			{ "file:///tmp/x/work", "../sub.git", "file:///tmp/x/sub.git" },
			{ "/tmp/x/work", "./sub", "/tmp/x/work/sub" },
			{ "git@host:group/proj.git", "../sub.git", "git@host:group/sub.git" },
			{ "git@host:group/proj.git", "../../sub.git", "git@host:sub.git" },
			{ "https://host/g/p.git", "https://elsewhere/s.git", "https://elsewhere/s.git" },
		};
		char res[256];
		size_t i;

		for (i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
			ck_assert_int_eq(ws_url_resolve(rel[i][0], rel[i][1], res, sizeof(res), &e), KILN_OK);
			ck_assert_str_eq(res, rel[i][2]);
		}
	}
	ck_assert_int_eq(ws_url_parse("./rel/repo", &c, &e), KILN_OK);
	ck_assert_int_eq(c.kind, WS_URL_LOCAL);
	ws_url_wipe(&u);
	ck_assert_str_eq(u.pass, "");
}
END_TEST

Suite *wsurl_suite(void)
{
	Suite *s = suite_create("wsurl");
	TCase *tc;

	tc = tcase_create("core");
	tcase_add_test(tc, redact_urls);
	tcase_add_test(tc, url_credentials_parsed_and_scrubbed);
	suite_add_tcase(s, tc);
	return s;
}
