#include "runner/config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <jansson.h>

#include "executors/executor.h"
#include "executors/jail.h"
#include "lib/readfile.h"
#include "lib/yaml.h"
#include "oci/dockercfg.h"

#define CONFIG_MAX_BYTES (1 << 20)

/* F_EXECUTOR: a string that executor_known takes. */
enum field_type { F_STR, F_EXECUTOR, F_INT, F_BOOL, F_LONG, F_CIDRS };

struct field {
	const char *key;
	enum field_type type;
	size_t off;
	long min, max;
	const char *const *choices; /* allowed strings, NULL-terminated */
};

static const char *const log_formats[] = { "text", "json", NULL };

/* The job VM settings, at offset off inside the struct being parsed:
 * global `defaults` and every runner share them. */
#define VM_FIELD(off, key, type, member, min, max, choices) \
	{ key, type, (off) + offsetof(struct kiln_vm_settings, member), min, max, choices }
#define VM_FIELDS(off)                                                              \
	VM_FIELD(off, "executor", F_EXECUTOR, executor, 0, 0, NULL),                     \
	VM_FIELD(off, "image", F_STR, image, 0, 0, NULL),                                \
	VM_FIELD(off, "kernel", F_STR, kernel, 0, 0, NULL),                              \
	VM_FIELD(off, "vcpus", F_INT, vcpus, 1, 32, NULL),                               \
	VM_FIELD(off, "memory_mib", F_INT, memory_mib, 64, 65536, NULL),                 \
	VM_FIELD(off, "network", F_BOOL, network, 0, 0, NULL),                           \
	VM_FIELD(off, "snapshots", F_BOOL, snapshots, 0, 0, NULL),                       \
	VM_FIELD(off, "rx_rate_limit", F_LONG, rx_rate_limit, 0, LONG_MAX, NULL),        \
	VM_FIELD(off, "tx_rate_limit", F_LONG, tx_rate_limit, 0, LONG_MAX, NULL),        \
	VM_FIELD(off, "disk_rate_limit", F_LONG, disk_rate_limit, 0, LONG_MAX, NULL),    \
	VM_FIELD(off, "disk_iops_limit", F_LONG, disk_iops_limit, 0, LONG_MAX, NULL),    \
	VM_FIELD(off, "allowed_networks", F_CIDRS, allowed_networks, 0, 0, NULL),        \
	VM_FIELD(off, "denied_networks", F_CIDRS, denied_networks, 0, 0, NULL)

static const struct field vm_fields[] = { VM_FIELDS(0), { NULL } };

static const struct field runner_fields[] = {
	{ "name", F_STR, offsetof(struct kiln_runner_config, name), 0, 0, NULL },
	{ "url", F_STR, offsetof(struct kiln_runner_config, url), 0, 0, NULL },
	{ "token", F_STR, offsetof(struct kiln_runner_config, token), 0, 0, NULL },
	{ "tls_ca_file", F_STR, offsetof(struct kiln_runner_config, tls_ca_file), 0, 0, NULL },
	{ "tls_cert_file", F_STR, offsetof(struct kiln_runner_config, tls_cert_file), 0, 0, NULL },
	{ "tls_key_file", F_STR, offsetof(struct kiln_runner_config, tls_key_file), 0, 0, NULL },
	{ "cache_dir", F_STR, offsetof(struct kiln_runner_config, cache_dir), 0, 0, NULL },
	{ "limit", F_INT, offsetof(struct kiln_runner_config, limit), 0, 1000, NULL },
	{ "request_concurrency", F_INT, offsetof(struct kiln_runner_config, request_concurrency), 1, 100, NULL },
	{ "output_limit", F_INT, offsetof(struct kiln_runner_config, output_limit), 1, 102400, NULL },
	{ "token_obtained_at", F_LONG, offsetof(struct kiln_runner_config, token_obtained_at), 0, LONG_MAX, NULL },
	{ "token_expires_at", F_LONG, offsetof(struct kiln_runner_config, token_expires_at), 0, LONG_MAX, NULL },
	VM_FIELDS(offsetof(struct kiln_runner_config, vm)),
	{ NULL }
};

#define GH_FIELD(key, type, member, min, max) { key, type, offsetof(struct kiln_github_config, member), min, max, NULL }

static const struct field github_fields[] = {
	GH_FIELD("name", F_STR, name, 0, 0),
	GH_FIELD("url", F_STR, url, 0, 0),
	GH_FIELD("api_url", F_STR, api_url, 0, 0),
	GH_FIELD("token", F_STR, token, 0, 0),
	GH_FIELD("app_id", F_LONG, app_id, 1, LONG_MAX),
	GH_FIELD("private_key_file", F_STR, private_key_file, 0, 0),
	GH_FIELD("installation_id", F_LONG, installation_id, 1, LONG_MAX),
	GH_FIELD("runner_group_id", F_LONG, runner_group_id, 1, LONG_MAX),
	GH_FIELD("name_prefix", F_STR, name_prefix, 0, 0),
	GH_FIELD("warm_pool", F_INT, warm_pool, 0, 1000),
	GH_FIELD("max_runners", F_INT, max_runners, 0, 1000),
	GH_FIELD("idle_timeout", F_INT, idle_timeout, 10, 86400),
	GH_FIELD("poll_interval", F_INT, poll_interval, 1, 3600),
	GH_FIELD("tls_ca_file", F_STR, tls_ca_file, 0, 0),
	GH_FIELD("webhook_secret", F_STR, webhook_secret, 0, 0),
	VM_FIELDS(offsetof(struct kiln_github_config, vm)),
	{ NULL }
};

/* GitHub's own labels of a self-hosted Linux x64 runner: what `runs-on:
 * self-hosted` and the usual triples ask for. */
static const char *const github_default_labels[] = { "self-hosted", "linux", "x64", NULL };
#define GITHUB_IDLE_TIMEOUT_DEFAULT 300
#define GITHUB_POLL_INTERVAL_DEFAULT 30

