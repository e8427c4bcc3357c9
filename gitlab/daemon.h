/* `kiln run`: kiln as a GitLab runner (protocol reference, sections 2-5).
 *
 * The main thread feeds the configured runners in turn, one every
 * check_interval / N seconds. A feed starts a request thread when a job
 * slot is free (`concurrent` in all, `limit` per runner, 0 = no limit) and
 * the runner has fewer than `request_concurrency` requests in flight; the
 * thread POSTs /jobs/request (with last_update, system_id and info) and,
 * when a job comes, runs it: the payload is saved scrubbed
 * (gitlab/jobrecord.h), a journal entry written, the job acknowledged with
 * PUT state=running, run with job_run() while its trace streams
 * (gitlab/trace.h), and finished with the final update. Three 403 replies
 * in a row pause a runner for an hour.
 *
 * Signals: SIGTERM or SIGINT stop polling and let running jobs finish for
 * up to shutdown_timeout seconds, then cancel them (they are reported
 * failed, runner_system_failure); a second one cancels them at once.
 * SIGQUIT stops polling and waits for the jobs however long they take.
 * SIGHUP reloads the configuration (running jobs keep the one they started
 * with).
 *
 * At start: job_sweep(state_dir), then every journal entry left by a kiln
 * that died is reported to GitLab as failed (runner_system_failure), in a
 * thread of its own while polling starts. */
#ifndef KILN_GLRUNNER_H
#define KILN_GLRUNNER_H

#include <signal.h>

#include "gitlab/client.h"
#include "runner/config.h"
#include "lib/result.h"

/* Run until stopped by a signal. Takes over *cfg (it is left zeroed).
 * Returns the process exit status. */
int glrunner_run(struct kiln_config *cfg, const char *config_path);

/* Make the runners' tls_ca_file trusted by the jobs' git fetches as well
 * (process-wide): a bundle of the system's CAs and theirs under
 * <state_dir>/tls/, nothing when no runner has one; and their client
 * certificates presented to their GitLab's host. */
enum kiln_rc glrunner_git_trust(const struct kiln_config *cfg, struct kiln_err *e);

/* Report to GitLab the journal entries a dead kiln left (see above);
 * setting *stop (may be NULL) ends it early, the rest waits for the next
 * start. */
void glrunner_report_orphans(const char *state_dir, const volatile sig_atomic_t *stop);

/* What the poll loop calls out to, so that tests can run it against fakes:
 * request stands for gl_request_job, job for taking a job that came
 * (acknowledge, run, final update) for runner rc. A NULL member, or no
 * call, keeps the real one. Call before glrunner_run. */
struct glrunner_hooks {
	enum gl_poll (*request)(struct gl_client *c, const char *token, const char *system_id, const char *executor,
				char last_update[128], char **payload, size_t *len, struct kiln_err *e);
	void (*job)(const struct kiln_runner_config *rc, const char *payload, size_t len);
};
void glrunner_set_hooks(const struct glrunner_hooks *h);

/* Another service glrunner_run starts beside the GitLab loop and stops
 * before it returns, under the same `concurrent` (lib/slots.h): the
 * GitHub fleets (github/daemon.h), set by runner/main.c so that this
 * library does not link them. cfg outlives stop. NULL: none. */
void glrunner_set_service(enum kiln_rc (*start)(const struct kiln_config *cfg, struct kiln_err *e),
			  void (*stop)(void));

#endif
