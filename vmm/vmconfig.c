#include "vmm/vmconfig.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/readfile.h"
#include "lib/sha256.h"

#define VM_CONFIG_MAX_BYTES (1 << 20)

struct ctx {
	const char *name;
	char *err;
	size_t errlen;
};

static int bad(struct ctx *c, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int bad(struct ctx *c, const char *key, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(c->err, c->errlen, "%s: %s: %s", c->name, key, what);
	return -EINVAL;
}

/* Reject keys of obj that are not in allowed (NULL-terminated). */
static int only_keys(struct ctx *c, json_t *obj, const char *where, const char *const *allowed)
{
	const char *key;
	json_t *v;

	if (!json_is_object(obj))
		return bad(c, where, "must be an object");
	json_object_foreach(obj, key, v) {
		const char *const *a;

		for (a = allowed; *a && strcmp(*a, key); a++)
			;
		if (!*a) {
			char full[160];
			snprintf(full, sizeof(full), "%s%s%s", where, *where ? "." : "", key);
			return bad(c, full, "unknown key");
		}
	}
	return 0;
}

static int get_str(struct ctx *c, json_t *obj, const char *key, const char *where, bool required, char **out)
{
	json_t *v = json_object_get(obj, key);
	char full[160];

	snprintf(full, sizeof(full), "%s.%s", where, key);
	if (!v) {
		if (required)
			return bad(c, full, "missing");
		return 0;
	}
	if (!json_is_string(v) || !*json_string_value(v))
		return bad(c, full, "must be a non-empty string");
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

static int get_uint(struct ctx *c, json_t *obj, const char *key, const char *where, bool required, uint64_t min,
		    uint64_t max, uint64_t *out)
{
	json_t *v = json_object_get(obj, key);
	char full[160];

	snprintf(full, sizeof(full), "%s.%s", where, key);
	if (!v) {
		if (required)
			return bad(c, full, "missing");
		return 0;
	}
	if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) < min ||
	    (uint64_t)json_integer_value(v) > max)
		return bad(c, full, "must be an integer in %llu..%llu", (unsigned long long)min,
			   (unsigned long long)max);
	*out = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_bool(struct ctx *c, json_t *obj, const char *key, const char *where, bool *out)
{
	json_t *v = json_object_get(obj, key);
	char full[160];

	if (!v)
		return 0;
	snprintf(full, sizeof(full), "%s.%s", where, key);
	if (!json_is_boolean(v))
		return bad(c, full, "must be true or false");
	*out = json_is_true(v);
	return 0;
}

static int parse_bucket(struct ctx *c, json_t *obj, const char *where, struct token_bucket_cfg *b)
{
	static const char *const keys[] = { "size", "one_time_burst", "refill_time", NULL };
	int rc;

	if ((rc = only_keys(c, obj, where, keys)) ||
	    (rc = get_uint(c, obj, "size", where, true, 0, UINT64_MAX >> 1, &b->size)) ||
	    (rc = get_uint(c, obj, "one_time_burst", where, false, 0, UINT64_MAX >> 1, &b->one_time_burst)) ||
	    (rc = get_uint(c, obj, "refill_time", where, true, 0, 1000ULL * 3600 * 24, &b->refill_time_ms)))
		return rc;
	return 0;
}

static int parse_limiter(struct ctx *c, json_t *obj, const char *where, struct rate_limiter_cfg *rl)
{
	static const char *const keys[] = { "bandwidth", "ops", NULL };
	char full[160];
	json_t *v;
	int rc;

	memset(rl, 0, sizeof(*rl));
	if ((rc = only_keys(c, obj, where, keys)))
		return rc;
	if ((v = json_object_get(obj, "bandwidth"))) {
		snprintf(full, sizeof(full), "%s.bandwidth", where);
		if ((rc = parse_bucket(c, v, full, &rl->bandwidth)))
			return rc;
	}
	if ((v = json_object_get(obj, "ops"))) {
		snprintf(full, sizeof(full), "%s.ops", where);
		if ((rc = parse_bucket(c, v, full, &rl->ops)))
			return rc;
	}
	return 0;
}

static int parse_id(struct ctx *c, json_t *obj, const char *where, char id[64])
{
	char *s = NULL;
	int rc = get_str(c, obj, "id", where, true, &s);
	size_t i;

	if (rc)
		return rc;
	for (i = 0; s[i]; i++)
		if (!(s[i] == '-' || s[i] == '_' || (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'z') ||
		      (s[i] >= 'A' && s[i] <= 'Z')))
			break;
	if (s[i] || i >= 64 || i > 20) {
		free(s);
		char full[160];
		snprintf(full, sizeof(full), "%s.id", where);
		/* virtio-blk GET_ID answers 20 bytes at most. */
		return bad(c, full, "must be 1-20 letters, digits, '-' or '_'");
	}
	memcpy(id, s, i + 1);
	free(s);
	return 0;
}

static int parse_drive(struct ctx *c, json_t *obj, int i, struct vm_drive_cfg *d)
{
	static const char *const keys[] = { "id", "path", "read_only", "cow", "cow_limit_mib", "rate_limiter", NULL };
	char where[32];
	json_t *v;
	int rc;

	snprintf(where, sizeof(where), "drives[%d]", i);
	if ((rc = only_keys(c, obj, where, keys)) || (rc = parse_id(c, obj, where, d->id)) ||
	    (rc = get_str(c, obj, "path", where, true, &d->path)) ||
	    (rc = get_bool(c, obj, "read_only", where, &d->read_only)) ||
	    (rc = get_bool(c, obj, "cow", where, &d->cow)))
		return rc;
	d->cow_limit_mib = VM_COW_LIMIT_MIB;
	if ((rc = get_uint(c, obj, "cow_limit_mib", where, false, 0, 1ULL << 30, &d->cow_limit_mib)))
		return rc;
	if ((v = json_object_get(obj, "rate_limiter"))) {
		char full[64];
		snprintf(full, sizeof(full), "%s.rate_limiter", where);
		d->has_rate_limiter = true;
		if ((rc = parse_limiter(c, v, full, &d->rate_limiter)))
			return rc;
	}
	return 0;
}

static int parse_mac(struct ctx *c, const char *s, const char *where, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	int i;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &tail) != 6 ||
	    strlen(s) != 17)
		return bad(c, where, "must look like 06:00:ac:10:00:02");
	for (i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return bad(c, where, "is a multicast address");
	return 0;
}