static const struct field global_fields[] = {
	{ "state_dir", F_STR, offsetof(struct kiln_config, state_dir), 0, 0, NULL },
	{ "cache_dir", F_STR, offsetof(struct kiln_config, cache_dir), 0, 0, NULL },
	{ "images_dir", F_STR, offsetof(struct kiln_config, images_dir), 0, 0, NULL },
	{ "templates_dir", F_STR, offsetof(struct kiln_config, templates_dir), 0, 0, NULL },
	{ "log_format", F_STR, offsetof(struct kiln_config, log_format), 0, 0, log_formats },
	{ "listen_address", F_STR, offsetof(struct kiln_config, listen_address), 0, 0, NULL },
	{ "concurrent", F_INT, offsetof(struct kiln_config, concurrent), 1, 1000, NULL },
	{ "check_interval", F_INT, offsetof(struct kiln_config, check_interval), 1, 3600, NULL },
	{ "shutdown_timeout", F_INT, offsetof(struct kiln_config, shutdown_timeout), 0, 86400, NULL },
	{ "jail", F_BOOL, offsetof(struct kiln_config, jail), 0, 0, NULL },
	{ "jail_uid_base", F_LONG, offsetof(struct kiln_config, jail_uid_base), 1, 0x7fffffffL - JAIL_SLOTS, NULL },
	{ NULL }
};

static const struct field registry_fields[] = {
	{ "host", F_STR, offsetof(struct kiln_registry_config, host), 0, 0, NULL },
	{ "username", F_STR, offsetof(struct kiln_registry_config, username), 0, 0, NULL },
	{ "password", F_STR, offsetof(struct kiln_registry_config, password), 0, 0, NULL },
	{ "tls_ca_file", F_STR, offsetof(struct kiln_registry_config, tls_ca_file), 0, 0, NULL },
	{ "insecure", F_BOOL, offsetof(struct kiln_registry_config, insecure), 0, 0, NULL },
	{ "docker_config", F_STR, offsetof(struct kiln_registry_config, docker_config), 0, 0, NULL },
	{ NULL }
};

static const struct field oci_fields[] = {
	{ "max_size_mib", F_LONG, offsetof(struct kiln_oci_config, max_size_mib), 1, 1L << 40, NULL },
	{ "disable_entrypoint_overwrite", F_BOOL, offsetof(struct kiln_oci_config, disable_entrypoint_overwrite), 0, 0,
	  NULL },
	{ "services_limit", F_INT, offsetof(struct kiln_oci_config, services_limit), -1, KILN_CONFIG_MAX_SERVICES, NULL },
	{ "wait_for_services_timeout", F_INT, offsetof(struct kiln_oci_config, wait_for_services_timeout), -1, 86400,
	  NULL },
	{ NULL }
};

static const char *const pull_policies[] = { "always", "if-not-present", "never", NULL };

struct parse_ctx {
	const char *name;
	struct kiln_err *e;
	struct kiln_config *cfg;
	char where[64]; /* of the cache: section being read */
};

/* `cache:` of a runner or of `defaults`: gitlab-runner's [runners.cache]
 * (cache/store.h). Only S3 is a distributed type here. */
static const char *const cache_types[] = { "s3", NULL };
static const char *const s3_auth_types[] = { "access-key", "iam", NULL };

#define CACHE_FIELD(key, type, member, choices) \
	{ key, type, offsetof(struct kiln_cache_config, member), 0, 0, choices }
#define S3_FIELD(key, type, member, choices) { key, type, offsetof(struct kiln_cache_s3, member), 0, 0, choices }

static const struct field cache_fields[] = {
	CACHE_FIELD("type", F_STR, type, cache_types),
	CACHE_FIELD("shared", F_BOOL, shared, NULL),
	CACHE_FIELD("path", F_STR, path, NULL),
	{ NULL }
};

static const struct field s3_fields[] = {
	S3_FIELD("server_address", F_STR, server_address, NULL),
	S3_FIELD("bucket_name", F_STR, bucket_name, NULL),
	S3_FIELD("bucket_location", F_STR, bucket_location, NULL),
	S3_FIELD("access_key", F_STR, access_key, NULL),
	S3_FIELD("secret_key", F_STR, secret_key, NULL),
	S3_FIELD("secret_key_file", F_STR, secret_key_file, NULL),
	S3_FIELD("authentication_type", F_STR, authentication_type, s3_auth_types),
	S3_FIELD("insecure", F_BOOL, insecure, NULL),
	{ NULL }
};

static char *xstrdup_env(const char *env, const char *fallback)
{
	const char *v = getenv(env);

	return strdup(v && *v ? v : fallback);
}

const char *kiln_config_templates_dir(const struct kiln_config *cfg, char *buf, size_t size)
{
	if (cfg->templates_dir)
		snprintf(buf, size, "%s", cfg->templates_dir);
	else
		snprintf(buf, size, "%s/templates", cfg->state_dir);
	return buf;
}

const char *kiln_config_default_path(void)
{
	static char buf[PATH_MAX];
	const char *v = getenv("KILN_CONFIG");
	const char *home;

	if (v && *v)
		return v;
	if (geteuid() == 0)
		return "/etc/kiln/config.yml";
	home = getenv("HOME");
	snprintf(buf, sizeof(buf), "%s/.config/kiln/config.yml", home ? home : "/");
	return buf;
}

static void vm_defaults(struct kiln_vm_settings *vm)
{
	vm->vcpus = 1;
	vm->memory_mib = 512;
	vm->network = true;
	/* Where the executor has templates (kiln-vmm), a job restores its
	 * machine's; elsewhere it boots cold and says why (docs/vmm.md). */
	vm->snapshots = true;
	vm->rx_rate_limit = KILN_NET_RATE_DEFAULT;
	vm->tx_rate_limit = KILN_NET_RATE_DEFAULT;
	vm->disk_rate_limit = KILN_DISK_RATE_DEFAULT;
	vm->disk_iops_limit = KILN_DISK_IOPS_DEFAULT;
}

enum kiln_rc kiln_config_defaults(struct kiln_config *cfg, struct kiln_err *e)
{
	char buf[PATH_MAX];

	memset(cfg, 0, sizeof(*cfg));
	cfg->state_dir = xstrdup_env("KILN_STATE_DIR", "/var/lib/kiln");
	cfg->cache_dir = xstrdup_env("KILN_CACHE_DIR", "/var/cache/kiln");
	if (cfg->state_dir)
		snprintf(buf, sizeof(buf), "%s/images", cfg->state_dir);
	cfg->images_dir = xstrdup_env("KILN_IMAGES_DIR", buf);
	/* Unset: STATE/templates, after the file's state_dir. */
	if (getenv("KILN_TEMPLATES_DIR") && *getenv("KILN_TEMPLATES_DIR") &&
	    !(cfg->templates_dir = strdup(getenv("KILN_TEMPLATES_DIR")))) {
		kiln_config_free(cfg);
		return kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
	}
	cfg->log_format = strdup("text");
	cfg->concurrent = 1;
	cfg->check_interval = 3;
	cfg->shutdown_timeout = 30;
	cfg->jail = true;
	cfg->jail_uid_base = JAIL_UID_BASE_DEFAULT;
	cfg->oci.services_limit = -1;
	vm_defaults(&cfg->defaults);
	cfg->defaults.executor = strdup("auto");
	cfg->defaults.image = strdup("debian");
	cfg->defaults.kernel = strdup("kernel");
	if (!cfg->state_dir || !cfg->cache_dir || !cfg->images_dir || !cfg->log_format ||
	    !cfg->defaults.executor || !cfg->defaults.image || !cfg->defaults.kernel) {
		kiln_config_free(cfg);
		return kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
	}
	return KILN_OK;
}

