/* TLS as gitlab-runner does it (issue #15, points 16 and 17): the runner's
 * CA file adds to the system's CAs, client certificates, certs/<host>.crt,
 * CI_SERVER_TLS_* for the job, and names checked as libcurl checks them by
 * the API client and the git fetch alike. Certificates are made here with
 * `openssl`; the server is tests/fake-gitlab.py. */
#include <check.h>
#include <errno.h>
#include <git2.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gitlab/client.h"
#include "gitlab/tlsvars.h"
#include "job/jobspec.h"
#include "job/payload.h"
#include "lib/tls.h"
#include "runner/config.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"
#include "workspace/gitstream.h"
#include "workspace/gittls.h"

#define OSSL "openssl >/dev/null 2>&1"
#define EC "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"

static char *tmpdir(void)
{
	char *d = strdup("/tmp/kiln-tls-XXXXXX");

	ck_assert_ptr_nonnull(d);
	ck_assert_ptr_nonnull(mkdtemp(d));
	return d;
}

static void rmdir_all(char *d)
{
	test_sh("rm -rf '%s'", d);
	free(d);
}

/* d/NAME.pem and d/NAME.key: a CA. */
static void make_ca(const char *d, const char *name)
{
	ck_assert_int_eq(test_sh("cd '%s' && " OSSL " req -x509 " EC " -keyout %s.key -out %s.pem -days 2 "
				 "-subj '/CN=kiln test %s' -addext basicConstraints=critical,CA:TRUE "
				 "-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null",
				 d, name, name, name),
			 0);
}

/* d/NAME.pem and d/NAME.key, issued by CA with subject cn and the given
 * extensions (one per line). */
static void make_cert(const char *d, const char *ca, const char *name, const char *cn, const char *ext)
{
	ck_assert_int_eq(test_sh("cd '%s' && printf '%%s\\n' '%s' >%s.ext && " OSSL " req " EC
				 " -keyout %s.key -out %s.csr -subj '/CN=%s' && " OSSL " x509 -req -in %s.csr "
				 "-CA %s.pem -CAkey %s.key -CAcreateserial -out %s.pem -days 2 -extfile %s.ext",
				 d, ext, name, name, name, cn, name, ca, ca, name, name),
			 0);
}

static X509 *load_cert(const char *d, const char *name)
{
	char path[PATH_MAX];
	FILE *f;
	X509 *x;

	snprintf(path, sizeof(path), "%s/%s.pem", d, name);
	f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	ck_assert_ptr_nonnull(x);
	return x;
}

/* --- names -------------------------------------------------------------------- */

START_TEST(tls_name_ip_and_dns)
{
	char *d = tmpdir();
	X509 *ip, *dns, *cn;

	make_ca(d, "ca");
	make_cert(d, "ca", "ip", "gitlab", "subjectAltName=IP:127.0.0.1,IP:::1");
	make_cert(d, "ca", "dns", "10.0.0.1", "subjectAltName=DNS:*.example.com,DNS:gitlab.internal");
	make_cert(d, "ca", "cn", "gitlab.example.org", "basicConstraints=CA:FALSE");
	ip = load_cert(d, "ip");
	dns = load_cert(d, "dns");
	cn = load_cert(d, "cn");

	/* An address against the iPAddress SANs, as libcurl does. */
	ck_assert(kiln_tls_name_ok(ip, "127.0.0.1"));
	ck_assert(kiln_tls_name_ok(ip, "::1"));
	ck_assert(kiln_tls_name_ok(ip, "[::1]"));
	ck_assert(!kiln_tls_name_ok(ip, "127.0.0.2"));
	ck_assert(!kiln_tls_name_ok(ip, "gitlab"));
	ck_assert(!kiln_tls_name_ok(ip, "localhost"));
	/* Names against dNSName SANs; a wildcard is one whole leftmost label. */
	ck_assert(kiln_tls_name_ok(dns, "gitlab.example.com"));
	ck_assert(kiln_tls_name_ok(dns, "GitLab.Example.COM"));
	ck_assert(kiln_tls_name_ok(dns, "gitlab.internal"));
	ck_assert(!kiln_tls_name_ok(dns, "a.b.example.com"));
	ck_assert(!kiln_tls_name_ok(dns, "example.com"));
	ck_assert(!kiln_tls_name_ok(dns, "10.0.0.1")); /* the CN is no name when SANs are there */
	/* Without SANs, the CN. */
	ck_assert(kiln_tls_name_ok(cn, "gitlab.example.org"));
	ck_assert(!kiln_tls_name_ok(cn, "other.example.org"));
	X509_free(ip);
	X509_free(dns);
	X509_free(cn);
	rmdir_all(d);
}
END_TEST

