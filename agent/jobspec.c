#include "agent/jobspec.h"
#include "agent/imageuser.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Where a failure is described; the field name comes first. */
struct perr {
	char *buf;
	size_t size;
};

static int bad(struct perr *e, const char *field, const char *msg)
{
	snprintf(e->buf, e->size, "%s: %s", field, msg);
	return -EINVAL;
}

static int oom(struct perr *e)
{
	snprintf(e->buf, e->size, "out of memory");
	return -ENOMEM;
}

/* "parent[i]" or "parent.key" into buf, for naming nested fields. */
static const char *field_idx(char *buf, size_t size, const char *parent, size_t i)
{
	snprintf(buf, size, "%s[%zu]", parent, i);
	return buf;
}

static const char *field_key(char *buf, size_t size, const char *parent, const char *key)
{
	snprintf(buf, size, "%s.%s", parent, key);
	return buf;
}

/* Copy a JSON string. NUL bytes are refused unless allow_nul: everything but
 * file content ends up in C strings (paths, argv, environ). */
static int get_string(json_t *v, const char *field, int allow_nul, char **out, size_t *len, struct perr *e)
{
	const char *s;
	size_t n;

	if (!v)
		return bad(e, field, "missing");
	if (!json_is_string(v))
		return bad(e, field, "must be a string");
	s = json_string_value(v);
	n = json_string_length(v);
	if (!allow_nul && memchr(s, '\0', n))
		return bad(e, field, "must not contain NUL bytes");
	*out = malloc(n + 1);
	if (!*out)
		return oom(e);
	memcpy(*out, s, n);
	(*out)[n] = '\0';
	if (len)
		*len = n;
	return 0;
}

static int get_path(json_t *v, const char *field, char **out, struct perr *e)
{
	int rc = get_string(v, field, 0, out, NULL, e);

	if (rc)
		return rc;
	if ((*out)[0] != '/') {
		free(*out);
		*out = NULL;
		return bad(e, field, "must be an absolute path");
	}
	return 0;
}

/* An optional integer member: def when absent. */
static int get_int(json_t *obj, const char *key, const char *field, long long lo, long long hi,
		   long long def, long long *out, struct perr *e)
{
	json_t *v = json_object_get(obj, key);
	char msg[80];

	*out = def;
	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		snprintf(msg, sizeof(msg), "must be an integer in %lld..%lld", lo, hi);
		return bad(e, field, msg);
	}
	*out = json_integer_value(v);
	return 0;
}

/* An array member, optional or not; *n its size. */
static int get_array(json_t *obj, const char *key, int required, size_t max, json_t **out, struct perr *e)
{
	json_t *v = json_object_get(obj, key);
	char msg[64];

	*out = v;
	if (!v)
		return required ? bad(e, key, "missing") : 0;
	if (!json_is_array(v))
		return bad(e, key, "must be an array");
	if (json_array_size(v) > max) {
		snprintf(msg, sizeof(msg), "more than %zu entries", max);
		return bad(e, key, msg);
	}
	return 0;
}

static int parse_env(json_t *arr, struct job_spec *spec, struct perr *e)
{
	size_t i, n = json_array_size(arr);
	char f[64], f2[80];

	spec->env = calloc(n + 1, sizeof(*spec->env));
	if (!spec->env)
		return oom(e);
	for (i = 0; i < n; i++) {
		json_t *pair = json_array_get(arr, i);
		char *name = NULL, *value = NULL;
		size_t nlen, vlen;
		int rc;

		field_idx(f, sizeof(f), "env", i);
		if (!json_is_array(pair) || json_array_size(pair) != 2)
			return bad(e, f, "must be a [name, value] pair");
		rc = get_string(json_array_get(pair, 0), field_idx(f2, sizeof(f2), f, 0), 0, &name, &nlen, e);
		if (!rc && (!nlen || strchr(name, '=')))
			rc = bad(e, f2, "must be a non-empty name without '='");
		if (!rc)
			rc = get_string(json_array_get(pair, 1), field_idx(f2, sizeof(f2), f, 1), 0, &value, &vlen, e);
		if (!rc) {
			spec->env[i] = malloc(nlen + vlen + 2);
			if (spec->env[i])
				snprintf(spec->env[i], nlen + vlen + 2, "%s=%s", name, value);
			else
				rc = oom(e);
		}
		free(name);
		free(value);
		if (rc)
			return rc;
		spec->nenv = i + 1;
	}
	return 0;
}