static enum kiln_rc at(struct parse_ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *where,
		       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum kiln_rc at(struct parse_ctx *c, const struct cy_node *n, enum kiln_rc rc, const char *where,
		       const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(c->e, rc, "%s:%u: %s%s%s", c->name, n->line, where, *where ? ": " : "", what);
}

/* A single value (a null too: the tree is read as written, so its str is
 * the text). */
static bool is_scalar(const struct cy_node *n)
{
	return n->kind == CY_SCALAR || n->kind == CY_NULL;
}

/* A list of IPv4 networks (`[]` or null: none); each bad entry is named
 * by its index. */
static enum kiln_rc set_cidrs(struct parse_ctx *c, struct kiln_cidrs *dst, const struct cy_node *v,
			      const char *key)
{
	size_t i;

	dst->n = 0;
	if (v->kind == CY_NULL)
		return KILN_OK;
	if (v->kind != CY_SEQ)
		return at(c, v, KILN_E_INVALID, key, "%s", "expected a list of networks (a.b.c.d/len)");
	for (i = 0; i < v->n; i++) {
		const struct cy_node *item = v->items[i];
		const char *why;
		char where[300];

		snprintf(where, sizeof(where), "%s[%zu]", key, i);
		if (!is_scalar(item))
			return at(c, item, KILN_E_INVALID, where, "%s", "expected a network (a.b.c.d/len)");
		if (i >= KILN_MAX_NETWORKS)
			return at(c, item, KILN_E_LIMIT, key, "more than %d networks", KILN_MAX_NETWORKS);
		if (!kiln_cidr_parse(item->str, &dst->v[i], &why))
			return at(c, item, KILN_E_INVALID, where, "'%.60s': %s", item->str, why);
		dst->n = i + 1;
	}
	return KILN_OK;
}

static enum kiln_rc set_field(struct parse_ctx *c, const struct field *f, void *base, const struct cy_node *v,
			      const char *where)
{
	char key[256];
	const char *s;
	char *end;
	long num;

	snprintf(key, sizeof(key), "%s%s%s", where, *where ? "." : "", f->key);
	if (f->type == F_CIDRS)
		return set_cidrs(c, (struct kiln_cidrs *)((char *)base + f->off), v, key);
	if (!is_scalar(v))
		return at(c, v, KILN_E_INVALID, key, "%s", "expected a single value, not a list or mapping");
	s = v->str;
	switch (f->type) {
	case F_STR:
	case F_EXECUTOR: {
		char **dst = (char **)((char *)base + f->off);
		const char *const *ch;

		if (v->kind == CY_NULL) {
			free(*dst);
			*dst = NULL;
			return KILN_OK;
		}
		if (f->choices) {
			for (ch = f->choices; *ch && strcmp(*ch, s); ch++)
				;
			if (!*ch)
				return at(c, v, KILN_E_INVALID, key, "unknown value '%s'", s);
		}
		if (f->type == F_EXECUTOR && !executor_known(s))
			return at(c, v, KILN_E_INVALID, key, "unknown value '%s'", s);
		free(*dst);
		*dst = strdup(s);
		return *dst ? KILN_OK : kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	}
	case F_BOOL: {
		bool *dst = (bool *)((char *)base + f->off);

		if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
			*dst = true;
		else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
			*dst = false;
		else
			return at(c, v, KILN_E_INVALID, key, "expected true or false, got '%s'", s);
		return KILN_OK;
	}
	case F_INT:
	case F_LONG:
		errno = 0;
		num = strtol(s, &end, 10);
		if (errno || end == s || *end)
			return at(c, v, KILN_E_INVALID, key, "expected an integer, got '%s'", s);
		if (num < f->min || num > f->max) {
			char range[96];
			snprintf(range, sizeof(range), "%s out of range %ld..%ld", s, f->min, f->max);
			return at(c, v, KILN_E_INVALID, key, "%s", range);
		}
		if (f->type == F_INT)
			*(int *)((char *)base + f->off) = (int)num;
		else
			*(long *)((char *)base + f->off) = num;
		return KILN_OK;
	case F_CIDRS:
		break; /* above */
	}
	return KILN_E_INVALID;
}

/* Walk a mapping node, handing each key to its field; `extra` gets keys not
 * in the table (for nested objects) and returns 1 when it took the key. */
typedef int (*extra_fn)(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			enum kiln_rc *rc);

static enum kiln_rc parse_mapping(struct parse_ctx *c, const struct cy_node *map, const struct field *fields,
				  void *base, const char *where, extra_fn extra)
{
	size_t i, j;

	if (map->kind != CY_MAP)
		return at(c, map, KILN_E_INVALID, where, "%s", "expected a mapping");
	for (i = 0; i < map->n; i++) {
		const struct cy_node *k = map->pairs[i].knode, *v = map->pairs[i].value;
		const char *key = map->pairs[i].key;
		const struct field *f;
		enum kiln_rc rc = KILN_OK;

		/* YAML says keys are unique; silently taking the last would hide a typo'd edit. */
		for (j = 0; j < i; j++)
			if (!strcmp(map->pairs[j].key, key))
				return at(c, k, KILN_E_INVALID, where, "key '%s' appears twice", key);
		for (f = fields; f->key && strcmp(f->key, key); f++)
			;
		if (f->key) {
			rc = set_field(c, f, base, v, where);
		} else if (!(extra && extra(c, key, v, base, &rc))) {
			return at(c, k, KILN_E_INVALID, where, "unknown key '%s'", key);
		}
		if (rc)
			return rc;
	}
	return KILN_OK;
}

static void free_cache(struct kiln_cache_config *cc)
{
	free(cc->type);
	free(cc->path);
	free(cc->s3.server_address);
	free(cc->s3.bucket_name);
	free(cc->s3.bucket_location);
	free(cc->s3.access_key);
	free(cc->s3.secret_key);
	free(cc->s3.secret_key_file);
	free(cc->s3.authentication_type);
	memset(cc, 0, sizeof(*cc));
}

static bool dup_str(char **dst, const char *src)
{
	*dst = src ? strdup(src) : NULL;
	return !src || *dst;
}

static enum kiln_rc dup_cache(struct kiln_cache_config *dst, const struct kiln_cache_config *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->shared = src->shared;
	dst->s3.insecure = src->s3.insecure;
	if (!dup_str(&dst->type, src->type) || !dup_str(&dst->path, src->path) ||
	    !dup_str(&dst->s3.server_address, src->s3.server_address) ||
	    !dup_str(&dst->s3.bucket_name, src->s3.bucket_name) ||
	    !dup_str(&dst->s3.bucket_location, src->s3.bucket_location) ||
	    !dup_str(&dst->s3.access_key, src->s3.access_key) || !dup_str(&dst->s3.secret_key, src->s3.secret_key) ||
	    !dup_str(&dst->s3.secret_key_file, src->s3.secret_key_file) ||
	    !dup_str(&dst->s3.authentication_type, src->s3.authentication_type))
		return KILN_E_NOMEM;
	return KILN_OK;
}

static int cache_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
		       enum kiln_rc *rc)
{
	char where[80];

