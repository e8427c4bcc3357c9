#include "job/warmstart.h"

#include "build-config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent/proto.h"
#include "job/manifest.h"
#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/paths.h"
#include "lib/sha256.h"

/* In the templates folder; with a dot, so no listing takes it for a template. */
#define AGENT_SHA_FILE "agent.sha256"

/* The inputs digest of image name's manifest into out; with agent, the
 * sha256 of the kiln-agent it was built with ("" for none). */
static bool inputs_of(const struct images_ctx *ictx, const char *name, char out[65], char *agent, char *reason,
		      size_t size)
{
	struct manifest m;
	struct kiln_err e = { 0 };
	size_t i;

	if (images_manifest(ictx, name, &m, &e)) {
		snprintf(reason, size, "image %s has no manifest: %s", name, e.msg);
		return false;
	}
	snprintf(out, 65, "%s", m.inputs_sha256);
	for (i = 0; agent && i < m.n_inputs; i++)
		if (!strncmp(m.inputs[i], "file agent ", 11))
			snprintf(agent, 65, "%s", m.inputs[i] + 11);
	manifest_free(&m);
	return true;
}

enum kiln_rc warmstart_agent_sha(const char *path, const char *templates_dir, char hex[65], struct kiln_err *e)
{
	char cache[PATH_MAX], want[256], got[256 + 66];
	struct stat st;
	enum kiln_rc rc;
	ssize_t n;
	int fd;

	if (stat(path, &st) < 0)
		return kiln_fail_errno(e, "%s", path);
	snprintf(want, sizeof(want), "%llu %llu %lld %lld.%09ld %lld.%09ld", (unsigned long long)st.st_dev,
		 (unsigned long long)st.st_ino, (long long)st.st_size, (long long)st.st_mtim.tv_sec,
		 st.st_mtim.tv_nsec, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
	if (!templates_dir || !kiln_path_join(cache, sizeof(cache), templates_dir, AGENT_SHA_FILE))
		return sha256_file_hex(path, hex, NULL, e);
	fd = open(cache, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	n = fd >= 0 ? read(fd, got, sizeof(got) - 1) : -1;
	if (fd >= 0)
		close(fd);
	/* "HEX64 IDENTITY\n" */
	if (n == (ssize_t)(65 + strlen(want) + 1) && got[64] == ' ' && !memcmp(got + 65, want, strlen(want)) &&
	    got[n - 1] == '\n' && strspn(got, "0123456789abcdef") == 64) {
		memcpy(hex, got, 64);
		hex[64] = '\0';
		return KILN_OK;
	}
	if ((rc = sha256_file_hex(path, hex, NULL, e)))
		return rc;
	n = snprintf(got, sizeof(got), "%s %s\n", hex, want);
	if (kiln_mkdir_p(templates_dir) < 0 || kiln_write_atomic(cache, got, (size_t)n, 0644, NULL))
		log_debug("warm start: cannot keep the agent's hash in %s", cache);
	return KILN_OK;
}

void warmstart_plan(const struct images_ctx *ictx, const struct warm_want *w, struct warm_plan *p)
{
	struct kiln_err e = { 0 };
	char mine[65];

	memset(p, 0, sizeof(*p));
	snprintf(p->kernel_name, sizeof(p->kernel_name), "%s", w->kernel ? w->kernel : "");
	if (w->no_snapshot) {
		snprintf(p->reason, sizeof(p->reason), "--no-snapshot");
		return;
	}
	if (!w->snapshots) {
		snprintf(p->reason, sizeof(p->reason), "snapshots: false in the configuration");
		return;
	}
	if (strcmp(w->backend, "microvm")) {
		snprintf(p->reason, sizeof(p->reason), "the %s executor has no templates", w->backend);
		return;
	}
	if (!inputs_of(ictx, w->image, p->image_sha, p->agent_sha, p->reason, sizeof(p->reason)) ||
	    !inputs_of(ictx, w->kernel, p->kernel_sha, NULL, p->reason, sizeof(p->reason)))
		return;
	/* Only this kiln's agent is known to open its stream again after a
	 * restore: an image built with another boots cold, at no cost. */
	if (warmstart_agent_sha(ictx->agent_path, w->templates_dir, mine, &e)) {
		snprintf(p->reason, sizeof(p->reason), "this kiln's agent: %s", e.msg);
		return;
	}
	if (strcmp(mine, p->agent_sha)) {
		snprintf(p->reason, sizeof(p->reason),
			 "image %s was built with another kiln-agent (rebuild it: kiln images build %s)", w->image,
			 w->image);
		return;
	}
	p->in = (struct template_inputs){ .image = p->image_sha, .kernel = p->kernel_sha, .agent = p->agent_sha,
					  .vmm = PACKAGE_VERSION,
					  .vcpus = w->vcpus, .memory_mib = w->memory_mib, .net = w->net };
	if (template_key(&p->in, p->key, &e) || template_dir(w->templates_dir, p->key, p->dir, sizeof(p->dir), &e)) {
		snprintf(p->reason, sizeof(p->reason), "%s", e.msg);
		return;
	}
	if (!template_usable(p->dir, p->key, p->reason, sizeof(p->reason))) {
		char why[sizeof(p->reason)];

		snprintf(why, sizeof(why), "%s", p->reason);
		snprintf(p->reason, sizeof(p->reason), "template %.16s: %s", p->key, why);
		p->buildable = strncmp(why, "failed: ", 8) != 0;
		return;
	}
	p->restore = true;
}

/* Wait for the agent's HELLO on fd until deadline (mono_s). */
static enum kiln_rc await_hello(int fd, double deadline, struct kiln_err *e)
{
	struct ap_reader rd;
	enum kiln_rc rc = KILN_E_LIMIT;
	char buf[4096];

	ap_reader_init(&rd);
	while (mono_s() < deadline) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		const uint8_t *payload;
		uint32_t len;
		uint8_t type;
		ssize_t n;
		int got;

		if (poll(&pfd, 1, 100) <= 0)
			continue;
		n = read(fd, buf, sizeof(buf));
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0 || ap_reader_feed(&rd, buf, (size_t)n)) {
			rc = kiln_fail(e, KILN_E_EXEC, "the template's VM ended before its agent said HELLO");
			goto out;
		}
		while ((got = ap_reader_next(&rd, &type, &payload, &len)) == 1)
			if (type == AP_HELLO) {
				rc = KILN_OK;
				goto out;
			}
		if (got < 0) {
			rc = kiln_fail(e, KILN_E_SYNTAX, "the template's agent broke the protocol");
			goto out;
		}
	}
	kiln_fail(e, rc, "the template's agent did not say HELLO in time");
out:
	ap_reader_free(&rd);
	return rc;
}