static int parse_file(json_t *o, const char *f, struct job_file *file, struct perr *e)
{
	char f2[80];
	long long mode;
	int rc;

	if (!json_is_object(o))
		return bad(e, f, "must be an object");
	rc = get_path(json_object_get(o, "path"), field_key(f2, sizeof(f2), f, "path"), &file->path, e);
	if (rc)
		return rc;
	rc = get_string(json_object_get(o, "content"), field_key(f2, sizeof(f2), f, "content"), 1,
			&file->content, &file->content_len, e);
	if (rc)
		return rc;
	rc = get_int(o, "mode", field_key(f2, sizeof(f2), f, "mode"), 0, 07777, 0600, &mode, e);
	file->mode = (mode_t)mode;
	return rc;
}

static int parse_files(json_t *arr, struct job_spec *spec, struct perr *e)
{
	size_t i, n = json_array_size(arr);
	char f[64];

	spec->files = calloc(n ? n : 1, sizeof(*spec->files));
	if (!spec->files)
		return oom(e);
	for (i = 0; i < n; i++) {
		int rc;

		/* Counted first, so jobspec_free frees a half-parsed entry. */
		spec->nfiles = i + 1;
		rc = parse_file(json_array_get(arr, i), field_idx(f, sizeof(f), "files", i), &spec->files[i], e);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_when(json_t *o, const char *f, enum job_when *when, struct perr *e)
{
	static const struct {
		const char *name;
		enum job_when when;
	} names[] = {
		{ "on_success", WHEN_ON_SUCCESS },
		{ "on_failure", WHEN_ON_FAILURE },
		{ "always", WHEN_ALWAYS },
	};
	json_t *v = json_object_get(o, "when");
	size_t i;

	*when = WHEN_ON_SUCCESS;
	if (!v)
		return 0;
	for (i = 0; json_is_string(v) && i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcmp(json_string_value(v), names[i].name)) {
			*when = names[i].when;
			return 0;
		}
	}
	return bad(e, f, "must be on_success, on_failure or always");
}

static int parse_script(json_t *arr, const char *f, struct job_step *step, struct perr *e)
{
	size_t i, n;
	char f2[80];

	if (!json_is_array(arr))
		return bad(e, f, arr ? "must be an array of strings" : "missing");
	n = json_array_size(arr);
	step->script = calloc(n + 1, sizeof(*step->script));
	if (!step->script)
		return oom(e);
	for (i = 0; i < n; i++) {
		int rc = get_string(json_array_get(arr, i), field_idx(f2, sizeof(f2), f, i), 0,
				    &step->script[i], NULL, e);

		if (rc)
			return rc;
		step->nscript = i + 1;
	}
	return 0;
}

static int parse_step(json_t *o, const char *f, struct job_step *step, struct perr *e)
{
	char f2[80];
	long long timeout = 0;
	int rc;

	if (!json_is_object(o))
		return bad(e, f, "must be an object");
	field_key(f2, sizeof(f2), f, "name");
	rc = get_string(json_object_get(o, "name"), f2, 0, &step->name, NULL, e);
	if (!rc && !step->name[0])
		rc = bad(e, f2, "must not be empty");
	if (!rc)
		rc = parse_script(json_object_get(o, "script"), field_key(f2, sizeof(f2), f, "script"), step, e);
	if (!rc)
		rc = get_int(o, "timeout", field_key(f2, sizeof(f2), f, "timeout"), 1, JOBSPEC_MAX_TIMEOUT,
			     JOBSPEC_DEFAULT_TIMEOUT, &timeout, e);
	step->timeout = (unsigned)timeout;
	if (!rc)
		rc = parse_when(o, field_key(f2, sizeof(f2), f, "when"), &step->when, e);
	return rc;
}

static int parse_steps(json_t *arr, struct job_spec *spec, struct perr *e)
{
	size_t i, n = json_array_size(arr);
	char f[64];

	if (!n)
		return bad(e, "steps", "must not be empty");
	spec->steps = calloc(n, sizeof(*spec->steps));
	if (!spec->steps)
		return oom(e);
	for (i = 0; i < n; i++) {
		int rc;

		spec->nsteps = i + 1;
		rc = parse_step(json_array_get(arr, i), field_idx(f, sizeof(f), "steps", i), &spec->steps[i], e);
		if (rc)
			return rc;
	}
	return 0;
}

/* The optional host clock: {sec: seconds since the epoch, nsec}. */
static int parse_clock(json_t *clock, struct job_spec *spec, struct perr *e)
{
	long long sec, nsec;
	int rc;

	if (!clock)
		return 0;
	if (!json_is_object(clock))
		return bad(e, "clock", "must be an object {sec, nsec}");
	if (!json_object_get(clock, "sec"))
		return bad(e, "clock.sec", "is missing");
	rc = get_int(clock, "sec", "clock.sec", 0, (1LL << 40), 0, &sec, e);
	if (!rc)
		rc = get_int(clock, "nsec", "clock.nsec", 0, 999999999, 0, &nsec, e);
	if (rc)
		return rc;
	spec->has_clock = 1;
	spec->clock_sec = sec;
	spec->clock_nsec = (long)nsec;
	return 0;
}

static int parse_image(json_t *img, struct job_spec *spec, struct perr *e)
{
	json_t *ep;
	char f[40];
	size_t len, i;
	int rc;

	if (!img)
		return 0;
	if (!json_is_object(img))
		return bad(e, "image", "must be an object");
	rc = get_string(json_object_get(img, "label"), "image.label", 0, &spec->image_label, &len, e);
	if (!rc && (len == 0 || len > 16))
		return bad(e, "image.label", "must be 1..16 characters");
	if (!rc && json_object_get(img, "user"))
		rc = get_string(json_object_get(img, "user"), "image.user", 0, &spec->image_user, &len, e);
	ep = json_object_get(img, "entrypoint");
	if (!rc && ep && (!json_is_array(ep) || json_array_size(ep) > JOBSPEC_MAX_ARGV))
		return bad(e, "image.entrypoint", "must be an array of at most 256 strings");
	if (!rc && json_array_size(ep) && !(spec->image_entrypoint = calloc(json_array_size(ep) + 1, sizeof(char *))))
		return oom(e);
	for (i = 0; !rc && i < json_array_size(ep); i++, spec->image_nentrypoint++)
		rc = get_string(json_array_get(ep, i), field_idx(f, sizeof(f), "image.entrypoint", i), 0,
				&spec->image_entrypoint[i], NULL, e);
	if (!rc && spec->image_nentrypoint && !*spec->image_entrypoint[0])
		return bad(e, "image.entrypoint[0]", "must not be empty");
	return rc;
}

/* arg single-quoted for sh onto f ('\'' for a quote). */
static void sh_quote(FILE *f, const char *arg)
{
	fputc('\'', f);
	for (; *arg; arg++)
		if (*arg == '\'')
			fputs("'\\''", f);
		else
			fputc(*arg, f);
	fputc('\'', f);
}

/* The spec's one step, named name, for a service or an exec: under the
 * step timeout's ceiling (the host's job timeout is the limit). */
static int one_step(struct job_spec *spec, const char *name, struct perr *e)
{
	if (!(spec->steps = calloc(1, sizeof(*spec->steps))))
		return oom(e);
	spec->nsteps = 1;
	spec->steps[0].timeout = JOBSPEC_MAX_TIMEOUT;
	spec->steps[0].when = WHEN_ON_SUCCESS;
	return (spec->steps[0].name = strdup(name)) ? 0 : oom(e);
}

/* A service's argv as the spec's one step: "exec 'a' 'b'", so the service
 * is the step's process and its output the step's log. */
static int parse_service(json_t *root, struct job_spec *spec, struct perr *e)
{
	struct job_step *step;
	json_t *argv;
	char f[32], *arg, *line = NULL;
	size_t i, len = 0;
	FILE *out;
	int rc;

	spec->service = 1;
	rc = get_array(root, "argv", 1, JOBSPEC_MAX_ARGV, &argv, e);
	if (rc)
		return rc;
	if (!json_array_size(argv))
		return bad(e, "argv", "must not be empty");
	if ((rc = one_step(spec, "service", e)))
		return rc;
	step = &spec->steps[0];
	if (!(step->script = calloc(2, sizeof(*step->script))))
		return oom(e);
	if (!(out = open_memstream(&line, &len)))
		return oom(e);
	fputs("exec", out);
	for (i = 0; i < json_array_size(argv); i++) {
		rc = get_string(json_array_get(argv, i), field_idx(f, sizeof(f), "argv", i), 0, &arg, NULL, e);
		if (rc)
			break;
		fputc(' ', out);
		sh_quote(out, arg);
		free(arg);
	}
	if (fclose(out) || !line) {
		free(line);
		return rc ? rc : oom(e);
	}
	if (rc) {
		free(line);
		return rc;
	}
	step->script[0] = line;
	step->nscript = 1;
	return 0;
}

/* An exec step: argv run as it is (see jobspec.h). */
static int parse_exec(json_t *root, struct job_spec *spec, struct perr *e)
{
	json_t *argv, *user = json_object_get(root, "user"), *add = json_object_get(root, "add_user");
	json_t *in = json_object_get(root, "stdin");
	char f[32];
	size_t i, n;
	int rc;

	rc = get_array(root, "argv", 1, JOBSPEC_MAX_ARGV, &argv, e);
	if (rc)
		return rc;
	if (!(n = json_array_size(argv)))
		return bad(e, "argv", "must not be empty");
	if (!(spec->exec_argv = calloc(n + 1, sizeof(*spec->exec_argv))))
		return oom(e);
	for (i = 0; i < n; i++) {
		rc = get_string(json_array_get(argv, i), field_idx(f, sizeof(f), "argv", i), 0, &spec->exec_argv[i],
				NULL, e);
		if (rc)
			return rc;
		spec->exec_argc++;
	}
	if (!spec->exec_argv[0][0])
		return bad(e, "argv[0]", "must not be empty");
	if (user) {
		if ((rc = get_string(user, "user", 0, &spec->exec_user, NULL, e)))
			return rc;
		if (!user_name_ok(spec->exec_user))
			return bad(e, "user", "must be 1..32 of a-z, 0-9, '_' and '-', starting with a letter or '_'");
	}
	if (add && !json_is_boolean(add))
		return bad(e, "add_user", "must be true or false");
	spec->exec_add_user = json_is_true(add);
	if (spec->exec_add_user && !spec->exec_user)
		return bad(e, "add_user", "needs a user");
	if (in) {
		if ((rc = get_string(in, "stdin", 1, &spec->exec_stdin, &spec->exec_stdin_len, e)))
			return rc;
		if (spec->exec_stdin_len > JOBSPEC_MAX_STDIN)
			return bad(e, "stdin", "longer than 64 KiB");
	}
	return one_step(spec, "exec", e);
}

static int parse_mode_and_hosts(json_t *root, struct job_spec *spec, struct perr *e)
{
	json_t *mode = json_object_get(root, "mode"), *hosts = json_object_get(root, "hosts");
	const char *m = json_string_value(mode);
	size_t len;
	int rc;

	if (mode && (!m || (strcmp(m, "job") && strcmp(m, "service") && strcmp(m, "exec"))))
		return bad(e, "mode", "must be \"job\", \"service\" or \"exec\"");
	spec->service = m && !strcmp(m, "service");
	spec->exec = m && !strcmp(m, "exec");
	if (!hosts)
		return 0;
	rc = get_string(hosts, "hosts", 0, &spec->hosts, &len, e);
	if (!rc && len > JOBSPEC_MAX_HOSTS)
		rc = bad(e, "hosts", "longer than 64 KiB");
	return rc;
}

static int parse_root(json_t *root, struct job_spec *spec, struct perr *e)
{
	json_t *env, *files, *steps;
	int rc;

	if (!json_is_object(root))
		return bad(e, "job", "must be a JSON object");
	rc = parse_mode_and_hosts(root, spec, e);
	if (rc)
		return rc;
	if (spec->service && !json_object_get(root, "workdir"))
		rc = (spec->workdir = strdup("/")) ? 0 : oom(e);
	else
		rc = get_path(json_object_get(root, "workdir"), "workdir", &spec->workdir, e);
	if (!rc)
		rc = get_array(root, "env", 0, JOBSPEC_MAX_ENV, &env, e);
	if (!rc && env)
		rc = parse_env(env, spec, e);
	if (!rc)
		rc = get_array(root, "files", 0, JOBSPEC_MAX_FILES, &files, e);
	if (!rc && files)
		rc = parse_files(files, spec, e);
	if (!rc && spec->service)
		rc = parse_service(root, spec, e);
	else if (!rc && spec->exec)
		rc = parse_exec(root, spec, e);
	else if (!rc)
		rc = get_array(root, "steps", 1, JOBSPEC_MAX_STEPS, &steps, e);
	if (!rc && !spec->service && !spec->exec)
		rc = parse_steps(steps, spec, e);
	if (!rc)
		rc = parse_clock(json_object_get(root, "clock"), spec, e);
	if (!rc)
		rc = parse_image(json_object_get(root, "image"), spec, e);
	if (!rc && json_object_get(root, "hold_on_failure")) {
		if (!json_is_boolean(json_object_get(root, "hold_on_failure")))
			return bad(e, "hold_on_failure", "must be true or false");
		spec->hold_on_failure = json_is_true(json_object_get(root, "hold_on_failure"));
	}
	if (!rc && json_object_get(root, "debug_trace")) {
		if (!json_is_boolean(json_object_get(root, "debug_trace")))
			return bad(e, "debug_trace", "must be true or false");
		spec->debug_trace = json_is_true(json_object_get(root, "debug_trace"));
	}
	return rc;
}

int jobspec_parse(const void *json, size_t len, struct job_spec *spec, char *err, size_t errsz)
{
	struct perr e = { err, errsz };
	json_error_t jerr;
	json_t *root;
	int rc;

	memset(spec, 0, sizeof(*spec));
	err[0] = '\0';
	/* NUL is allowed by the decoder so file content may carry it; every
	 * other string is checked for it in get_string. */
	root = json_loadb(json, len, JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errsz, "job: not valid JSON: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
		return -EINVAL;
	}
	rc = parse_root(root, spec, &e);
	json_decref(root);
	if (rc)
		jobspec_free(spec);
	return rc;
}

static void free_strv(char **v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void jobspec_free(struct job_spec *spec)
{
	size_t i;

	free(spec->workdir);
	free_strv(spec->env, spec->nenv);
	for (i = 0; i < spec->nfiles; i++) {
		free(spec->files[i].path);
		free(spec->files[i].content);
	}
	free(spec->files);
	for (i = 0; i < spec->nsteps; i++) {
		free(spec->steps[i].name);
		free_strv(spec->steps[i].script, spec->steps[i].nscript);
	}
	free(spec->steps);
	free(spec->image_label);
	free(spec->image_user);
	free_strv(spec->image_entrypoint, spec->image_nentrypoint);
	free(spec->hosts);
	free_strv(spec->exec_argv, spec->exec_argc);
	free(spec->exec_user);
	if (spec->exec_stdin)
		explicit_bzero(spec->exec_stdin, spec->exec_stdin_len);
	free(spec->exec_stdin);
	memset(spec, 0, sizeof(*spec));
}

int jobspec_is_after_script(const struct job_step *step)
{
	return !strcmp(step->name, "after_script");
}