	if (strcmp(key, "s3"))
		return 0;
	snprintf(where, sizeof(where), "%s.s3", c->where);
	*rc = parse_mapping(c, v, s3_fields, &((struct kiln_cache_config *)base)->s3, where, NULL);
	return 1;
}

/* A `cache:` mapping at where, replacing what cc held (a runner's replaces
 * the defaults' as a whole). */
static enum kiln_rc parse_cache(struct parse_ctx *c, struct kiln_cache_config *cc, const struct cy_node *v,
				const char *where)
{
	const struct kiln_cache_s3 *s3 = &cc->s3;
	enum kiln_rc rc;

	free_cache(cc);
	snprintf(c->where, sizeof(c->where), "%s", where);
	if ((rc = parse_mapping(c, v, cache_fields, cc, where, cache_extra)))
		return rc;
	if (!cc->type)
		return KILN_OK; /* the local cache only, as without the section */
	if (!s3->server_address)
		return at(c, v, KILN_E_INVALID, where, "%s", "type s3 needs s3.server_address");
	if (!s3->bucket_name)
		return at(c, v, KILN_E_INVALID, where, "%s", "type s3 needs s3.bucket_name");
	if (s3->authentication_type && !strcmp(s3->authentication_type, "iam"))
		return KILN_OK;
	if (!s3->access_key)
		return at(c, v, KILN_E_INVALID, where, "%s", "s3.access_key is needed unless authentication_type is iam");
	if (!s3->secret_key == !s3->secret_key_file)
		return at(c, v, KILN_E_INVALID, where, "%s", "set one of s3.secret_key and s3.secret_key_file");
	return KILN_OK;
}

static int defaults_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			  enum kiln_rc *rc)
{
	(void)base;
	if (strcmp(key, "cache"))
		return 0;
	*rc = parse_cache(c, &c->cfg->default_cache, v, "defaults.cache");
	return 1;
}

static int runner_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			enum kiln_rc *rc)
{
	struct kiln_runner_config *r = base;
	char where[48];

	if (strcmp(key, "cache"))
		return 0;
	snprintf(where, sizeof(where), "runners[%td].cache", r - c->cfg->runners);
	*rc = parse_cache(c, &r->cache, v, where);
	return 1;
}

static enum kiln_rc dup_vm(struct kiln_vm_settings *dst, const struct kiln_vm_settings *src)
{
	*dst = *src;
	dst->executor = src->executor ? strdup(src->executor) : NULL;
	dst->image = src->image ? strdup(src->image) : NULL;
	dst->kernel = src->kernel ? strdup(src->kernel) : NULL;
	if ((src->executor && !dst->executor) || (src->image && !dst->image) ||
	    (src->kernel && !dst->kernel))
		return KILN_E_NOMEM;
	return KILN_OK;
}

static void free_vm(struct kiln_vm_settings *vm)
{
	free(vm->executor);
	free(vm->image);
	free(vm->kernel);
	memset(vm, 0, sizeof(*vm));
}

static enum kiln_rc parse_runners(struct parse_ctx *c, struct kiln_config *cfg, const struct cy_node *seq)
{
	size_t n, i;

	if (seq->kind != CY_SEQ)
		return at(c, seq, KILN_E_INVALID, "runners", "%s", "expected a list");
	n = seq->n;
	if (n > KILN_CONFIG_MAX_RUNNERS)
		return at(c, seq, KILN_E_LIMIT, "runners", "%s", "more than 64 runners");
	cfg->runners = calloc(n ? n : 1, sizeof(*cfg->runners));
	if (!cfg->runners)
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	for (i = 0; i < n; i++) {
		struct kiln_runner_config *r = &cfg->runners[cfg->n_runners++];
		const struct cy_node *item = seq->items[i];
		char where[32];
		enum kiln_rc rc;

		r->request_concurrency = 1;
		if (dup_vm(&r->vm, &cfg->defaults) || dup_cache(&r->cache, &cfg->default_cache))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		snprintf(where, sizeof(where), "runners[%zu]", cfg->n_runners - 1);
		rc = parse_mapping(c, item, runner_fields, r, where, runner_extra);
		if (rc)
			return rc;
		if (!r->url)
			return at(c, item, KILN_E_INVALID, where, "%s", "missing key 'url'");
		if (!r->token)
			return at(c, item, KILN_E_INVALID, where, "%s", "missing key 'token'");
		if (!r->name && !(r->name = strdup(r->url)))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		if (!r->tls_cert_file != !r->tls_key_file)
			return at(c, item, KILN_E_INVALID, where, "%s",
				  "tls_cert_file and tls_key_file go together: set both or neither");
	}
	return KILN_OK;
}

static void free_labels(struct kiln_github_config *g)
{
	size_t i;

	for (i = 0; i < g->n_labels; i++)
		free(g->labels[i]);
	free(g->labels);
	g->labels = NULL;
	g->n_labels = 0;
}

static enum kiln_rc add_label(struct parse_ctx *c, struct kiln_github_config *g, const char *label)
{
	char **v = realloc(g->labels, (g->n_labels + 1) * sizeof(*v));

	if (!v)
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	g->labels = v;
	if (!(v[g->n_labels] = strdup(label)))
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	g->n_labels++;
	return KILN_OK;
}