static int parse_net(struct ctx *c, json_t *obj, int i, struct vm_net_cfg *n)
{
	static const char *const keys[] = { "id", "tap", "tap_fd", "mac", "rx_rate_limiter", "tx_rate_limiter", NULL };
	char where[32], full[64], *mac = NULL;
	uint64_t fd = 0;
	json_t *v;
	int rc;

	snprintf(where, sizeof(where), "net[%d]", i);
	if ((rc = only_keys(c, obj, where, keys)) || (rc = parse_id(c, obj, where, n->id)) ||
	    (rc = get_str(c, obj, "tap", where, true, &n->tap)) || (rc = get_str(c, obj, "mac", where, false, &mac)) ||
	    (rc = get_uint(c, obj, "tap_fd", where, false, 3, 1023, &fd)))
		return rc;
	n->has_tap_fd = json_object_get(obj, "tap_fd") != NULL;
	n->tap_fd = (int)fd;
	if (strlen(n->tap) >= 16) {
		snprintf(full, sizeof(full), "%s.tap", where);
		return bad(c, full, "interface names have at most 15 characters");
	}
	if (mac) {
		snprintf(full, sizeof(full), "%s.mac", where);
		rc = parse_mac(c, mac, full, n->mac);
		free(mac);
		if (rc)
			return rc;
		n->has_mac = true;
	}
	if ((v = json_object_get(obj, "rx_rate_limiter"))) {
		snprintf(full, sizeof(full), "%s.rx_rate_limiter", where);
		n->has_rx_rate_limiter = true;
		if ((rc = parse_limiter(c, v, full, &n->rx_rate_limiter)))
			return rc;
	}
	if ((v = json_object_get(obj, "tx_rate_limiter"))) {
		snprintf(full, sizeof(full), "%s.tx_rate_limiter", where);
		n->has_tx_rate_limiter = true;
		if ((rc = parse_limiter(c, v, full, &n->tx_rate_limiter)))
			return rc;
	}
	return 0;
}

