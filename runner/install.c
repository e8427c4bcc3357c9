#include "runner/install.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/spawn.h"
#include "lib/vec.h"
#include "runner/config.h"

#define UNIT_MAX (64 * 1024)
/* The first line of every unit kiln install writes: the mark that lets it
 * replace or remove the unit later, and nothing else. */
#define MARK "# Written by kiln install; kiln uninstall removes it.\n"

/* The options with their defaults filled in; strings point into o, into
 * static storage or into buf. */
struct resolved {
	const char *service, *user, *working_dir, *config, *kiln, *template_path, *unit_dir, *systemctl;
	char config_dir[PATH_MAX], kiln_buf[PATH_MAX], template_buf[PATH_MAX], unit[PATH_MAX];
	char stop_timeout[16];
};

/* A value that goes into a unit line as it is: absolute (when a path), and
 * nothing systemd would read as a quote, specifier, escape or separator. */
static enum kiln_rc unit_safe(const char *what, const char *v, bool path, struct kiln_err *e)
{
	const char *p;

	if (!*v)
		return kiln_fail(e, KILN_E_INVALID, "%s: empty", what);
	if (path && v[0] != '/')
		return kiln_fail(e, KILN_E_INVALID, "%s '%s': not an absolute path", what, v);
	for (p = v; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '\'' || *p == '%' || *p == '\\' || *p == 0x7f)
			return kiln_fail(e, KILN_E_INVALID,
					 "%s '%s': a systemd unit cannot hold whitespace, quotes, '%%' or '\\' there", what, v);
	return KILN_OK;
}

static enum kiln_rc resolve(const struct kiln_install_opts *o, struct resolved *r, struct kiln_err *e)
{
	const char *p;
	enum kiln_rc rc;
	ssize_t n;

	memset(r, 0, sizeof(*r));
	r->service = o->service ? o->service : "kiln";
	r->user = o->user;
	r->working_dir = o->working_dir ? o->working_dir : "/var/lib/kiln";
	r->config = o->config ? o->config : kiln_config_default_path();
	r->unit_dir = o->unit_dir ? o->unit_dir : "/etc/systemd/system";
	r->systemctl = o->systemctl ? o->systemctl : "systemctl";
	r->kiln = o->kiln;
	if (!r->kiln) {
		if ((n = readlink("/proc/self/exe", r->kiln_buf, sizeof(r->kiln_buf) - 1)) < 0)
			return kiln_fail_errno(e, "install: finding this kiln's path (/proc/self/exe)");
		r->kiln_buf[n] = '\0';
		r->kiln = r->kiln_buf;
	}
	r->template_path = o->template_path;
	if (!r->template_path &&
	    !(r->template_path = kiln_path_join(r->template_buf, sizeof(r->template_buf), kiln_data_dir(),
						"systemd/kiln.service.in")))
		return kiln_fail(e, KILN_E_LIMIT, "install: data folder path too long");
	/* A service name is one path element that systemctl takes as it is. */
	for (p = r->service; *p; p++)
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') && !(*p >= '0' && *p <= '9') &&
		    !strchr("-_.:", *p))
			break;
	if (!*r->service || *p || r->service[0] == '.' || strlen(r->service) > 200)
		return kiln_fail(e, KILN_E_INVALID, "--service '%s': expected letters, digits, '-', '_', '.' or ':'",
				 r->service);
	if ((rc = unit_safe("--working-directory", r->working_dir, true, e)) ||
	    (rc = unit_safe("--config", r->config, true, e)) || (rc = unit_safe("kiln's path", r->kiln, true, e)) ||
	    (r->user && (rc = unit_safe("--user", r->user, false, e))))
		return rc;
	snprintf(r->config_dir, sizeof(r->config_dir), "%s", r->config);
	*strrchr(r->config_dir, '/') = '\0';
	if (!r->config_dir[0])
		strcpy(r->config_dir, "/");
	snprintf(r->stop_timeout, sizeof(r->stop_timeout), "%ds",
		 (o->shutdown_timeout > 0 ? o->shutdown_timeout : 0) + 60);
	if (snprintf(r->unit, sizeof(r->unit), "%s/%s.service", r->unit_dir, r->service) >= (int)sizeof(r->unit))
		return kiln_fail(e, KILN_E_LIMIT, "install: unit path %s/%s.service too long", r->unit_dir, r->service);
	return KILN_OK;
}