/* `labels:` of a github entry: 1 to 100 non-empty strings without commas
 * (GitHub's runner takes them comma-separated), replacing the defaults. */
static int github_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			enum kiln_rc *rc)
{
	struct kiln_github_config *g = base;
	char where[64];
	size_t i, j;

	if (strcmp(key, "labels"))
		return 0;
	snprintf(where, sizeof(where), "github[%td].labels", g - c->cfg->github);
	free_labels(g);
	*rc = KILN_OK;
	if (v->kind != CY_SEQ || v->n == 0) {
		*rc = at(c, v, KILN_E_INVALID, where, "%s", "expected a list of 1 to 100 labels");
		return 1;
	}
	if (v->n > KILN_GITHUB_MAX_LABELS) {
		*rc = at(c, v, KILN_E_LIMIT, where, "%zu labels, GitHub takes at most %d", v->n,
			 KILN_GITHUB_MAX_LABELS);
		return 1;
	}
	for (i = 0; i < v->n && !*rc; i++) {
		const struct cy_node *item = v->items[i];

		if (item->kind != CY_SCALAR || !*item->str || strchr(item->str, ',') || strlen(item->str) > 256) {
			*rc = at(c, item, KILN_E_INVALID, where, "[%zu]: expected a label without commas", i);
			break;
		}
		for (j = 0; j < g->n_labels; j++)
			if (!strcasecmp(g->labels[j], item->str))
				break;
		if (j == g->n_labels) /* case-insensitive duplicates collapse */
			*rc = add_label(c, g, item->str);
	}
	return 1;
}

/* url is https://HOST/ORG or https://HOST/OWNER/REPO (http for tests):
 * one or two non-empty path segments, no query. */
static bool github_url_ok(const char *url)
{
	const char *p;
	int segs = 0;

	if (!strncmp(url, "https://", 8))
		p = url + 8;
	else if (!strncmp(url, "http://", 7))
		p = url + 7;
	else
		return false;
	p += strcspn(p, "/");
	if (p == url || !*p || strpbrk(p, "?#@ "))
		return false;
	while (*p == '/' && p[1] && p[1] != '/') {
		segs++;
		p = strchr(p + 1, '/');
		if (!p)
			break;
		if (!p[1])
			break; /* a trailing slash */
	}
	return (!p || !strcmp(p, "/")) && segs >= 1 && segs <= 2;
}

/* A runner name prefix: what GitHub takes in a name, short enough that
 * PREFIX-<12 hex> stays under its 64-character limit. */
static bool prefix_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 40 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static enum kiln_rc parse_github(struct parse_ctx *c, struct kiln_config *cfg, const struct cy_node *seq)
{
	size_t n, i, j, k;

	if (seq->kind != CY_SEQ)
		return at(c, seq, KILN_E_INVALID, "github", "%s", "expected a list");
	n = seq->n;
	if (n > KILN_CONFIG_MAX_RUNNERS)
		return at(c, seq, KILN_E_LIMIT, "github", "%s", "more than 64 entries");
	cfg->github = calloc(n ? n : 1, sizeof(*cfg->github));
	if (!cfg->github)
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	for (i = 0; i < n; i++) {
		struct kiln_github_config *g = &cfg->github[cfg->n_github++];
		const struct cy_node *item = seq->items[i];
		char where[32];
		enum kiln_rc rc;

		g->runner_group_id = 1;
		g->idle_timeout = GITHUB_IDLE_TIMEOUT_DEFAULT;
		g->poll_interval = GITHUB_POLL_INTERVAL_DEFAULT;
		if (dup_vm(&g->vm, &cfg->defaults))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		/* The runner image unless the entry names one: `defaults: image` is the GitLab jobs'. */
		free(g->vm.image);
		if (!(g->vm.image = strdup("github-runner")))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		snprintf(where, sizeof(where), "github[%zu]", i);
		if ((rc = parse_mapping(c, item, github_fields, g, where, github_extra)))
			return rc;
		if (!g->url)
			return at(c, item, KILN_E_INVALID, where, "%s", "missing key 'url'");
		if (!github_url_ok(g->url))
			return at(c, item, KILN_E_INVALID, where, "url '%.80s': expected https://HOST/ORG or https://HOST/OWNER/REPO",
				  g->url);
		if (g->api_url && strncmp(g->api_url, "https://", 8) && strncmp(g->api_url, "http://", 7))
			return at(c, item, KILN_E_INVALID, where, "api_url '%.80s': expected an https:// URL", g->api_url);
		if (!g->token == !g->app_id)
			return at(c, item, KILN_E_INVALID, where, "%s", "set one of 'token' and 'app_id'");
		if (g->app_id && !g->private_key_file)
			return at(c, item, KILN_E_INVALID, where, "%s", "'app_id' needs 'private_key_file'");
		if (!g->app_id && (g->private_key_file || g->installation_id))
			return at(c, item, KILN_E_INVALID, where, "%s",
				  "'private_key_file' and 'installation_id' go with 'app_id', not 'token'");
		if (g->name_prefix && !prefix_ok(g->name_prefix))
			return at(c, item, KILN_E_INVALID, where, "name_prefix '%.60s': 1 to 40 of A-Z a-z 0-9 . _ -",
				  g->name_prefix);
		if (!g->name_prefix && !(g->name_prefix = strdup("kiln")))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		if (g->max_runners && g->warm_pool > g->max_runners)
			return at(c, item, KILN_E_INVALID, where, "warm_pool %d is more than max_runners %d", g->warm_pool,
				  g->max_runners);
		if (!g->labels)
			for (k = 0; github_default_labels[k]; k++)
				if ((rc = add_label(c, g, github_default_labels[k])))
					return rc;
		if (!g->name) { /* HOST/PATH of the url, without a trailing slash */
			if (!(g->name = strdup(strstr(g->url, "://") + 3)))
				return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
			if (g->name[strlen(g->name) - 1] == '/')
				g->name[strlen(g->name) - 1] = '\0';
		}
		for (j = 0; j < i; j++)
			if (!strcmp(cfg->github[j].name, g->name))
				return at(c, item, KILN_E_INVALID, where, "name '%.60s' is already github[%zu]'s", g->name, j);
	}
	return KILN_OK;
}

/* The host of url ("https://user@[::1]:8443/x" -> "::1") in buf; false when
 * there is none or it does not fit. */