int vm_config_parse(struct vm_config *cfg, const char *name, const char *text, char *err, size_t errlen)
{
	static const char *const top[] = { "boot", "machine", "drives", "net", "vsock", "serial", "entropy", "snapshot",
					   NULL };
	static const char *const snapshot[] = { "save_to", "load", "resume_after_save", "memory", NULL };
	static const char *const boot[] = { "kernel", "initrd", "cmdline", NULL };
	static const char *const machine[] = { "vcpus", "mem_mib", NULL };
	static const char *const vsock[] = { "guest_cid", "uds_path", NULL };
	static const char *const serial[] = { "output", NULL };
	struct ctx c = { name, err, errlen };
	json_error_t jerr;
	json_t *root, *o, *v;
	uint64_t n;
	size_t i;
	int rc;

	memset(cfg, 0, sizeof(*cfg));
	cfg->vcpus = 1;
	cfg->mem_mib = 128;
	root = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		snprintf(err, errlen, "%s:%d: %s", name, jerr.line, jerr.text);
		return -EINVAL;
	}
	if ((rc = only_keys(&c, root, "", top)))
		goto out;

	if ((o = json_object_get(root, "snapshot"))) {
		if ((rc = only_keys(&c, o, "snapshot", snapshot)) ||
		    (rc = get_str(&c, o, "save_to", "snapshot", false, &cfg->snapshot_save_to)) ||
		    (rc = get_str(&c, o, "load", "snapshot", false, &cfg->snapshot_load)))
			goto out;
		v = json_object_get(o, "resume_after_save");
		if (v && !json_is_boolean(v)) {
			rc = bad(&c, "snapshot.resume_after_save", "must be true or false");
			goto out;
		}
		cfg->snapshot_resume = v && json_is_true(v);
		v = json_object_get(o, "memory");
		if (v && (!json_is_string(v) ||
			  (strcmp(json_string_value(v), "map") && strcmp(json_string_value(v), "copy")))) {
			rc = bad(&c, "snapshot.memory", "must be \"map\" or \"copy\"");
			goto out;
		}
		cfg->snapshot_copy = v && !strcmp(json_string_value(v), "copy");
	}
	o = json_object_get(root, "boot");
	if (!o) {
		rc = bad(&c, "boot", "missing");
		goto out;
	}
	if ((rc = only_keys(&c, o, "boot", boot)) ||
	    (rc = get_str(&c, o, "kernel", "boot", !cfg->snapshot_load, &cfg->kernel)) ||
	    (rc = get_str(&c, o, "initrd", "boot", false, &cfg->initrd)))
		goto out;
	v = json_object_get(o, "cmdline");
	if (v && (!json_is_string(v) || strlen(json_string_value(v)) > 1536)) {
		/* Room is kept for the virtio_mmio.device= entries kiln-vmm adds. */
		rc = bad(&c, "boot.cmdline", "must be a string of at most 1536 bytes");
		goto out;
	}
	cfg->cmdline = strdup(v ? json_string_value(v) : "console=ttyS0 reboot=k panic=1");
	if (!cfg->cmdline) {
		rc = -ENOMEM;
		goto out;
	}

	if ((o = json_object_get(root, "machine"))) {
		if ((rc = only_keys(&c, o, "machine", machine)))
			goto out;
		n = 1;
		if ((rc = get_uint(&c, o, "vcpus", "machine", false, 1, VM_MAX_VCPUS, &n)))
			goto out;
		cfg->vcpus = (int)n;
		if ((rc = get_uint(&c, o, "mem_mib", "machine", false, 32, 256 * 1024, &cfg->mem_mib)))
			goto out;
	}

	if ((o = json_object_get(root, "drives"))) {
		if (!json_is_array(o) || json_array_size(o) > VM_MAX_DRIVES) {
			rc = bad(&c, "drives", "must be a list of at most %d drives", VM_MAX_DRIVES);
			goto out;
		}
		json_array_foreach(o, i, v) {
			if ((rc = parse_drive(&c, v, (int)i, &cfg->drives[cfg->n_drives++])))
				goto out;
		}
	}
	if ((o = json_object_get(root, "net"))) {
		if (!json_is_array(o) || json_array_size(o) > VM_MAX_NETS) {
			rc = bad(&c, "net", "must be a list of at most %d interfaces", VM_MAX_NETS);
			goto out;
		}
		json_array_foreach(o, i, v) {
			if ((rc = parse_net(&c, v, (int)i, &cfg->nets[cfg->n_nets++])))
				goto out;
		}
	}
	if ((o = json_object_get(root, "vsock"))) {
		if ((rc = only_keys(&c, o, "vsock", vsock)) ||
		    (rc = get_uint(&c, o, "guest_cid", "vsock", true, 3, UINT32_MAX - 1, &n)) ||
		    (rc = get_str(&c, o, "uds_path", "vsock", true, &cfg->vsock.uds_path)))
			goto out;
		if (strlen(cfg->vsock.uds_path) > 96) {
			/* sun_path holds 108 bytes and "_<port>" is appended. */
			rc = bad(&c, "vsock.uds_path", "longer than 96 bytes");
			goto out;
		}
		cfg->vsock.present = true;
		cfg->vsock.guest_cid = (uint32_t)n;
	}
	cfg->serial = VM_SERIAL_STDOUT;
	if ((o = json_object_get(root, "serial"))) {
		const char *out;

		if ((rc = only_keys(&c, o, "serial", serial)))
			goto out;
		v = json_object_get(o, "output");
		if (!json_is_string(v) || !*json_string_value(v)) {
			rc = bad(&c, "serial.output", "must be \"stdout\", \"none\" or a file path");
			goto out;
		}
		out = json_string_value(v);
		if (!strcmp(out, "stdout")) {
			cfg->serial = VM_SERIAL_STDOUT;
		} else if (!strcmp(out, "none")) {
			cfg->serial = VM_SERIAL_NONE;
		} else {
			cfg->serial = VM_SERIAL_FILE;
			if (!(cfg->serial_path = strdup(out))) {
				rc = -ENOMEM;
				goto out;
			}
		}
	}
	if ((v = json_object_get(root, "entropy"))) {
		/* Either `true` or an (empty) object, as Firecracker's entropy device. */
		if (json_is_boolean(v))
			cfg->entropy = json_is_true(v);
		else if (json_is_object(v) && json_object_size(v) == 0)
			cfg->entropy = true;
		else {
			rc = bad(&c, "entropy", "must be true, false or {}");
			goto out;
		}
	}
	rc = 0;