/* The value of placeholder name (between '@'s, len bytes); *known false
 * when the template names one this code does not fill. */
static const char *placeholder(const struct resolved *r, const char *name, size_t len, bool *known)
{
	static const char *const names[] = { "KILN", "CONFIG", "CONFIG_DIR", "WORKDIR", "USER", "STOP_TIMEOUT" };
	const char *values[] = { r->kiln, r->config, r->config_dir, r->working_dir, r->user, r->stop_timeout };
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && !memcmp(names[i], name, len)) {
			*known = true;
			return values[i];
		}
	*known = false;
	return NULL;
}

/* Append n bytes to the growing buffer *out. */
static enum kiln_rc put(char **out, size_t *len, size_t *cap, const char *s, size_t n, struct kiln_err *e)
{
	enum kiln_rc rc = kiln_vec_grow(out, cap, *len, n + 1, 1, UNIT_MAX);

	if (rc)
		return kiln_fail(e, rc, rc == KILN_E_NOMEM ? "install: out of memory" : "install: the unit passes %d bytes",
				 UNIT_MAX);
	memcpy(*out + *len, s, n);
	*len += n;
	(*out)[*len] = '\0';
	return KILN_OK;
}

/* One template line (with its newline) into *out: placeholders filled, or
 * nothing at all when one of them has no value. */
static enum kiln_rc render_line(const struct resolved *r, const char *line, size_t n, unsigned lineno, char **out,
				size_t *len, size_t *cap, struct kiln_err *e)
{
	size_t start = *len, i = 0;
	enum kiln_rc rc;

	while (i < n) {
		const char *at = memchr(line + i, '@', n - i), *end, *v;
		bool known;

		if (!at)
			return put(out, len, cap, line + i, n - i, e);
		if ((rc = put(out, len, cap, line + i, (size_t)(at - line) - i, e)))
			return rc;
		end = memchr(at + 1, '@', n - (size_t)(at + 1 - line));
		if (!end)
			return kiln_fail(e, KILN_E_SYNTAX, "%s:%u: '@' without its closing '@'", r->template_path,
					 lineno);
		v = placeholder(r, at + 1, (size_t)(end - at - 1), &known);
		if (!known)
			return kiln_fail(e, KILN_E_SYNTAX, "%s:%u: unknown placeholder @%.*s@", r->template_path, lineno,
					 (int)(end - at - 1), at + 1);
		if (!v) {
			*len = start;
			(*out)[start] = '\0';
			return KILN_OK;
		}
		if ((rc = put(out, len, cap, v, strlen(v), e)))
			return rc;
		i = (size_t)(end - line) + 1;
	}
	return KILN_OK;
}

static enum kiln_rc render(const struct resolved *r, char **out, struct kiln_err *e)
{
	char *tpl = NULL, *p, *nl;
	size_t tlen, len = 0, cap = 0;
	unsigned lineno = 1;
	enum kiln_rc rc;
	int err;

	*out = NULL;
	if ((err = kiln_read_file(r->template_path, UNIT_MAX, &tpl, &tlen)) < 0)
		return kiln_fail(e, err == -ENOENT ? KILN_E_NOTFOUND : KILN_E_IO, "install: reading %s: %s",
				 r->template_path, err == -EFBIG ? "too large" : strerror(-err));
	if ((rc = put(out, &len, &cap, MARK, strlen(MARK), e)))
		goto out;
	for (p = tpl; *p; p = nl, lineno++) {
		nl = strchr(p, '\n');
		nl = nl ? nl + 1 : p + strlen(p);
		if ((rc = render_line(r, p, (size_t)(nl - p), lineno, out, &len, &cap, e)))
			goto out;
	}
out:
	free(tpl);
	if (rc) {
		free(*out);
		*out = NULL;
	}
	return rc;
}

