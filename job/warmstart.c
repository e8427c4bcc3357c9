#include "job/warmstart.h"

#include "build-config.h"

#include <stdio.h>
#include <string.h>

#include "job/manifest.h"
#include "lib/sha256.h"

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

void warmstart_plan(const struct images_ctx *ictx, const struct warm_want *w, struct warm_plan *p)
{
	struct kiln_err e = { 0 };
	char mine[65];

	memset(p, 0, sizeof(*p));
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
	if (sha256_file_hex(ictx->agent_path, mine, NULL, &e) || strcmp(mine, p->agent_sha)) {
		snprintf(p->reason, sizeof(p->reason),
			 "image %s was built with another kiln-agent (rebuild it: kiln images build %s)", w->image,
			 w->image);
		return;
	}
	p->in = (struct template_inputs){ .image = p->image_sha, .kernel = p->kernel_sha, .agent = p->agent_sha,
					  .vmm = PACKAGE_VERSION,
					  .vcpus = w->vcpus, .memory_mib = w->memory_mib, .net = w->net };
	if (template_key(&p->in, p->key, &e) || template_dir(w->state_dir, p->key, p->dir, sizeof(p->dir), &e)) {
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
