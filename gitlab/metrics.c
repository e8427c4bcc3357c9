#include "gitlab/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "lib/vec.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result_t;
#else
typedef enum MHD_Result MHD_Result_t;
#endif

enum kind { COUNTER, GAUGE, HISTOGRAM };

struct series {
	char family[64];   /* the name HELP and TYPE use: name without _bucket, _sum, _count */
	char name[64];
	char labels[METRICS_MAX_LABELS];
	enum kind kind;
	double value;
};

static const struct {
	const char *name, *help;
} helps[] = {
	{ "kiln_version_info", "kiln's version" },
	{ "kiln_concurrent", "The concurrent setting: jobs at once over all runners" },
	{ "kiln_jobs", "Jobs running now, per runner" },
	{ "kiln_jobs_total", "Jobs finished, per runner and final state" },
	{ "kiln_failed_jobs_total", "Failed jobs, per failure reason sent to GitLab" },
	{ "kiln_job_duration_seconds", "Time jobs took, from acknowledgement to final update" },
	{ "kiln_vm_boot_seconds", "Time from starting a job's VM to its agent's hello (with the microvm executor, or to its workspace built meanwhile, if later)" },
	{ "kiln_request_concurrency", "Job requests in flight, per runner" },
	{ "kiln_runner_paused", "1 while a runner is paused after repeated 403 replies" },
	{ "kiln_api_request_statuses_total", "GitLab API requests, per endpoint, method and HTTP status (0: no reply)" },
	{ "kiln_api_request_retries_total", "GitLab API requests tried again, per endpoint" },
	{ "kiln_metrics_dropped_total", "Series not kept because there were too many" },
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct series *all;
static size_t n_all;
static double dropped;
static struct MHD_Daemon *daemon_;
static bool (*healthy_fn)(void *);
static void *healthy_arg;

/* Add v to (COUNTER, HISTOGRAM) or set (GAUGE) the series name{labels} of
 * family; lock held. */
static void update_locked(const char *family, const char *name, const char *labels, enum kind kind, double v)
{
	size_t i;

	for (i = 0; i < n_all; i++)
		if (!strcmp(all[i].name, name) && !strcmp(all[i].labels, labels))
			break;
	if (i == n_all) {
		if (!all && !(all = calloc(METRICS_MAX_SERIES, sizeof(*all))))
			return;
		if (n_all == METRICS_MAX_SERIES || strlen(name) >= sizeof(all[0].name) ||
		    strlen(family) >= sizeof(all[0].family) || strlen(labels) >= sizeof(all[0].labels)) {
			dropped++;
			return;
		}
		snprintf(all[i].family, sizeof(all[i].family), "%s", family);
		snprintf(all[i].name, sizeof(all[i].name), "%s", name);
		snprintf(all[i].labels, sizeof(all[i].labels), "%s", labels);
		all[i].kind = kind;
		all[i].value = 0;
		n_all++;
	}
	all[i].value = kind == GAUGE ? v : all[i].value + v;
}

void metrics_add(const char *name, const char *labels, double v)
{
	pthread_mutex_lock(&mu);
	update_locked(name, name, labels ? labels : "", COUNTER, v);
	pthread_mutex_unlock(&mu);
}

void metrics_set(const char *name, const char *labels, double v)
{
	pthread_mutex_lock(&mu);
	update_locked(name, name, labels ? labels : "", GAUGE, v);
	pthread_mutex_unlock(&mu);
}

void metrics_observe(const char *name, const char *labels, const double *bounds, size_t n_bounds, double v)
{
	char series[96], l[METRICS_MAX_LABELS + 32];
	size_t i;

	labels = labels ? labels : "";
	pthread_mutex_lock(&mu);
	snprintf(series, sizeof(series), "%s_bucket", name);
	for (i = 0; i <= n_bounds; i++) {
		if (i < n_bounds)
			snprintf(l, sizeof(l), "%s%sle=\"%g\"", labels, *labels ? "," : "", bounds[i]);
		else
			snprintf(l, sizeof(l), "%s%sle=\"+Inf\"", labels, *labels ? "," : "");
		/* Cumulative: every bucket at or above v counts it; the others
		 * still appear, with 0. */
		update_locked(name, series, l, HISTOGRAM, i == n_bounds || v <= bounds[i] ? 1 : 0);
	}
	snprintf(series, sizeof(series), "%s_sum", name);
	update_locked(name, series, labels, HISTOGRAM, v);
	snprintf(series, sizeof(series), "%s_count", name);
	update_locked(name, series, labels, HISTOGRAM, 1);
	pthread_mutex_unlock(&mu);
}

char *metrics_label(char *buf, size_t size, const char *key, const char *value)
{
	size_t n = strlen(buf);
	int k = snprintf(buf + n, size > n ? size - n : 0, "%s%s=\"", n ? "," : "", key);

	if (k < 0 || (size_t)k >= size - n) {
		buf[n] = '\0';
		return buf;
	}
	n += (size_t)k;
	for (; *value && n + 3 < size; value++) {
		if (*value == '\\' || *value == '"' || *value == '\n') {
			buf[n++] = '\\';
			buf[n++] = *value == '\n' ? 'n' : *value;
		} else {
			buf[n++] = *value;
		}
	}
	if (n + 1 < size)
		buf[n++] = '"';
	buf[n] = '\0';
	return buf;
}

/* Append to a growing text; false when out of memory or past METRICS_MAX_TEXT. */
static bool emit(char **text, size_t *len, size_t *cap, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool emit(char **text, size_t *len, size_t *cap, const char *fmt, ...)
{
	va_list ap;
	int k;

	for (;;) {
		va_start(ap, fmt);
		k = vsnprintf(*text + *len, *cap - *len, fmt, ap);
		va_end(ap);
		if (k < 0)
			return false;
		if ((size_t)k < *cap - *len) {
			*len += (size_t)k;
			return true;
		}
		if (kiln_vec_grow(text, cap, *len, (size_t)k + 1, 1, METRICS_MAX_TEXT))
			return false;
	}
}

char *metrics_render(void)
{
	size_t len = 0, cap = 4096, i, j, h;
	char *text = malloc(cap);
	bool ok = text != NULL;

	if (!text)
		return NULL;
	text[0] = '\0';
	pthread_mutex_lock(&mu);
	/* Each name once, with its HELP and TYPE, then its series. */
	for (i = 0; ok && i < n_all; i++) {
		const char *help = "";

		for (j = 0; j < i && strcmp(all[j].family, all[i].family); j++)
			;
		if (j < i)
			continue;
		for (h = 0; h < sizeof(helps) / sizeof(helps[0]); h++)
			if (!strcmp(helps[h].name, all[i].family))
				help = helps[h].help;
		ok = emit(&text, &len, &cap, "# HELP %s %s\n# TYPE %s %s\n", all[i].family, help, all[i].family,
			  all[i].kind == COUNTER ? "counter" : all[i].kind == GAUGE ? "gauge" : "histogram");
		for (j = i; ok && j < n_all; j++)
			if (!strcmp(all[j].family, all[i].family))
				ok = emit(&text, &len, &cap, "%s%s%s%s %.17g\n", all[j].name, all[j].labels[0] ? "{" : "",
					  all[j].labels, all[j].labels[0] ? "}" : "", all[j].value);
	}
	if (ok)
		ok = emit(&text, &len, &cap, "# HELP kiln_metrics_dropped_total %s\n# TYPE kiln_metrics_dropped_total counter\n"
					     "kiln_metrics_dropped_total %.17g\n",
			  helps[sizeof(helps) / sizeof(helps[0]) - 1].help, dropped);
	pthread_mutex_unlock(&mu);
	if (!ok) {
		free(text);
		return NULL;
	}
	return text;
}

void metrics_reset(void)
{
	pthread_mutex_lock(&mu);
	n_all = 0;
	dropped = 0;
	pthread_mutex_unlock(&mu);
}

static pthread_mutex_t post_mu = PTHREAD_MUTEX_INITIALIZER;
static char post_path[64];
static size_t post_max;
static metrics_post_fn post_fn;
static void *post_arg;

void metrics_set_post(const char *path, size_t max, metrics_post_fn fn, void *arg)
{
	pthread_mutex_lock(&post_mu);
	snprintf(post_path, sizeof(post_path), "%s", fn ? path : "");
	post_max = max;
	post_fn = fn;
	post_arg = arg;
	pthread_mutex_unlock(&post_mu);
}

/* A POST body being gathered across libmicrohttpd's calls. */
struct upload {
	char *buf;
	size_t len;
	bool too_big;
};

static const char *post_header(void *conn, const char *name)
{
	return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static MHD_Result_t reply(struct MHD_Connection *conn, unsigned status, const char *text)
{
	struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
	MHD_Result_t ret;

	if (!resp)
		return MHD_NO;
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static MHD_Result_t answer_post(struct MHD_Connection *conn, const char *upload_data, size_t *upload_data_size,
				void **con_cls)
{
	struct upload *u = *con_cls;
	metrics_post_fn fn;
	void *arg;
	size_t max;
	unsigned status;

	pthread_mutex_lock(&post_mu);
	fn = post_fn;
	arg = post_arg;
	max = post_max;
	pthread_mutex_unlock(&post_mu);
	if (!u) {
		if (!(u = calloc(1, sizeof(*u))))
			return MHD_NO;
		*con_cls = u;
		return MHD_YES;
	}
	if (*upload_data_size) {
		if (!u->too_big && u->len + *upload_data_size <= max) {
			char *nb = realloc(u->buf, u->len + *upload_data_size + 1);

			if (!nb)
				return MHD_NO;
			u->buf = nb;
			memcpy(u->buf + u->len, upload_data, *upload_data_size);
			u->len += *upload_data_size;
			u->buf[u->len] = '\0';
		} else {
			u->too_big = true;
		}
		*upload_data_size = 0;
		return MHD_YES;
	}
	if (u->too_big)
		return reply(conn, 413, "too large\n"); /* the constant was renamed across versions */
	status = fn ? fn(arg, u->buf ? u->buf : "", u->len, post_header, conn) : MHD_HTTP_NOT_FOUND;
	return reply(conn, status, status < 300 ? "ok\n" : "refused\n");
}

static void request_done(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct upload *u = *con_cls;

	(void)cls;
	(void)conn;
	(void)toe;
	if (u) {
		free(u->buf);
		free(u);
		*con_cls = NULL;
	}
}

static MHD_Result_t answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct MHD_Response *resp;
	unsigned status = MHD_HTTP_OK;
	char *body = NULL;
	const char *ctype = "text/plain; charset=utf-8";
	MHD_Result_t ret;

	if (!strcmp(method, "POST")) {
		bool route;

		pthread_mutex_lock(&post_mu);
		route = post_fn && !strcmp(url, post_path);
		pthread_mutex_unlock(&post_mu);
		if (route)
			return answer_post(conn, upload_data, upload_data_size, con_cls);
	}
	if (strcmp(method, "GET") && strcmp(method, "HEAD")) {
		body = strdup("method not allowed\n");
		status = MHD_HTTP_METHOD_NOT_ALLOWED;
	} else if (!strcmp(url, "/metrics")) {
		body = metrics_render();
		ctype = "text/plain; version=0.0.4; charset=utf-8";
		if (!body) {
			body = strdup("out of memory\n");
			status = MHD_HTTP_INTERNAL_SERVER_ERROR;
		}
	} else if (!strcmp(url, "/healthz")) {
		bool ok = !healthy_fn || healthy_fn(healthy_arg);
		body = strdup(ok ? "ok\n" : "stopping\n");
		status = ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE;
	} else {
		body = strdup("not found: /metrics or /healthz\n");
		status = MHD_HTTP_NOT_FOUND;
	}
	if (!body)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", ctype);
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return ret;
}

/* host:port into sa; false when it is not an address. */
static bool parse_address(const char *address, struct sockaddr_storage *sa, socklen_t *len)
{
	char host[128];
	const char *colon;
	char *end;
	long port;

	if (address[0] == '[') {
		const char *close = strchr(address, ']');
		if (!close || close[1] != ':' || (size_t)(close - address - 1) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(close - address - 1), address + 1);
		colon = close + 1;
	} else {
		colon = strrchr(address, ':');
		if (!colon || (size_t)(colon - address) >= sizeof(host))
			return false;
		snprintf(host, sizeof(host), "%.*s", (int)(colon - address), address);
	}
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return false;
	memset(sa, 0, sizeof(*sa));
	if (!strchr(host, ':')) {
		struct sockaddr_in *a = (struct sockaddr_in *)sa;

		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		*len = sizeof(*a);
		if (!host[0])
			a->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (!strcmp(host, "localhost"))
			a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		else if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return false;
		return true;
	}
	{
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return false;
		*len = sizeof(*a);
		return true;
	}
}

enum kiln_rc metrics_serve(const char *address, bool (*healthy)(void *arg), void *arg, struct kiln_err *e)
{
	struct sockaddr_storage sa;
	socklen_t len = 0;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;

	if (!parse_address(address, &sa, &len))
		return kiln_fail(e, KILN_E_INVALID, "listen_address '%s': expected host:port, [v6]:port or :port", address);
	if (sa.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	healthy_fn = healthy;
	healthy_arg = arg;
	daemon_ = MHD_start_daemon(flags, 0, NULL, NULL, answer, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
				   MHD_OPTION_CONNECTION_LIMIT, 32u, MHD_OPTION_CONNECTION_TIMEOUT, 10u,
				   MHD_OPTION_NOTIFY_COMPLETED, request_done, NULL, MHD_OPTION_END);
	if (!daemon_)
		return kiln_fail(e, KILN_E_IO, "listen_address %s: cannot listen there (in use, or not this host's)",
				 address);
	return KILN_OK;
}

void metrics_stop(void)
{
	if (daemon_)
		MHD_stop_daemon(daemon_);
	daemon_ = NULL;
}