enum kiln_rc kiln_install_render(const struct kiln_install_opts *o, char **out, struct kiln_err *e)
{
	struct resolved r;
	enum kiln_rc rc;

	*out = NULL;
	if ((rc = resolve(o, &r, e)))
		return rc;
	return render(&r, out, e);
}

/* 1 when path is a unit kiln install wrote, 0 when it is another, -1 with
 * e filled when it cannot be read (-ENOENT: *missing set). */
static int ours(const char *path, bool *missing, struct kiln_err *e)
{
	char *text = NULL;
	size_t len;
	int err, mine;

	*missing = false;
	if ((err = kiln_read_file(path, UNIT_MAX, &text, &len)) < 0) {
		if (err == -ENOENT) {
			*missing = true;
			return 0;
		}
		kiln_fail(e, KILN_E_IO, "%s: %s", path, err == -EFBIG ? "too large for a unit" : strerror(-err));
		return -1;
	}
	mine = !strncmp(text, MARK, strlen(MARK));
	free(text);
	return mine;
}

static enum kiln_rc systemctl(const struct resolved *r, const char *a1, const char *a2, const char *a3,
			      struct kiln_err *e)
{
	char unit[256];
	char *argv[5] = { (char *)r->systemctl, (char *)a1, NULL, NULL, NULL };
	char err[256] = "";
	struct kiln_spawn_io io = { .err = err, .err_size = sizeof(err) };

	snprintf(unit, sizeof(unit), "%s.service", r->service);
	/* a2/a3: "UNIT" stands for the unit's name. */
	if (a2)
		argv[2] = !strcmp(a2, "UNIT") ? unit : (char *)a2;
	if (a3)
		argv[3] = !strcmp(a3, "UNIT") ? unit : (char *)a3;
	return kiln_spawn_io(argv, &io, e);
}

enum kiln_rc kiln_install(const struct kiln_install_opts *o, struct kiln_err *e)
{
	struct resolved r;
	char *unit = NULL;
	bool missing;
	enum kiln_rc rc;
	int mine;

	if ((rc = resolve(o, &r, e)))
		return rc;
	if ((mine = ours(r.unit, &missing, e)) < 0)
		return e->rc;
	if (!mine && !missing)
		return kiln_fail(e, KILN_E_INVALID,
				 "%s exists and kiln install did not write it: remove it, or name another --service",
				 r.unit);
	if ((rc = render(&r, &unit, e)))
		goto out;
	if (kiln_mkdir_p(r.unit_dir) < 0) {
		rc = kiln_fail_errno(e, "install: creating %s", r.unit_dir);
		goto out;
	}
	if ((rc = kiln_write_atomic(r.unit, unit, strlen(unit), 0644, e)) ||
	    (rc = systemctl(&r, "daemon-reload", NULL, NULL, e)) || (rc = systemctl(&r, "enable", "UNIT", NULL, e)))
		goto out;
out:
	free(unit);
	return rc;
}

enum kiln_rc kiln_uninstall(const struct kiln_install_opts *o, struct kiln_err *e)
{
	struct resolved r;
	bool missing;
	enum kiln_rc rc;
	int mine;

	if ((rc = resolve(o, &r, e)))
		return rc;
	if ((mine = ours(r.unit, &missing, e)) < 0)
		return e->rc;
	if (missing)
		return kiln_fail(e, KILN_E_NOTFOUND, "%s: no such unit (was it installed under another --service?)",
				 r.unit);
	if (!mine)
		return kiln_fail(e, KILN_E_INVALID, "%s: kiln install did not write it (a package's unit?): left alone",
				 r.unit);
	if ((rc = systemctl(&r, "disable", "--now", "UNIT", e)))
		return rc;
	if (unlink(r.unit) < 0 && errno != ENOENT)
		return kiln_fail_errno(e, "uninstall: removing %s", r.unit);
	return systemctl(&r, "daemon-reload", NULL, NULL, e);
}