static bool url_host(const char *url, char *buf, size_t size)
{
	const char *p = strstr(url, "://"), *end, *at;
	size_t n;

	if (!p)
		return false;
	p += 3;
	end = p + strcspn(p, "/?#");
	at = memchr(p, '@', (size_t)(end - p));
	if (at)
		p = at + 1;
	if (*p == '[') {
		const char *close = memchr(p, ']', (size_t)(end - p));

		if (!close)
			return false;
		p++;
		end = close;
	} else {
		const char *colon = memchr(p, ':', (size_t)(end - p));

		if (colon)
			end = colon;
	}
	n = (size_t)(end - p);
	if (n == 0 || n >= size || memchr(p, '/', n))
		return false;
	memcpy(buf, p, n);
	buf[n] = '\0';
	return true;
}

static char *readable(const char *dir, const char *host, const char *suffix)
{
	char path[PATH_MAX];

	if ((size_t)snprintf(path, sizeof(path), "%s/certs/%s%s", dir, host, suffix) >= sizeof(path) ||
	    access(path, R_OK) < 0)
		return NULL;
	return strdup(path);
}

/* gitlab-runner's certs/ lookup beside the configuration: a runner without
 * tls_ca_file trusts <dir>/certs/<host>.crt, and one without a client
 * certificate presents <dir>/certs/<host>.auth.crt and .auth.key. */
static void find_host_certs(struct kiln_config *cfg, const char *path)
{
	char dir[PATH_MAX], host[256];
	const char *slash = strrchr(path, '/');
	size_t i;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash == path ? 1 : slash - path), path);
	for (i = 0; i < cfg->n_runners; i++) {
		struct kiln_runner_config *r = &cfg->runners[i];

		if (!url_host(r->url, host, sizeof(host)))
			continue;
		if (!r->tls_ca_file)
			r->tls_ca_file = readable(dir, host, ".crt");
		if (!r->tls_cert_file && !r->tls_key_file) {
			r->tls_cert_file = readable(dir, host, ".auth.crt");
			r->tls_key_file = r->tls_cert_file ? readable(dir, host, ".auth.key") : NULL;
			if (!r->tls_key_file) {
				free(r->tls_cert_file);
				r->tls_cert_file = NULL;
			}
		}
	}
}

/* A mirror as dockerd's registry-mirrors take it: [http[s]://]host[:port][/]. */
static bool mirror_parse(const char *s, struct kiln_registry_mirror *m)
{
	size_t n;

	m->insecure = !strncmp(s, "http://", 7);
	if (m->insecure)
		s += 7;
	else if (!strncmp(s, "https://", 8))
		s += 8;
	n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]");
	if (!n || n > 255 || (s[n] && strcmp(s + n, "/")) || *s == '.' || *s == '-' || *s == ':')
		return false;
	m->host = strndup(s, n);
	return true;
}

/* registries[i].mirrors: a list of hosts. */
static int registry_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			  enum kiln_rc *rc)
{
	struct kiln_registry_config *r = base;
	size_t i;

	if (strcmp(key, "mirrors"))
		return 0;
	if (v->kind != CY_SEQ || v->n > KILN_CONFIG_MAX_MIRRORS) {
		*rc = at(c, v, KILN_E_INVALID, "oci.registries", "mirrors: expected a list of at most %d hosts",
			 KILN_CONFIG_MAX_MIRRORS);
		return 1;
	}
	r->mirrors = calloc(v->n ? v->n : 1, sizeof(*r->mirrors));
	if (!r->mirrors) {
		*rc = kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		return 1;
	}
	for (i = 0; i < v->n; i++) {
		const struct cy_node *item = v->items[i];

		if (item->kind != CY_SCALAR || !mirror_parse(item->str, &r->mirrors[r->n_mirrors])) {
			*rc = at(c, item, KILN_E_INVALID, "oci.registries", "mirrors[%zu]: '%s' is not a host[:port] "
				 "(http:// for plain http)", i, item->kind == CY_SCALAR ? item->str : "(not a string)");
			return 1;
		}
		if (!r->mirrors[r->n_mirrors++].host) {
			*rc = kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
			return 1;
		}
	}
	return 1;
}

/* r's username and password from its docker_config file. */
static enum kiln_rc read_docker_config(struct parse_ctx *c, const struct cy_node *n, struct kiln_registry_config *r,
				       const char *where)
{
	char user[OCI_DOCKERCFG_FIELD_MAX], pass[OCI_DOCKERCFG_FIELD_MAX], *text = NULL;
	struct kiln_err e2 = { 0 };
	size_t len;
	enum kiln_rc rc;
	int err;

	if (r->username)
		return at(c, n, KILN_E_INVALID, where, "%s", "docker_config and username/password: set one of them");
	err = kiln_read_file(r->docker_config, OCI_DOCKERCFG_MAX_BYTES, &text, &len);
	if (err)
		return at(c, n, KILN_E_INVALID, where, "docker_config: %s: %s", r->docker_config,
			  err == -EFBIG ? "larger than 1 MiB" : strerror(-err));
	rc = oci_dockercfg_lookup(text, len, r->docker_config, r->host, user, pass, &e2);
	free(text);
	if (rc)
		return at(c, n, rc, where, "docker_config: %s", e2.msg);
	r->username = strdup(user);
	r->password = strdup(pass);
	explicit_bzero(pass, sizeof(pass));
	if (!r->username || !r->password)
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	return KILN_OK;
}

static enum kiln_rc parse_registries(struct parse_ctx *c, struct kiln_oci_config *oc, const struct cy_node *seq)
{
	size_t i;

	if (seq->kind != CY_SEQ)
		return at(c, seq, KILN_E_INVALID, "oci.registries", "%s", "expected a list");
	if (oc->registries)
		return at(c, seq, KILN_E_INVALID, "oci", "%s", "duplicate key 'registries'");
	if (seq->n > KILN_CONFIG_MAX_REGISTRIES)
		return at(c, seq, KILN_E_LIMIT, "oci.registries", "%s", "more than 64 registries");
	oc->registries = calloc(seq->n ? seq->n : 1, sizeof(*oc->registries));
	if (!oc->registries)
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	for (i = 0; i < seq->n; i++) {
		struct kiln_registry_config *r = &oc->registries[oc->n_registries++];
		char where[40];
		enum kiln_rc rc;

		snprintf(where, sizeof(where), "oci.registries[%zu]", i);
		if ((rc = parse_mapping(c, seq->items[i], registry_fields, r, where, registry_extra)))
			return rc;
		if (!r->host)
			return at(c, seq->items[i], KILN_E_INVALID, where, "%s", "missing key 'host'");
		if (!r->username != !r->password)
			return at(c, seq->items[i], KILN_E_INVALID, where, "%s",
				  "username and password go together: set both or neither");
		if (r->docker_config && (rc = read_docker_config(c, seq->items[i], r, where)))
			return rc;
	}
	return KILN_OK;
}