enum kiln_rc warmstart_build(const struct executor_ops *ops, const struct vm_spec *base, const struct warm_plan *plan,
			     const char *run_dir, int boot_ms, const char *image_name, enum warm_built *got,
			     struct kiln_err *e)
{
	struct vm_spec vs = *base;
	struct executor x;
	char tmp[PATH_MAX], dir[PATH_MAX], ws[PATH_MAX], root[PATH_MAX], why[256];
	struct kiln_err pe = { 0 };
	enum kiln_rc rc;
	double t0 = mono_s();
	int fd, lock = -1, status = -1;
	bool started = false;

	*got = WARM_BUSY;
	snprintf(tmp, sizeof(tmp), "%s.new.%d.%ld", plan->dir, (int)getpid(), (long)gettid());
	snprintf(dir, sizeof(dir), "%s", run_dir);
	snprintf(ws, sizeof(ws), "%s/workspace.ext4", run_dir);
	/* One build of a template at a time: each would replace the other's
	 * under the job that restores it. Built meanwhile: nothing to do. */
	if ((rc = template_build_lock(plan->dir, &lock, e)) || lock < 0)
		return rc;
	if (template_usable(plan->dir, plan->key, why, sizeof(why))) {
		*got = WARM_FOUND;
		close(lock);
		return KILN_OK;
	}
	*got = WARM_BUILT;
	kiln_rm_rf(tmp);
	if (kiln_mkdir_p(tmp) < 0 || kiln_mkdir_p(dir) < 0) {
		rc = kiln_fail_errno(e, "template: creating %s", tmp);
		goto out;
	}
	fd = open(ws, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = kiln_fail_errno(e, "template: creating %s", ws);
		goto out;
	}
	close(fd);
	vs.snapshot_load = NULL;
	vs.snapshot_save_to = tmp;
	vs.workspace = ws;
	vs.workspace_late = true;
	vs.run_dir = dir;
	executor_init(&x, ops, &vs);
	started = true;
	if ((rc = x.ops->prepare(&x, e)) || (rc = x.ops->start(&x, e)) || (rc = x.ops->stream(&x, boot_ms, &fd, e)) ||
	    (rc = await_hello(fd, t0 + boot_ms / 1000.0, e)))
		goto out;
	if (kill(x.pid, SIGUSR2) < 0) {
		rc = kiln_fail_errno(e, "template: asking kiln-vmm to save");
		goto out;
	}
	if (x.ops->wait(&x, 120000, &status, NULL) || status != 0) {
		rc = kiln_fail(e, KILN_E_EXEC, "template: kiln-vmm did not save the VM (status %d)", status);
		goto out;
	}
	if ((rc = template_seal(tmp, e)) || (rc = template_mark_ready(tmp, plan->key, &plan->in, image_name, plan->kernel_name, e)))
		goto out;
	kiln_rm_rf(plan->dir); /* a stale or broken one */
	if (rename(tmp, plan->dir) < 0) {
		rc = kiln_fail_errno(e, "template: renaming %s", tmp);
		goto out;
	}
	/* The one it replaces is never restored again. A failure here costs
	 * disk, not the job. */
	snprintf(root, sizeof(root), "%s", plan->dir);
	*strrchr(root, '/') = '\0';
	template_prune(root, plan->key, &plan->in, image_name ? image_name : "", plan->kernel_name, NULL, &pe);
out:
	if (started)
		x.ops->cleanup(&x);
	kiln_rm_rf(tmp);
	kiln_rm_rf(dir);
	/* Under the lock: a build that starts after this one sees the mark. */
	if (rc && template_mark_failed(plan->dir, plan->key, e->msg, &pe))
		log_warn("%s", pe.msg);
	close(lock);
	return rc;
}