out:
	json_decref(root);
	if (rc)
		vm_config_free(cfg);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
	return rc;
}

int vm_config_load(struct vm_config *cfg, const char *path, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len;
	int rc = kiln_read_file(path, VM_CONFIG_MAX_BYTES, &text, &len);

	memset(cfg, 0, sizeof(*cfg));
	if (rc == -EFBIG) {
		snprintf(err, errlen, "%s: larger than 1 MiB", path);
		return -E2BIG;
	}
	if (rc < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(-rc));
		return rc;
	}
	rc = vm_config_parse(cfg, path, text, err, errlen);
	free(text);
	return rc;
}

void vm_config_free(struct vm_config *cfg)
{
	int i;

	free(cfg->kernel);
	free(cfg->initrd);
	free(cfg->cmdline);
	for (i = 0; i < cfg->n_drives; i++)
		free(cfg->drives[i].path);
	for (i = 0; i < cfg->n_nets; i++)
		free(cfg->nets[i].tap);
	free(cfg->vsock.uds_path);
	free(cfg->serial_path);
	free(cfg->snapshot_save_to);
	free(cfg->snapshot_load);
	memset(cfg, 0, sizeof(*cfg));
}

void vm_config_machine_digest(const struct vm_config *cfg, uint8_t digest[32])
{
	char text[4096];
	size_t len;
	int i;

	/* One line per fact, in a fixed order; what a restore may change
	 * (image paths, tap names, MAC, socket paths, limits) is left out. */
	len = (size_t)snprintf(text, sizeof(text), "kiln-vm-machine 1\nvcpus %d\nmem_mib %llu\n", cfg->vcpus,
			       (unsigned long long)cfg->mem_mib);
	for (i = 0; i < cfg->n_drives && len < sizeof(text); i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "drive %s read_only %d cow %d\n",
					cfg->drives[i].id, cfg->drives[i].read_only, cfg->drives[i].cow);
	for (i = 0; i < cfg->n_nets && len < sizeof(text); i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len, "net %s\n", cfg->nets[i].id);
	if (len < sizeof(text))
		len += (size_t)snprintf(text + len, sizeof(text) - len, "vsock %d\nentropy %d\n", cfg->vsock.present,
					cfg->entropy);
	if (len > sizeof(text))
		len = sizeof(text);
	sha256_buf(text, len, digest);
}