/* A list of 1 to KILN_CONFIG_MAX_ALLOWED non-empty image patterns
 * (allowed_images, allowed_services). */
static enum kiln_rc parse_patterns(struct parse_ctx *c, const struct cy_node *v, const char *where, char ***out,
				   size_t *n)
{
	size_t i;

	if (v->kind != CY_SEQ || !v->n || v->n > KILN_CONFIG_MAX_ALLOWED)
		return at(c, v, KILN_E_INVALID, where, "expected a list of 1 to %d image patterns",
			  KILN_CONFIG_MAX_ALLOWED);
	if (*out)
		return at(c, v, KILN_E_INVALID, where, "%s", "given twice");
	if (!(*out = calloc(v->n, sizeof(**out))))
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	for (i = 0; i < v->n; i++) {
		const struct cy_node *item = v->items[i];

		if (item->kind != CY_SCALAR || !item->str[0])
			return at(c, item, KILN_E_INVALID, where, "[%zu]: expected an image pattern (a string)", i);
		if (!((*out)[(*n)++] = strdup(item->str)))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	}
	return KILN_OK;
}

/* A list of strings, or one string (one argument), as a JSON array set as
 * o[key]. */
static enum kiln_rc service_argv(struct parse_ctx *c, const struct cy_node *v, const char *where, json_t *o,
				 const char *key)
{
	json_t *a = json_array();
	size_t i;

	if (!a || json_object_set_new(o, key, a))
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	if (v->kind == CY_SCALAR)
		return json_array_append_new(a, json_string(v->str)) ? kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory")
								       : KILN_OK;
	if (v->kind != CY_SEQ)
		return at(c, v, KILN_E_INVALID, where, "%s: expected a list of strings", key);
	for (i = 0; i < v->n; i++) {
		if (v->items[i]->kind != CY_SCALAR)
			return at(c, v->items[i], KILN_E_INVALID, where, "%s[%zu]: expected a string", key, i);
		if (json_array_append_new(a, json_string(v->items[i]->str)))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	}
	return KILN_OK;
}

/* One `oci: services:` entry as a payload's services[] entry. */
static enum kiln_rc parse_service(struct parse_ctx *c, const struct cy_node *m, const char *where, json_t *o)
{
	size_t i, k;
	enum kiln_rc rc;

	if (m->kind != CY_MAP)
		return at(c, m, KILN_E_INVALID, where, "%s", "expected a mapping with name, alias, command, entrypoint, variables");
	for (i = 0; i < m->n; i++) {
		const char *key = m->pairs[i].key;
		const struct cy_node *v = m->pairs[i].value;
		json_t *vars;

		for (k = 0; k < i; k++)
			if (!strcmp(m->pairs[k].key, key))
				return at(c, m->pairs[i].knode, KILN_E_INVALID, where, "key '%s' appears twice", key);
		if (!strcmp(key, "name") || !strcmp(key, "alias")) {
			if (v->kind != CY_SCALAR || !v->str[0])
				return at(c, v, KILN_E_INVALID, where, "%s: expected a non-empty string", key);
			if (json_object_set_new(o, key, json_string(v->str)))
				return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		} else if (!strcmp(key, "command") || !strcmp(key, "entrypoint")) {
			if ((rc = service_argv(c, v, where, o, key)))
				return rc;
		} else if (!strcmp(key, "variables")) {
			if (v->kind != CY_MAP)
				return at(c, v, KILN_E_INVALID, where, "%s", "variables: expected a mapping NAME: value");
			if (!(vars = json_array()) || json_object_set_new(o, "variables", vars))
				return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
			for (k = 0; k < v->n; k++) {
				if (!is_scalar(v->pairs[k].value) || !v->pairs[k].key[0])
					return at(c, v->pairs[k].value, KILN_E_INVALID, where, "variables.%s: expected a string",
						  v->pairs[k].key);
				if (json_array_append_new(vars, json_pack("{s:s, s:s}", "key", v->pairs[k].key, "value",
									  v->pairs[k].value->kind == CY_NULL ? "" : v->pairs[k].value->str)))
					return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
			}
		} else {
			return at(c, m->pairs[i].knode, KILN_E_INVALID, where, "unknown key '%s'", key);
		}
	}
	if (!json_object_get(o, "name"))
		return at(c, m, KILN_E_INVALID, where, "%s", "missing key 'name'");
	return KILN_OK;
}

/* `oci: services:`, gitlab-runner's [[runners.docker.services]]. */
static enum kiln_rc parse_services(struct parse_ctx *c, struct kiln_oci_config *oc, const struct cy_node *seq)
{
	enum kiln_rc rc;
	size_t i;

	if (seq->kind != CY_SEQ)
		return at(c, seq, KILN_E_INVALID, "oci.services", "%s", "expected a list");
	if (oc->services)
		return at(c, seq, KILN_E_INVALID, "oci", "%s", "duplicate key 'services'");
	if (seq->n > KILN_CONFIG_MAX_SERVICES)
		return at(c, seq, KILN_E_LIMIT, "oci.services", "more than %d services", KILN_CONFIG_MAX_SERVICES);
	if (!(oc->services = json_array()))
		return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
	for (i = 0; i < seq->n; i++) {
		json_t *o = json_object();
		char where[40];

		snprintf(where, sizeof(where), "oci.services[%zu]", i);
		if (!o || json_array_append_new(oc->services, o))
			return kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
		if ((rc = parse_service(c, seq->items[i], where, o)))
			return rc;
	}
	return KILN_OK;
}