/* --- a fake GitLab over TLS ------------------------------------------------------- */

struct server {
	char *dir;
	char url[128];
	int port;
};

/* fake-gitlab.py in a new folder with args, runner token "tok". */
static void server_start(struct server *s, const char *args)
{
	const char *top = getenv("top_srcdir");
	char path[PATH_MAX];
	int i;
	FILE *f;

	s->dir = tmpdir();
	ck_assert_int_eq(test_sh("python3 '%s/tests/fake-gitlab.py' --dir '%s' --runner-token tok %s "
				 ">'%s/log' 2>&1 & echo $! >'%s/pid'",
				 top ? top : ".", s->dir, args, s->dir, s->dir),
			 0);
	snprintf(path, sizeof(path), "%s/port", s->dir);
	for (i = 0; i < 300 && access(path, R_OK) < 0; i++)
		usleep(50000);
	f = fopen(path, "r");
	ck_assert_msg(f != NULL, "fake-gitlab.py did not start");
	ck_assert_int_eq(fscanf(f, "%d", &s->port), 1);
	fclose(f);
	snprintf(s->url, sizeof(s->url), "https://127.0.0.1:%d", s->port);
}

static void server_stop(struct server *s)
{
	test_sh("kill $(cat '%s/pid') 2>/dev/null", s->dir);
	rmdir_all(s->dir);
}

static enum kiln_rc verify(const char *url, const char *ca, const char *cert, const char *key, struct kiln_err *e)
{
	struct gl_client cl;
	long long id = 0;
	enum kiln_rc rc = gl_client_init(&cl, url, ca, e);

	cl.max_attempts = 1;
	if (!rc)
		rc = gl_client_tls(&cl, cert, key, e);
	if (!rc)
		rc = gl_verify(&cl, "tok", "s_0123456789ab", "kiln", &id, NULL, e);
	gl_client_free(&cl);
	return rc;
}

