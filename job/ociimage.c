#include "job/ociimage.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job/services.h"
#include "lib/log.h"
#include "oci/dockercfg.h"
#include "oci/ref.h"
#include "oci/store.h"
#include "runner/config.h"

#define CONFIG_MAX_BYTES (4u << 20)   /* an image config is a few KiB */

static const char *const policy_names[] = { "always", "if-not-present", "never" };

static void say(const struct ociimage_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(const struct ociimage_opts *o, const char *fmt, ...)
{
	char line[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (o->notice)
		o->notice(o->arg, line);
}

static int policy_parse(const char *s)
{
	size_t i;

	for (i = 0; i < 3; i++)
		if (!strcmp(s, policy_names[i]))
			return (int)i;
	return -1;
}

/* "a, b" of policies into buf. */
static const char *policy_list(const enum ociimage_policy *v, size_t n, char *buf, size_t size)
{
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; i < n && len < size; i++)
		len += (size_t)snprintf(buf + len, size - len, "%s%s", i ? ", " : "", policy_names[v[i]]);
	return buf;
}

void ociimage_opts_init(struct ociimage_opts *o, const struct kiln_config *cfg, struct ociimage_registry *regs)
{
	size_t i;

	memset(o, 0, sizeof(*o));
	o->state_dir = cfg->state_dir;
	o->disable_entrypoint_overwrite = cfg->oci.disable_entrypoint_overwrite;
	for (i = 0; i < 3 && cfg->oci.allowed_pull_policies[i]; i++)
		o->allowed[o->n_allowed++] = (enum ociimage_policy)policy_parse(cfg->oci.allowed_pull_policies[i]);
	for (i = 0; i < cfg->oci.n_registries && i < KILN_CONFIG_MAX_REGISTRIES; i++) {
		const struct kiln_registry_config *r = &cfg->oci.registries[i];

		regs[i] = (struct ociimage_registry){ r->host,	   r->username, r->password, r->tls_ca_file,
						      r->insecure, r->mirrors,	r->n_mirrors };
	}
	o->registries = regs;
	o->n_registries = i;
	o->allowed_images = (const char *const *)cfg->oci.allowed_images;
	o->n_allowed_images = cfg->oci.n_allowed_images;
	o->allowed_services = (const char *const *)cfg->oci.allowed_services;
	o->n_allowed_services = cfg->oci.n_allowed_services;
	o->services_limit = cfg->oci.services_limit;
	o->services = cfg->oci.services;
	/* gitlab-runner: 0 (unset) is the default, a negative one no wait. */
	o->wait_services_s = cfg->oci.wait_for_services_timeout ? cfg->oci.wait_for_services_timeout
								: OCIIMAGE_WAIT_SERVICES_S;
}

/* The policies pp asks for (a string, a list or NULL; what names it)
 * against o's allowed ones, as ociimage_policies says. */
static enum kiln_rc policies_from(json_t *pp, const char *what, const struct ociimage_opts *o,
				  enum ociimage_policy out[OCIIMAGE_MAX_POLICIES], size_t *n, struct kiln_err *e)
{
	json_t *v;
	enum ociimage_policy job[8], allowed[OCIIMAGE_MAX_POLICIES] = { PULL_ALWAYS };
	size_t n_job = 0, n_allowed = 1, i, k;
	char a[64], b[64];

	if (o->n_allowed) {
		memcpy(allowed, o->allowed, o->n_allowed * sizeof(allowed[0]));
		n_allowed = o->n_allowed;
	}
	*n = 0;
	if (json_is_string(pp))
		pp = json_pack("[s]", json_string_value(pp));
	else
		json_incref(pp);
	if (pp && !json_is_array(pp)) {
		json_decref(pp);
		return kiln_fail(e, KILN_E_INVALID, "%s: must be a string or a list", what);
	}
	json_array_foreach(pp, i, v) {
		int x = json_is_string(v) ? policy_parse(json_string_value(v)) : -1;

		if (x < 0 || n_job == sizeof(job) / sizeof(job[0])) {
			json_decref(pp);
			return kiln_fail(e, KILN_E_INVALID, "%s[%zu]: not one of always, if-not-present, never", what,
					 i);
		}
		job[n_job++] = (enum ociimage_policy)x;
	}
	json_decref(pp);
	if (!n_job) {
		memcpy(out, allowed, n_allowed * sizeof(out[0]));
		*n = n_allowed;
		return KILN_OK;
	}
	for (i = 0; i < n_job; i++)
		for (k = 0; k < n_allowed; k++)
			if (job[i] == allowed[k] && *n < OCIIMAGE_MAX_POLICIES)
				out[(*n)++] = job[i];
	if (!*n)
		return kiln_fail(e, KILN_E_INVALID,
				 "pull_policy ([%s]) defined in GitLab pipeline config is not one of the "
				 "allowed_pull_policies ([%s])",
				 policy_list(job, n_job, a, sizeof(a)), policy_list(allowed, n_allowed, b, sizeof(b)));
	return KILN_OK;
}

enum kiln_rc ociimage_policies(const struct job_payload *p, const struct ociimage_opts *o,
			       enum ociimage_policy out[OCIIMAGE_MAX_POLICIES], size_t *n, struct kiln_err *e)
{
	return policies_from(json_object_get(json_object_get(p->doc, "image"), "pull_policy"), "image:pull_policy", o,
			     out, n, e);
}

/* From DOCKER_AUTH_CONFIG (docker's config.json), host's user and password
 * copied into buf ("user\0pass"). A source that cannot be read is
 * skipped with a warning, as gitlab-runner does. */
static bool auth_config(const struct ociimage_opts *o, const char *text, const char *host, const char **user,
			const char **pass, char *buf, size_t size)
{
	char u[OCI_DOCKERCFG_FIELD_MAX], pw[OCI_DOCKERCFG_FIELD_MAX];
	struct kiln_err e = { 0 };
	enum kiln_rc rc;

	if (!text)
		return false;
	rc = oci_dockercfg_lookup(text, strlen(text), "DOCKER_AUTH_CONFIG", host, u, pw, &e);
	if (rc == KILN_OK && strlen(u) + strlen(pw) + 2 > size)
		rc = kiln_fail(&e, KILN_E_LIMIT, "DOCKER_AUTH_CONFIG: the credentials for %s are too long", host);
	if (rc != KILN_OK) {
		if (rc != KILN_E_NOTFOUND)
			say(o, "warning: %s (skipped)", e.msg);
		return false;
	}
	memcpy(buf, u, strlen(u) + 1);
	memcpy(buf + strlen(u) + 1, pw, strlen(pw) + 1);
	*user = buf;
	*pass = buf + strlen(u) + 1;
	return true;
}

void ociimage_credentials(const struct job_payload *p, const struct ociimage_opts *o, const char *host,
			  const char **user, const char **pass, const struct ociimage_registry **reg, char *buf,
			  size_t size)
{
	json_t *c;
	size_t i;

	*user = *pass = NULL;
	*reg = NULL;
	for (i = 0; i < o->n_registries; i++)
		if (oci_auth_key_matches(o->registries[i].host, host))
			*reg = &o->registries[i];
	json_array_foreach(json_object_get(p->doc, "credentials"), i, c) {
		const char *type = json_string_value(json_object_get(c, "type"));
		const char *url = json_string_value(json_object_get(c, "url"));

		if (type && url && !strcmp(type, "registry") && oci_auth_key_matches(url, host) &&
		    json_string_value(json_object_get(c, "username"))) {
			*user = json_string_value(json_object_get(c, "username"));
			*pass = json_string_value(json_object_get(c, "password"));
			return;
		}
	}
	if (auth_config(o, payload_var(p, "DOCKER_AUTH_CONFIG"), host, user, pass, buf, size))
		return;
	if (*reg && (*reg)->username) {
		*user = (*reg)->username;
		*pass = (*reg)->password;
	}
}

/* The image's config: Env as [[name, value]...] and User. */
static int port_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* ExposedPorts ({"6379/tcp": {}, "53/udp": {}}): the TCP ones, lowest
 * first, as gitlab-runner's wait-for-service takes them. */
static void read_ports(json_t *exposed, struct ociimage *img)
{
	const char *key;
	json_t *v;
	int ports[64];
	size_t n = 0;

	json_object_foreach(exposed, key, v) {
		char *end;
		long port = strtol(key, &end, 10);

		if (end != key && port > 0 && port < 65536 && (!*end || !strcmp(end, "/tcp")) &&
		    n < sizeof(ports) / sizeof(ports[0]))
			ports[n++] = (int)port;
	}
	qsort(ports, n, sizeof(ports[0]), port_cmp);
	for (img->n_ports = 0; img->n_ports < n && img->n_ports < OCIIMAGE_MAX_PORTS; img->n_ports++)
		img->ports[img->n_ports] = ports[img->n_ports];
}

static enum kiln_rc read_config(struct ociimage *img, struct kiln_err *e)
{
	char path[PATH_MAX + 16], *slash;
	json_error_t jerr;
	json_t *doc, *cfg, *v;
	size_t i;

	snprintf(path, sizeof(path), "%s", img->rootfs);
	slash = strrchr(path, '/');
	if (!slash)
		return kiln_fail(e, KILN_E_INVALID, "%s: not in an image folder", img->rootfs);
	snprintf(slash, sizeof(path) - (size_t)(slash - path), "/config.json");
	doc = json_load_file(path, 0, &jerr);
	if (!doc)
		return kiln_fail(e, KILN_E_SYNTAX, "%s: %s", path, jerr.text);
	cfg = json_object_get(doc, "config");
	img->env = json_array();
	json_array_foreach(json_object_get(cfg, "Env"), i, v) {
		const char *s = json_string_value(v), *eq = s ? strchr(s, '=') : NULL;

		if (eq && eq != s)
			json_array_append_new(img->env, json_pack("[s#s]", s, (int)(eq - s), eq + 1));
	}
	if (json_is_array(json_object_get(cfg, "Entrypoint")))
		img->entrypoint = json_incref(json_object_get(cfg, "Entrypoint"));
	if (json_is_array(json_object_get(cfg, "Cmd")))
		img->cmd = json_incref(json_object_get(cfg, "Cmd"));
	read_ports(json_object_get(cfg, "ExposedPorts"), img);
	if (json_string_value(json_object_get(cfg, "User")))
		snprintf(img->user, sizeof(img->user), "%s", json_string_value(json_object_get(cfg, "User")));
	json_decref(doc);
	return img->env ? KILN_OK : kiln_fail(e, KILN_E_NOMEM, "out of memory");
}

/* po's TLS options and mirrors for the host whose registries entry is reg
 * (NULL: none): each mirror with its own entry's credentials and CA, never
 * the host's credentials. m holds KILN_CONFIG_MAX_MIRRORS. */
static void pull_opts(const struct ociimage_opts *o, const struct ociimage_registry *reg, struct oci_pull_opts *po,
		      struct oci_mirror *m)
{
	size_t i, k;

	po->notice = o->notice;
	po->canceled = o->canceled;
	po->arg = o->arg;
	if (!reg)
		return;
	po->reg.ca_file = reg->ca_file;
	po->reg.insecure = reg->insecure;
	for (i = 0; i < reg->n_mirrors && i < KILN_CONFIG_MAX_MIRRORS; i++) {
		const struct kiln_registry_mirror *km = &reg->mirrors[i];

		m[i] = (struct oci_mirror){ .host = km->host, .reg = { .insecure = km->insecure } };
		for (k = 0; k < o->n_registries; k++)
			if (oci_auth_key_matches(o->registries[k].host, km->host)) {
				m[i].reg.username = o->registries[k].username;
				m[i].reg.password = o->registries[k].password;
				m[i].reg.ca_file = o->registries[k].ca_file;
				m[i].reg.insecure |= o->registries[k].insecure;
			}
	}
	po->mirrors = m;
	po->n_mirrors = i;
}

/* argv as one line for the log: a JSON array, cut at size. */
static const char *argv_text(json_t *argv, char *buf, size_t size)
{
	char *text = json_dumps(argv, JSON_COMPACT);

	snprintf(buf, size, "%s", text ? text : "[]");
	free(text);
	return buf;
}

enum kiln_rc ociimage_entrypoint(const struct job_payload *p, const struct ociimage_opts *o, struct ociimage *img,
				struct kiln_err *e)
{
	json_t *ep = json_object_get(json_object_get(p->doc, "image"), "entrypoint"), *v;
	char line[300];
	size_t i;

	if (ep && !json_is_array(ep))
		return kiln_fail(e, KILN_E_INVALID, "image:entrypoint: must be a list of strings");
	json_array_foreach(ep, i, v)
		if (!json_is_string(v))
			return kiln_fail(e, KILN_E_INVALID, "image:entrypoint[%zu]: must be a string", i);
	/* gitlab-runner's docker executor: image:entrypoint replaces the
	 * image's Entrypoint, which otherwise stays; either gets the shell as
	 * its arguments. [""] is docker's "no entrypoint". A runner that
	 * disables the override keeps the image's, [""] included. */
	if (json_array_size(ep) && o->disable_entrypoint_overwrite) {
		say(o, "WARNING: Entrypoint override disabled (oci: disable_entrypoint_overwrite): image:entrypoint %s "
		       "is ignored",
		    argv_text(ep, line, sizeof(line)));
		ep = NULL;
	}
	if (!json_array_size(ep))
		ep = img->entrypoint;
	if (json_array_size(ep) == 1 && json_string_value(json_array_get(ep, 0)) &&
	    !*json_string_value(json_array_get(ep, 0))) {
		if (json_array_size(img->entrypoint) && ep != img->entrypoint)
			say(o, "image:entrypoint [\"\"]: the image's entrypoint %s is not run",
			    argv_text(img->entrypoint, line, sizeof(line)));
		ep = NULL;
	}
	if (json_array_size(ep) > OCIIMAGE_MAX_ENTRYPOINT)
		return kiln_fail(e, KILN_E_LIMIT, "image %s: an entrypoint of more than %d arguments", img->ref,
				 OCIIMAGE_MAX_ENTRYPOINT);
	json_array_foreach(ep, i, v)
		if (!json_is_string(v) || (!i && !*json_string_value(v)))
			return kiln_fail(e, KILN_E_INVALID, "image %s: entrypoint[%zu] is %s", img->ref, i,
					 json_is_string(v) ? "empty" : "not a string");
	json_decref(img->run_entrypoint);
	img->run_entrypoint = json_array_size(ep) ? json_incref(ep) : NULL;
	if (img->run_entrypoint)
		say(o, "image entrypoint %s runs each step's shell as its arguments (it must run them: exec \"$@\")",
		    argv_text(ep, line, sizeof(line)));
	return KILN_OK;
}

enum kiln_rc ociimage_prepare(const struct job_payload *p, const struct ociimage_opts *o, struct ociimage *img,
			      struct kiln_err *e)
{
	json_t *pp = json_object_get(json_object_get(p->doc, "image"), "pull_policy");
	enum kiln_rc rc = ociimage_prepare_ref(p, o, p->image, pp, img, e);

	return rc ? rc : ociimage_entrypoint(p, o, img, e);
}

enum kiln_rc ociimage_prepare_ref(const struct job_payload *p, const struct ociimage_opts *o, const char *reference,
				  json_t *pull_policy, struct ociimage *img, struct kiln_err *e)
{
	enum ociimage_policy pol[OCIIMAGE_MAX_POLICIES];
	const struct ociimage_registry *reg;
	struct oci_mirror mirrors[KILN_CONFIG_MAX_MIRRORS];
	struct oci_pull_opts po = { 0 };
	struct oci_image found;
	struct oci_ref ref;
	char buf[2 * OCI_DOCKERCFG_FIELD_MAX];
	size_t n, i;
	enum kiln_rc rc;

	memset(img, 0, sizeof(*img));
	snprintf(img->ref, sizeof(img->ref), "%s", reference);
	if ((rc = policies_from(pull_policy, "pull_policy", o, pol, &n, e)) || (rc = oci_ref_parse(reference, &ref, e)))
		return rc;
	ociimage_credentials(p, o, ref.domain, &po.reg.username, &po.reg.password, &reg, buf, sizeof(buf));
	pull_opts(o, reg, &po, mirrors);
	rc = KILN_E_NOTFOUND;
	for (i = 0; i < n; i++) {
		if (pol[i] != PULL_ALWAYS && !(rc = oci_image_find(o->state_dir, reference, NULL, NULL, &found, e))) {
			say(o, "image %s: %s, present (pull_policy %s)", reference, found.digest, policy_names[pol[i]]);
			break;
		}
		if (pol[i] == PULL_NEVER) {
			rc = kiln_fail(e, KILN_E_NOTFOUND, "image %s is not in the store and pull_policy is never",
				       reference);
			continue;
		}
		say(o, "pulling image %s (pull_policy %s%s)", reference, policy_names[pol[i]],
		    po.reg.username ? ", with credentials" : "");
		if (!(rc = oci_pull(o->state_dir, reference, &po, &found, e)))
			break;
		if (o->canceled && o->canceled(o->arg))
			return rc; /* no other policy: the job is over */
		say(o, "pulling %s failed: %s", reference, e ? e->msg : "");
	}
	if (rc)
		return rc;
	snprintf(img->rootfs, sizeof(img->rootfs), "%s", found.rootfs);
	snprintf(img->digest, sizeof(img->digest), "%s", found.digest);
	return read_config(img, e);
}

enum kiln_rc ociimage_spec(const struct ociimage *img, char **spec, struct kiln_err *e)
{
	json_t *o = json_loads(*spec, 0, NULL), *env, *merged, *v, *image;
	char *text = NULL;
	size_t i;

	env = json_object_get(o, "env");
	merged = json_deep_copy(img->env);
	/* The agent lets a later NAME replace an earlier one: the job's win. */
	json_array_foreach(env, i, v)
		json_array_append(merged, v);
	image = json_pack("{s:s, s:s}", "label", OCIIMAGE_LABEL, "user", img->user);
	if (image && img->run_entrypoint)
		json_object_set(image, "entrypoint", img->run_entrypoint);
	if (!o || !merged || json_object_set_new(o, "env", merged) || json_object_set_new(o, "image", image) ||
	    !(text = json_dumps(o, JSON_COMPACT))) {
		json_decref(o);
		return kiln_fail(e, KILN_E_NOMEM, "job spec: out of memory");
	}
	json_decref(o);
	free(*spec);
	*spec = text;
	return KILN_OK;
}

/* `kiln images pull`: a mirror that failed, on stderr. */
static void cli_notice(void *arg, const char *line)
{
	(void)arg;
	kiln_log(KILN_LOG_WARN, "%s", line);
}

/* Append strings v[0..n) to argv. */
static int append_strings(json_t *argv, const char **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (json_array_append_new(argv, json_string(v[i])))
			return -1;
	return 0;
}

enum kiln_rc ociimage_service_spec(const struct ociimage *img, const struct job_service *svc, char **spec,
				   struct kiln_err *e)
{
	json_t *o = json_loads(*spec, 0, NULL), *argv = json_array();
	char *text = NULL;
	enum kiln_rc rc = KILN_OK;
	int bad;

	if (!o || !argv) {
		rc = kiln_fail(e, KILN_E_NOMEM, "service %s: out of memory", svc->name);
		goto out;
	}
	/* docker's merge: the container's Entrypoint replaces the image's and
	 * then takes no Cmd from it; without one, its Cmd replaces the image's. */
	if (svc->n_entrypoint)
		bad = append_strings(argv, svc->entrypoint, svc->n_entrypoint) ||
		      append_strings(argv, svc->command, svc->n_command);
	else
		bad = (img->entrypoint && json_array_extend(argv, img->entrypoint)) ||
		      (svc->n_command ? append_strings(argv, svc->command, svc->n_command)
				      : img->cmd && json_array_extend(argv, img->cmd));
	if (bad || json_object_set(o, "argv", argv) || !(text = json_dumps(o, JSON_COMPACT))) {
		rc = kiln_fail(e, KILN_E_NOMEM, "service %s: out of memory", svc->name);
		goto out;
	}
	if (!json_array_size(argv)) {
		rc = kiln_fail(e, KILN_E_INVALID,
			       "service %s: no command: the image has no Entrypoint or Cmd and the service no "
			       "entrypoint or command",
			       svc->name);
		goto out;
	}
	if ((rc = ociimage_spec(img, &text, e)))
		goto out;
	free(*spec);
	*spec = text;
	text = NULL;
out:
	free(text);
	json_decref(argv);
	json_decref(o);
	return rc;
}

void ociimage_service_entrypoint(const struct ociimage_opts *o, struct job_service *svc)
{
	if (!svc->n_entrypoint || !o->disable_entrypoint_overwrite)
		return;
	say(o, "WARNING: service %s: Entrypoint override disabled (oci: disable_entrypoint_overwrite): its "
	       "entrypoint is ignored",
	    svc->name);
	svc->n_entrypoint = 0;
}

enum kiln_rc ociimage_pull_cli(const struct kiln_config *cfg, const char *reference, struct oci_image *out,
			       struct kiln_err *e)
{
	struct ociimage_registry regs[KILN_CONFIG_MAX_REGISTRIES];
	struct oci_mirror mirrors[KILN_CONFIG_MAX_MIRRORS];
	const struct ociimage_registry *reg = NULL;
	struct ociimage_opts o;
	struct oci_pull_opts po = { 0 };
	struct oci_ref ref;
	size_t i;
	enum kiln_rc rc;

	ociimage_opts_init(&o, cfg, regs);
	o.notice = cli_notice;
	if ((rc = oci_ref_parse(reference, &ref, e)))
		return rc;
	for (i = 0; i < o.n_registries; i++)
		if (oci_auth_key_matches(regs[i].host, ref.domain))
			reg = &regs[i];
	if (reg) {
		po.reg.username = reg->username;
		po.reg.password = reg->password;
	}
	pull_opts(&o, reg, &po, mirrors);
	return oci_pull(o.state_dir, reference, &po, out, e);
}

void ociimage_free(struct ociimage *img)
{
	json_decref(img->env);
	json_decref(img->entrypoint);
	json_decref(img->cmd);
	json_decref(img->run_entrypoint);
	img->env = img->entrypoint = img->cmd = img->run_entrypoint = NULL;
}
