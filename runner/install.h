/* kiln install / kiln uninstall: kiln as a systemd service on a host
 * without the Debian package, as gitlab-runner install/uninstall do. The
 * unit comes from the same template as the package's
 * (systemd/kiln.service.in, installed under kiln_data_dir()). */
#ifndef KILN_INSTALL_H
#define KILN_INSTALL_H

#include "lib/result.h"

/* What to install; every NULL means the default named beside it. */
struct kiln_install_opts {
	const char *service;     /* unit NAME.service; "kiln" */
	const char *user;        /* User=; NULL: root (the jail needs root) */
	const char *working_dir; /* WorkingDirectory=; "/var/lib/kiln" */
	const char *config;      /* kiln run --config; kiln_config_default_path() */
	int shutdown_timeout;    /* the configuration's; TimeoutStopSec is this + 60 s */
	const char *kiln;        /* ExecStart's program; this process's /proc/self/exe */
	const char *template_path; /* kiln_data_dir()/systemd/kiln.service.in */
	/* Injectable for tests: */
	const char *unit_dir;    /* "/etc/systemd/system" */
	const char *systemctl;   /* the systemctl program; "systemctl" (PATH) */
};

/* Write UNIT_DIR/NAME.service from the template, then `systemctl
 * daemon-reload` and `systemctl enable NAME.service` (it is not started:
 * `systemctl start NAME`). An existing unit is replaced only when an
 * earlier kiln install wrote it. Paths must be absolute, without
 * whitespace, quotes, '%' or '\' (systemd would read them otherwise). */
enum kiln_rc kiln_install(const struct kiln_install_opts *o, struct kiln_err *e);

/* `systemctl disable --now NAME.service` (a stop: kiln drains for
 * shutdown_timeout), remove the unit file that kiln install wrote, then
 * `systemctl daemon-reload`. KILN_E_NOTFOUND when there is no such unit;
 * a unit kiln install did not write is refused and left alone. */
enum kiln_rc kiln_uninstall(const struct kiln_install_opts *o, struct kiln_err *e);

/* The unit kiln_install would write, rendered from the template into *out
 * (NUL-terminated, caller frees). */
enum kiln_rc kiln_install_render(const struct kiln_install_opts *o, char **out, struct kiln_err *e);

#endif