START_TEST(tls_api_ca_file_adds_to_system)
{
	struct server s;
	struct kiln_err e = { 0 };
	char sys[PATH_MAX], other[PATH_MAX];

	gl_global_init();
	server_start(&s, "");
	make_ca(s.dir, "other");
	snprintf(sys, sizeof(sys), "%s/ca.pem", s.dir);
	snprintf(other, sizeof(other), "%s/other.pem", s.dir);
	/* The server's CA is the "system's" (OpenSSL honours SSL_CERT_FILE);
	 * tls_ca_file names another: both are trusted, as in gitlab-runner.
	 * CURLOPT_CAINFO would have trusted the other alone. */
	setenv("SSL_CERT_FILE", sys, 1);
	ck_assert_msg(verify(s.url, other, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	/* And tls_ca_file alone still serves. */
	unsetenv("SSL_CERT_FILE");
	ck_assert_msg(verify(s.url, sys, NULL, NULL, &e) == KILN_OK, "%s", e.msg);
	/* Trusted by nobody: refused. */
	ck_assert_int_ne(verify(s.url, other, NULL, NULL, &e), KILN_OK);
	server_stop(&s);
}
END_TEST

START_TEST(tls_api_client_certificate)
{
	struct server s;
	struct kiln_err e = { 0 };
	char *d = tmpdir(), args[PATH_MAX + 32], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX];

	gl_global_init();
	make_ca(d, "clientca");
	make_cert(d, "clientca", "client", "kiln runner", "extendedKeyUsage=clientAuth");
	snprintf(args, sizeof(args), "--client-ca '%s/clientca.pem'", d);
	server_start(&s, args);
	snprintf(ca, sizeof(ca), "%s/ca.pem", s.dir);
	snprintf(cert, sizeof(cert), "%s/client.pem", d);
	snprintf(key, sizeof(key), "%s/client.key", d);
	ck_assert_int_ne(verify(s.url, ca, NULL, NULL, &e), KILN_OK);
	ck_assert_msg(verify(s.url, ca, cert, key, &e) == KILN_OK, "%s", e.msg);
	/* A key file that is not there is named. */
	ck_assert_int_ne(verify(s.url, ca, cert, "/nonexistent/client.key", &e), KILN_OK);
	ck_assert_ptr_nonnull(strstr(e.msg, "tls_key_file /nonexistent/client.key"));
	server_stop(&s);
	rmdir_all(d);
}
END_TEST

/* --- the git fetch ------------------------------------------------------------------ */

static int git_https_clone(const char *url, const char *to, char *err, size_t size)
{
	git_repository *repo = NULL;
	int r;

	test_sh("rm -rf '%s'", to);
	r = git_clone(&repo, url, to, NULL);
	if (r < 0 && git_error_last())
		snprintf(err, size, "%s", git_error_last()->message);
	git_repository_free(repo);
	return r;
}

/* s's repository g/p with f = "hi"; libgit2 with kiln's streams. */
static void make_repo(struct server *s)
{
	ck_assert_int_eq(test_sh("cd '%s' && git init -q --bare repos/g/p.git && git init -q w && cd w && "
				 "echo hi >f && git add f && git -c user.name=t -c user.email=t@t commit -qm one && "
				 "git push -q ../repos/g/p.git HEAD:refs/heads/main && "
				 "git -C ../repos/g/p.git symbolic-ref HEAD refs/heads/main",
				 s->dir),
			 0);
	ck_assert_int_ge(git_libgit2_init(), 0);
	ck_assert_int_eq(gitstream_register(), 0);
	ck_assert_int_eq(gittls_register(), 0);
}

START_TEST(tls_git_fetch_ip_san)
{
	struct server s;
	struct kiln_err e = { 0 };
	char url[256], to[PATH_MAX], ca[PATH_MAX], err[512] = "";

	/* Named by its address alone, as many internal GitLabs are. libgit2's
	 * own TLS (mbedTLS) matched dNSName SANs only and refused it. */
	server_start(&s, "--san IP:127.0.0.1 --public g/p");
	make_repo(&s);
	snprintf(ca, sizeof(ca), "%s/ca.pem", s.dir);
	snprintf(to, sizeof(to), "%s/clone", s.dir);
	ck_assert_msg(gittls_trust(ca, &e) == KILN_OK, "%s", e.msg);

	snprintf(url, sizeof(url), "https://127.0.0.1:%d/g/p.git", s.port);
	ck_assert_msg(git_https_clone(url, to, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(test_sh("test \"$(cat '%s/f')\" = hi", to), 0);

	/* The name is still checked: the certificate does not name localhost. */
	snprintf(url, sizeof(url), "https://localhost:%d/g/p.git", s.port);
	ck_assert_int_lt(git_https_clone(url, to, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "certificate refused"), "%s", err);

	/* And the chain: without the CA, refused. */
	ck_assert_msg(gittls_trust(NULL, &e) == KILN_OK, "%s", e.msg);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/g/p.git", s.port);
	ck_assert_int_lt(git_https_clone(url, to, err, sizeof(err)), 0);
	ck_assert_msg(strstr(err, "certificate refused"), "%s", err);
	git_libgit2_shutdown();
	server_stop(&s);
}
END_TEST

START_TEST(tls_git_fetch_client_certificate)
{
	struct server s;
	struct kiln_err e = { 0 };
	char *d = tmpdir(), args[PATH_MAX + 48], url[256], to[PATH_MAX], ca[PATH_MAX], cert[PATH_MAX];
	char key[PATH_MAX], err[512] = "";

	make_ca(d, "clientca");
	make_cert(d, "clientca", "client", "kiln runner", "extendedKeyUsage=clientAuth");
	snprintf(args, sizeof(args), "--client-ca '%s/clientca.pem' --public g/p", d);
	server_start(&s, args);
	make_repo(&s);
	snprintf(ca, sizeof(ca), "%s/ca.pem", s.dir);
	snprintf(to, sizeof(to), "%s/clone", s.dir);
	snprintf(cert, sizeof(cert), "%s/client.pem", d);
	snprintf(key, sizeof(key), "%s/client.key", d);
	snprintf(url, sizeof(url), "https://127.0.0.1:%d/g/p.git", s.port);
	ck_assert_msg(gittls_trust(ca, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_lt(git_https_clone(url, to, err, sizeof(err)), 0);
	/* Per host: another host's certificate is not sent. */
	ck_assert_msg(gittls_client_cert("gitlab.example.com", cert, key, &e) == KILN_OK, "%s", e.msg);
	ck_assert_int_lt(git_https_clone(url, to, err, sizeof(err)), 0);
	ck_assert_msg(gittls_client_cert("127.0.0.1", cert, key, &e) == KILN_OK, "%s", e.msg);
	ck_assert_msg(git_https_clone(url, to, err, sizeof(err)) == 0, "%s", err);
	gittls_client_certs_clear();
	ck_assert_int_lt(git_https_clone(url, to, err, sizeof(err)), 0);
	git_libgit2_shutdown();
	server_stop(&s);
	rmdir_all(d);
}
END_TEST

/* --- configuration ---------------------------------------------------------------- */

START_TEST(tls_config_keys)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	const char *half = "runners:\n"
			   "  - url: https://gitlab.example.com\n"
			   "    token: t\n"
			   "    tls_cert_file: /etc/kiln/client.pem\n";
	const char *both = "runners:\n"
			   "  - url: https://gitlab.example.com\n"
			   "    token: t\n"
			   "    tls_cert_file: /etc/kiln/client.pem\n"
			   "    tls_key_file: /etc/kiln/client.key\n";

	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_int_eq(kiln_config_parse(&cfg, "c.yml", half, strlen(half), &e), KILN_E_INVALID);
	ck_assert_msg(strstr(e.msg, "c.yml:2: runners[0]: tls_cert_file and tls_key_file go together"), "%s",
		      e.msg);
	kiln_config_free(&cfg);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_parse(&cfg, "c.yml", both, strlen(both), &e) == KILN_OK, "%s", e.msg);
	ck_assert_str_eq(cfg.runners[0].tls_cert_file, "/etc/kiln/client.pem");
	ck_assert_str_eq(cfg.runners[0].tls_key_file, "/etc/kiln/client.key");
	kiln_config_free(&cfg);
}
END_TEST

START_TEST(tls_config_certs_dir)
{
	struct kiln_config cfg;
	struct kiln_err e = { 0 };
	char *d = tmpdir(), path[PATH_MAX], want[PATH_MAX];

	ck_assert_int_eq(test_sh("cd '%s' && mkdir certs && touch certs/gitlab.example.com.crt "
				 "certs/gitlab.example.com.auth.crt certs/gitlab.example.com.auth.key "
				 "certs/10.1.2.3.crt && printf '%%s\\n' 'runners:' "
				 "'  - {url: \"https://gitlab.example.com:8443/\", token: a}' "
				 "'  - {url: \"https://10.1.2.3\", token: b, tls_ca_file: /etc/own.pem}' "
				 "'  - {url: \"https://other.example.com\", token: c}' >config.yml",
				 d),
			 0);
	snprintf(path, sizeof(path), "%s/config.yml", d);
	ck_assert_int_eq(kiln_config_defaults(&cfg, &e), KILN_OK);
	ck_assert_msg(kiln_config_load(&cfg, path, true, &e) == KILN_OK, "%s", e.msg);
	ck_assert_uint_eq(cfg.n_runners, 3);
	/* gitlab-runner's certs/<host>.crt, and .auth.crt/.auth.key. */
	snprintf(want, sizeof(want), "%s/certs/gitlab.example.com.crt", d);
	ck_assert_str_eq(cfg.runners[0].tls_ca_file, want);
	snprintf(want, sizeof(want), "%s/certs/gitlab.example.com.auth.crt", d);
	ck_assert_str_eq(cfg.runners[0].tls_cert_file, want);
	snprintf(want, sizeof(want), "%s/certs/gitlab.example.com.auth.key", d);
	ck_assert_str_eq(cfg.runners[0].tls_key_file, want);
	/* An explicit tls_ca_file wins; nothing found, nothing set. */
	ck_assert_str_eq(cfg.runners[1].tls_ca_file, "/etc/own.pem");
	ck_assert_ptr_null(cfg.runners[2].tls_ca_file);
	ck_assert_ptr_null(cfg.runners[2].tls_cert_file);
	kiln_config_free(&cfg);
	rmdir_all(d);
}
END_TEST

/* --- the job's variables ---------------------------------------------------------- */

static const struct job_var *find_var(const struct job_payload *p, const char *key)
{
	size_t i;

	for (i = 0; i < p->n_vars; i++)
		if (!strcmp(p->vars[i].key, key))
			return &p->vars[i];
	return NULL;
}

START_TEST(tls_job_variables)
{
	const char *top = getenv("top_srcdir");
	char *d = tmpdir(), path[PATH_MAX], ca[PATH_MAX], cert[PATH_MAX], key[PATH_MAX], *text, *out = NULL,
	     *spec = NULL;
	struct kiln_err e = { 0 };
	struct job_payload p = { 0 };
	const struct job_var *v;
	size_t len, out_len;
	json_t *root;

	snprintf(path, sizeof(path), "%s/examples/tiny.json", top ? top : ".");
	root = json_load_file(path, 0, NULL);
	ck_assert_ptr_nonnull(root);
	text = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	len = strlen(text);
	snprintf(ca, sizeof(ca), "%s/ca.pem", d);
	snprintf(cert, sizeof(cert), "%s/c.pem", d);
	snprintf(key, sizeof(key), "%s/c.key", d);
	ck_assert_int_eq(test_sh("cd '%s' && echo CA-CHAIN >ca.pem && echo CERT >c.pem && echo KEY >c.key", d), 0);

	/* Nothing configured: nothing added. */
	ck_assert_int_eq(gl_payload_tls_vars(text, len, NULL, NULL, NULL, NULL, &out, &out_len, &e), KILN_OK);
	ck_assert_ptr_null(out);

	ck_assert_msg(gl_payload_tls_vars(text, len, ca, cert, key, NULL, &out, &out_len, &e) == KILN_OK, "%s", e.msg);
	ck_assert_ptr_nonnull(out);
	ck_assert_msg(payload_parse(out, out_len, &p, &e) == KILN_OK, "%s", e.msg);
	v = find_var(&p, "CI_SERVER_TLS_CA_FILE");
	ck_assert_ptr_nonnull(v);
	ck_assert(v->file);
	ck_assert_str_eq(v->value, "CA-CHAIN\n");
	ck_assert_ptr_nonnull(v = find_var(&p, "CI_SERVER_TLS_CERT_FILE"));
	ck_assert(v->file);
	ck_assert_str_eq(v->value, "CERT\n");
	ck_assert_ptr_nonnull(v = find_var(&p, "CI_SERVER_TLS_KEY_FILE"));
	ck_assert_str_eq(v->value, "KEY\n");
	/* In the guest: a file whose path the variable holds. */
	ck_assert_msg(jobspec_build(&p, &spec, &e) == KILN_OK, "%s", e.msg);
	ck_assert_ptr_nonnull(strstr(spec, "\"CI_SERVER_TLS_CA_FILE\""));
	ck_assert_ptr_nonnull(strstr(spec, "\"content\":\"CA-CHAIN\\n\""));
	free(spec);
	payload_free(&p);
	free(out);

	/* The runner's short token, as gitlab-runner's ShortenToken makes it. */
	ck_assert_msg(gl_payload_tls_vars(text, len, NULL, NULL, NULL, "glrt-abcdefghijklmnop", &out, &out_len, &e) ==
			      KILN_OK,
		      "%s", e.msg);
	ck_assert_ptr_nonnull(out);
	ck_assert_msg(payload_parse(out, out_len, &p, &e) == KILN_OK, "%s", e.msg);
	ck_assert_ptr_nonnull(v = find_var(&p, "CI_RUNNER_SHORT_TOKEN"));
	ck_assert_str_eq(v->value, "abcdefghi");
	payload_free(&p);
	free(out);

	/* An unreadable CA file is named. */
	ck_assert_int_ne(gl_payload_tls_vars(text, len, "/nonexistent/ca.pem", NULL, NULL, NULL, &out, &out_len, &e),
			 KILN_OK);
	ck_assert_ptr_nonnull(strstr(e.msg, "tls_ca_file /nonexistent/ca.pem"));
	free(text);
	rmdir_all(d);
}
END_TEST

Suite *tls_suite(void)
{
	Suite *s = suite_create("tls");
	TCase *tc = tcase_create("tls");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, tls_name_ip_and_dns);
	tcase_add_test(tc, tls_api_ca_file_adds_to_system);
	tcase_add_test(tc, tls_api_client_certificate);
	tcase_add_test(tc, tls_git_fetch_ip_san);
	tcase_add_test(tc, tls_git_fetch_client_certificate);
	tcase_add_test(tc, tls_config_keys);
	tcase_add_test(tc, tls_config_certs_dir);
	tcase_add_test(tc, tls_job_variables);
	suite_add_tcase(s, tc);
	return s;
}
