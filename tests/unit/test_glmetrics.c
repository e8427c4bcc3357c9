/* The metrics endpoint (gitlab/metrics): the text format and its HTTP server. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gitlab/metrics.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static char *http_get(int port, const char *path)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	char req[128], *buf = calloc(1, 65536);
	size_t n = 0;
	ssize_t r;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\n\r\n", path);
	ck_assert_int_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while ((r = read(fd, buf + n, 65535 - n)) > 0)
		n += (size_t)r;
	close(fd);
	return buf;
}

static bool unless_stopping(void *arg)
{
	return !*(bool *)arg;
}

START_TEST(metrics_text_and_http)
{
	char l[METRICS_MAX_LABELS] = "", addr[32], *text;
	struct kiln_err e = { 0 };
	bool stopping = false;
	int port = 0, i;

	metrics_reset();
	metrics_label(metrics_label(l, sizeof(l), "runner", "a \"quoted\" name\\x"), sizeof(l), "state", "success");
	ck_assert_str_eq(l, "runner=\"a \\\"quoted\\\" name\\\\x\",state=\"success\"");
	metrics_add("kiln_jobs_total", l, 1);
	metrics_add("kiln_jobs_total", l, 2);
	metrics_set("kiln_concurrent", "", 4);
	metrics_set("kiln_concurrent", "", 2);
	text = metrics_render();
	ck_assert_ptr_nonnull(strstr(text, "# TYPE kiln_jobs_total counter\nkiln_jobs_total{" ));
	ck_assert_ptr_nonnull(strstr(text, ",state=\"success\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE kiln_concurrent gauge\nkiln_concurrent 2\n"));
	free(text);

	/* A histogram: cumulative buckets, +Inf, sum and count under one TYPE. */
	{
		static const double b[] = { 1, 5 };
		char want[400];

		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 0.5);
		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 3);
		metrics_observe("kiln_vm_boot_seconds", "", b, 2, 9);
		text = metrics_render();
		snprintf(want, sizeof(want),
			 "# TYPE kiln_vm_boot_seconds histogram\n"
			 "kiln_vm_boot_seconds_bucket{le=\"1\"} 1\n"
			 "kiln_vm_boot_seconds_bucket{le=\"5\"} 2\n"
			 "kiln_vm_boot_seconds_bucket{le=\"+Inf\"} 3\n"
			 "kiln_vm_boot_seconds_sum 12.5\n"
			 "kiln_vm_boot_seconds_count 3\n");
		ck_assert_msg(strstr(text, want), "no histogram in:\n%s", text);
		free(text);
	}

	/* Over HTTP; a port that may be taken is tried again. */
	for (i = 0; i < 20; i++) {
		port = 20000 + (int)(getpid() * 7 + i * 131) % 30000;
		snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
		if (metrics_serve(addr, unless_stopping, &stopping, &e) == KILN_OK)
			break;
	}
	ck_assert_msg(i < 20, "%s", e.msg);
	text = http_get(port, "/metrics");
	ck_assert_int_eq(strncmp(text, "HTTP/1.", 7), 0);
	ck_assert_ptr_nonnull(strstr(text, " 200 "));
	ck_assert_ptr_nonnull(strstr(text, "text/plain; version=0.0.4"));
	ck_assert_ptr_nonnull(strstr(text, "kiln_concurrent 2\n"));
	free(text);
	text = http_get(port, "/healthz");
	ck_assert_ptr_nonnull(strstr(text, "200"));
	free(text);
	stopping = true;
	text = http_get(port, "/healthz");
	ck_assert_ptr_nonnull(strstr(text, "503"));
	free(text);
	text = http_get(port, "/nope");
	ck_assert_ptr_nonnull(strstr(text, "404"));
	free(text);
	metrics_stop();
	ck_assert_int_eq(metrics_serve("nonsense", NULL, NULL, &e), KILN_E_INVALID);
	metrics_reset();
}
END_TEST

Suite *glmetrics_suite(void)
{
	Suite *s = suite_create("glmetrics");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, metrics_text_and_http);
	suite_add_tcase(s, tc);
	return s;
}