static int oci_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base, enum kiln_rc *rc)
{
	struct kiln_oci_config *oc = base;
	size_t i, k;

	if (!strcmp(key, "registries")) {
		*rc = parse_registries(c, oc, v);
		return 1;
	}
	if (!strcmp(key, "services")) {
		*rc = parse_services(c, oc, v);
		return 1;
	}
	if (!strcmp(key, "allowed_images")) {
		*rc = parse_patterns(c, v, "oci.allowed_images", &oc->allowed_images, &oc->n_allowed_images);
		return 1;
	}
	if (!strcmp(key, "allowed_services")) {
		*rc = parse_patterns(c, v, "oci.allowed_services", &oc->allowed_services, &oc->n_allowed_services);
		return 1;
	}
	if (strcmp(key, "allowed_pull_policies"))
		return 0;
	if (v->kind != CY_SEQ || v->n > 3 || !v->n) {
		*rc = at(c, v, KILN_E_INVALID, "oci.allowed_pull_policies", "%s", "expected a list of 1 to 3 policies");
		return 1;
	}
	for (i = 0; i < v->n; i++) {
		const struct cy_node *item = v->items[i];

		for (k = 0; is_scalar(item) && pull_policies[k] && strcmp(pull_policies[k], item->str); k++)
			;
		if (!is_scalar(item) || !pull_policies[k]) {
			*rc = at(c, item, KILN_E_INVALID, "oci.allowed_pull_policies", "unknown value '%s'",
				 is_scalar(item) ? item->str : "(not a string)");
			return 1;
		}
		free(oc->allowed_pull_policies[i]);
		if (!(oc->allowed_pull_policies[i] = strdup(item->str))) {
			*rc = kiln_fail(c->e, KILN_E_NOMEM, "config: out of memory");
			return 1;
		}
	}
	return 1;
}

static int global_extra(struct parse_ctx *c, const char *key, const struct cy_node *v, void *base,
			enum kiln_rc *rc)
{
	struct kiln_config *cfg = base;

	(void)cfg;
	if (!strcmp(key, "defaults"))
		return 1; /* parsed first, so that runners inherit it wherever it stands */
	if (!strcmp(key, "oci")) {
		*rc = parse_mapping(c, v, oci_fields, &cfg->oci, "oci", oci_extra);
		return 1;
	}
	if (!strcmp(key, "runners")) {
		if (cfg->runners)
			*rc = at(c, v, KILN_E_INVALID, "", "%s", "duplicate key 'runners'");
		else
			*rc = parse_runners(c, cfg, v);
		return 1;
	}
	if (!strcmp(key, "github")) {
		if (cfg->github)
			*rc = at(c, v, KILN_E_INVALID, "", "%s", "duplicate key 'github'");
		else
			*rc = parse_github(c, cfg, v);
		return 1;
	}
	return 0;
}

enum kiln_rc kiln_config_parse(struct kiln_config *cfg, const char *name, const char *text,
			       size_t len, struct kiln_err *e)
{
	struct parse_ctx c = { name, e, cfg, "" };
	struct cy_arena *a = cy_arena_new();
	struct cy_node *root;
	enum kiln_rc rc;
	size_t i;

	if (!a)
		return kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
	if ((rc = cy_parse_flags(a, name, text, len, CY_AS_WRITTEN, &root, NULL, NULL, e)))
		goto out;
	/* An empty file is a valid, empty configuration. */
	if (root->kind != CY_NULL) {
		if (root->kind == CY_MAP)
			for (i = 0; !rc && i < root->n; i++)
				if (!strcmp(root->pairs[i].key, "defaults"))
					rc = parse_mapping(&c, root->pairs[i].value, vm_fields, &cfg->defaults, "defaults",
							   defaults_extra);
		if (!rc)
			rc = parse_mapping(&c, root, global_fields, cfg, "", global_extra);
	}
out:
	cy_arena_free(&a);
	return rc;
}

enum kiln_rc kiln_config_load(struct kiln_config *cfg, const char *path, bool must_exist,
			      struct kiln_err *e)
{
	char *text = NULL;
	size_t len;
	enum kiln_rc rc;
	int r = kiln_read_file(path, CONFIG_MAX_BYTES, &text, &len);

	if (r == -ENOENT && !must_exist)
		return KILN_OK;
	if (r == -EFBIG)
		return kiln_fail(e, KILN_E_LIMIT, "config %s: larger than 1 MiB", path);
	if (r == -ENOMEM)
		return kiln_fail(e, KILN_E_NOMEM, "config: out of memory");
	if (r < 0) {
		errno = -r;
		return kiln_fail_errno(e, "config %s", path);
	}
	rc = kiln_config_parse(cfg, path, text, len, e);
	if (rc == KILN_OK) {
		find_host_certs(cfg, path);
		free(cfg->path);
		cfg->path = strdup(path);
	}
	free(text);
	return rc;
}

void kiln_config_free(struct kiln_config *cfg)
{
	size_t i;

	for (i = 0; i < cfg->n_runners; i++) {
		struct kiln_runner_config *r = &cfg->runners[i];
		free(r->name);
		free(r->url);
		free(r->token);
		free(r->tls_ca_file);
		free(r->tls_cert_file);
		free(r->tls_key_file);
		free(r->cache_dir);
		free_vm(&r->vm);
		free_cache(&r->cache);
	}
	free(cfg->runners);
	for (i = 0; i < cfg->oci.n_registries; i++) {
		struct kiln_registry_config *r = &cfg->oci.registries[i];
		size_t k;

		free(r->host);
		free(r->username);
		free(r->password);
		free(r->docker_config);
		free(r->tls_ca_file);
		for (k = 0; k < r->n_mirrors; k++)
			free(r->mirrors[k].host);
		free(r->mirrors);
	}
	free(cfg->oci.registries);
	for (i = 0; i < 3; i++)
		free(cfg->oci.allowed_pull_policies[i]);
	for (i = 0; i < cfg->oci.n_allowed_images; i++)
		free(cfg->oci.allowed_images[i]);
	free(cfg->oci.allowed_images);
	for (i = 0; i < cfg->oci.n_allowed_services; i++)
		free(cfg->oci.allowed_services[i]);
	free(cfg->oci.allowed_services);
	json_decref(cfg->oci.services);
	for (i = 0; i < cfg->n_github; i++) {
		struct kiln_github_config *g = &cfg->github[i];

		free(g->name);
		free(g->url);
		free(g->api_url);
		if (g->token)
			explicit_bzero(g->token, strlen(g->token));
		free(g->token);
		free(g->private_key_file);
		free_labels(g);
		free(g->name_prefix);
		free(g->tls_ca_file);
		if (g->webhook_secret)
			explicit_bzero(g->webhook_secret, strlen(g->webhook_secret));
		free(g->webhook_secret);
		free_vm(&g->vm);
	}
	free(cfg->github);
	free(cfg->path);
	free(cfg->state_dir);
	free(cfg->cache_dir);
	free(cfg->images_dir);
	free(cfg->templates_dir);
	free(cfg->log_format);
	free(cfg->listen_address);
	free_vm(&cfg->defaults);
	free_cache(&cfg->default_cache);
	memset(cfg, 0, sizeof(*cfg));
}
