/* Prometheus metrics of `kiln run`, and the HTTP endpoint that serves them
 * (libmicrohttpd) on the configuration's listen_address:
 *
 *   GET /metrics   the text exposition format (version 0.0.4)
 *   GET /healthz   200 "ok" while kiln takes jobs, 503 once it stops
 *
 * Series are counters, gauges or histograms named kiln_*, after gitlab-runner's
 * gitlab_runner_* (protocol reference, section 7). At most METRICS_MAX_SERIES
 * series are kept; more are dropped (and counted in
 * kiln_metrics_dropped_total). Safe from any thread. */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define METRICS_MAX_SERIES 1024
#define METRICS_MAX_LABELS 256   /* bytes of one series' labels */
#define METRICS_MAX_TEXT (4u << 20) /* bytes of the rendered page: every series with its HELP */

/* Add to the counter name{labels}; labels is the text inside the braces,
 * already formatted with metrics_label, or "". */
void metrics_add(const char *name, const char *labels, double v);
/* Set the gauge name{labels}. */
void metrics_set(const char *name, const char *labels, double v);

/* Count v in the histogram name{labels}: name_bucket{le=...} for each of
 * the n_bounds upper bounds (ascending) and +Inf, name_sum, name_count. */
void metrics_observe(const char *name, const char *labels, const double *bounds, size_t n_bounds, double v);

/* Append key="value" (escaped as the format wants; a ',' before it when
 * buf is not empty) to buf (size bytes). Returns buf. */
char *metrics_label(char *buf, size_t size, const char *key, const char *value);

/* The exposition text of every series (caller frees). */
char *metrics_render(void);

/* Serve /metrics and /healthz on address ("host:port", "[v6]:port" or
 * ":port" for every address). healthy(arg) decides /healthz. */
enum kiln_rc metrics_serve(const char *address, bool (*healthy)(void *arg), void *arg, struct kiln_err *e);
/* A POST route beside /metrics (GitHub's webhooks: github/daemon.c): fn
 * gets the whole body (over max bytes: 413 without calling it) and looks
 * request headers up with header(conn, NAME); it returns the HTTP status.
 * One route; NULL fn removes it. Called on the server's one thread. */
typedef unsigned (*metrics_post_fn)(void *arg, const char *body, size_t len,
				    const char *(*header)(void *conn, const char *name), void *conn);
void metrics_set_post(const char *path, size_t max, metrics_post_fn fn, void *arg);

/* Stop serving (no-op when not serving). */
void metrics_stop(void);

/* Forget every series (tests). */
void metrics_reset(void);

#endif
