/* Templates of the microvm executor: their key, their state on disk and the
 * identity a restored VM is given. See template.h. */
#include "executors/template.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/paths.h"
#include "lib/readfile.h"
#include "lib/sha256.h"

#define ENTROPY_BYTES 32

/* A digest or version: printable, no spaces or newlines (they would make
 * two sets of inputs read the same). */
static bool word_ok(const char *s)
{
	if (!s || !*s || strlen(s) > 256)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

enum kiln_rc template_key(const struct template_inputs *in, char key[TEMPLATE_KEY_HEX], struct kiln_err *e)
{
	struct sha256 h;
	uint8_t d[32];
	char line[512];

	if (!word_ok(in->image))
		return kiln_fail(e, KILN_E_INVALID, "template: no image digest");
	if (!word_ok(in->kernel))
		return kiln_fail(e, KILN_E_INVALID, "template: no kernel digest");
	if (!word_ok(in->vmm))
		return kiln_fail(e, KILN_E_INVALID, "template: no kiln-vmm version");
	if ((in->initrd && !word_ok(in->initrd)) || (in->agent && !word_ok(in->agent)))
		return kiln_fail(e, KILN_E_INVALID, "template: a bad initrd or agent digest");
	if (in->vcpus < 1 || in->vcpus > 255 || in->memory_mib < 64 || in->memory_mib > (1 << 20))
		return kiln_fail(e, KILN_E_INVALID, "template: %d vCPUs, %d MiB is no machine", in->vcpus,
				 in->memory_mib);
	if (in->cmdline && (strlen(in->cmdline) > 4096 || strchr(in->cmdline, '\n')))
		return kiln_fail(e, KILN_E_INVALID, "template: a bad kernel command line");
	sha256_init(&h);
	/* One field a line, in a fixed order; bump the version when a field
	 * is added so old templates are not taken for new ones. */
	snprintf(line, sizeof(line), "kiln-template 1\nimage %s\nkernel %s\ninitrd %s\nvmm %s\nagent %s\n",
		 in->image, in->kernel, in->initrd ? in->initrd : "-", in->vmm, in->agent ? in->agent : "-");
	sha256_update(&h, line, strlen(line));
	snprintf(line, sizeof(line), "vcpus %d\nmem_mib %d\nnet %d\ncmdline ", in->vcpus, in->memory_mib,
		 in->net ? 1 : 0);
	sha256_update(&h, line, strlen(line));
	if (in->cmdline)
		sha256_update(&h, in->cmdline, strlen(in->cmdline));
	sha256_update(&h, "\n", 1);
	sha256_final(&h, d);
	sha256_hex(d, key);
	return KILN_OK;
}

enum kiln_rc template_dir(const char *root, const char *key, char *buf, size_t size, struct kiln_err *e)
{
	int n;

	if (strlen(key) != 64)
		return kiln_fail(e, KILN_E_INVALID, "template: a key is 64 hex digits");
	n = snprintf(buf, size, "%s/%.16s", root, key);
	if (n < 0 || (size_t)n >= size)
		return kiln_fail(e, KILN_E_LIMIT, "template: %s: path too long", root);
	return KILN_OK;
}

/* The meta file of dir, parsed; NULL with why in reason. */
static json_t *read_meta(const char *dir, char *reason, size_t size)
{
	char path[PATH_MAX], *buf = NULL;
	size_t len;
	json_t *o;
	int rc;

	snprintf(path, sizeof(path), "%s/" TEMPLATE_META, dir);
	rc = kiln_read_file(path, TEMPLATE_META_MAX, &buf, &len);
	if (rc == -ENOENT) {
		snprintf(reason, size, "none yet");
		return NULL;
	}
	if (rc < 0) {
		snprintf(reason, size, "broken: %s: %s", path, strerror(-rc));
		return NULL;
	}
	o = json_loadb(buf, len, 0, NULL);
	free(buf);
	if (!json_is_object(o)) {
		json_decref(o);
		snprintf(reason, size, "broken: %s is not a JSON object", path);
		return NULL;
	}
	return o;
}

bool template_usable(const char *dir, const char *key, char *reason, size_t size)
{
	static const char *const files[] = { "state", "memory" };
	char path[PATH_MAX];
	struct stat st;
	const char *k;
	json_t *o = read_meta(dir, reason, size);
	bool ok = false;
	size_t i;

	if (!o)
		return false;
	k = json_string_value(json_object_get(o, "key"));
	if (!k || strcmp(k, key)) {
		snprintf(reason, size, "inputs changed");
		goto out;
	}
	if (json_is_string(json_object_get(o, "error"))) {
		snprintf(reason, size, "failed: %s", json_string_value(json_object_get(o, "error")));
		goto out;
	}
	if (!json_is_true(json_object_get(o, "ready"))) {
		snprintf(reason, size, "incomplete: not saved yet");
		goto out;
	}
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (stat(path, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
			snprintf(reason, size, "broken: %s missing or empty", files[i]);
			goto out;
		}
	}
	ok = true;
out:
	json_decref(o);
	return ok;
}

enum kiln_rc template_seal(const char *dir, struct kiln_err *e)
{
	static const char *const files[] = { "state", "memory" };
	char path[PATH_MAX];
	size_t i;

	if (chown(dir, getuid(), getgid()) < 0 || chmod(dir, 0755) < 0)
		return kiln_fail_errno(e, "template: sealing %s", dir);
	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (chown(path, getuid(), getgid()) < 0 || chmod(path, 0644) < 0)
			return kiln_fail_errno(e, "template: sealing %s", path);
	}
	return KILN_OK;
}

enum kiln_rc template_mark_ready(const char *dir, const char *key, const struct template_inputs *in,
				 const char *image_name, const char *kernel_name, struct kiln_err *e)
{
	char path[PATH_MAX], *text = NULL;
	enum kiln_rc rc;
	json_t *o;

	o = json_pack("{s:s, s:b, s:s, s:s, s:s, s:s, s:i, s:i, s:b, s:I}", "key", key, "ready", 1, "image",
		      image_name ? image_name : "", "kernel", kernel_name ? kernel_name : "", "image_digest", in->image,
		      "vmm", in->vmm, "vcpus", in->vcpus, "mem_mib", in->memory_mib, "net", in->net, "created",
		      (json_int_t)time(NULL));
	if (!o || !(text = json_dumps(o, JSON_COMPACT))) {
		json_decref(o);
		return kiln_fail(e, KILN_E_NOMEM, "template: out of memory");
	}
	snprintf(path, sizeof(path), "%s/" TEMPLATE_META, dir);
	rc = kiln_write_atomic(path, text, strlen(text), 0644, e);
	free(text);
	json_decref(o);
	return rc;
}

enum kiln_rc template_mark_failed(const char *dir, const char *key, const char *why, struct kiln_err *e)
{
	char path[PATH_MAX], *text = NULL;
	enum kiln_rc rc;
	json_t *o;

	if (kiln_mkdir_p(dir) < 0)
		return kiln_fail_errno(e, "template: creating %s", dir);
	o = json_pack("{s:s, s:b, s:s}", "key", key, "ready", 0, "error", why);
	if (!o || !(text = json_dumps(o, JSON_COMPACT))) {
		json_decref(o);
		return kiln_fail(e, KILN_E_NOMEM, "template: out of memory");
	}
	snprintf(path, sizeof(path), "%s/" TEMPLATE_META, dir);
	rc = kiln_write_atomic(path, text, strlen(text), 0644, e);
	free(text);
	json_decref(o);
	return rc;
}

enum kiln_rc template_build_lock(const char *dir, int *fd, struct kiln_err *e)
{
	char path[PATH_MAX], *slash;
	enum kiln_rc rc = KILN_OK;

	*fd = -1;
	if (snprintf(path, sizeof(path), "%s.lock", dir) >= (int)sizeof(path))
		return kiln_fail(e, KILN_E_INVALID, "template: %s: path too long", dir);
	slash = strrchr(path, '/');
	if (slash && slash != path) {
		*slash = '\0';
		if (kiln_mkdir_p(path) < 0)
			return kiln_fail_errno(e, "template: creating %s", path);
		*slash = '/';
	}
	if ((*fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0)
		return kiln_fail_errno(e, "template: opening %s", path);
	if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
		return KILN_OK;
	if (errno != EWOULDBLOCK)
		rc = kiln_fail_errno(e, "template: locking %s", path);
	close(*fd);
	*fd = -1;
	return rc;
}

enum kiln_rc template_discard(const char *dir, struct kiln_err *e)
{
	if (kiln_rm_rf(dir) < 0 && errno != ENOENT)
		return kiln_fail_errno(e, "template: removing %s", dir);
	return KILN_OK;
}

static void hex(const uint8_t *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* "kiln-" and name's letters and digits, lowercased, others as '-', at most
 * 63 bytes: a DNS label. */
static void hostname_of(const char *name, const char *salt, char *out, size_t size)
{
	size_t n = (size_t)snprintf(out, size, "kiln-"), i;

	for (i = 0; name && name[i] && n + 10 < size && n < 52; i++) {
		char c = name[i];

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		out[n++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '-';
	}
	/* Two jobs of one name at once still differ. */
	snprintf(out + n, size - n, "%s%.8s", n > 5 ? "-" : "", salt);
}

char *template_restored_json(const char *job_name, const char *mac, const char *ip, const char *gw,
			     const char *dns, struct kiln_err *e)
{
	uint8_t rnd[ENTROPY_BYTES + 16];
	char ent[2 * ENTROPY_BYTES + 1], mid[33], host[64], *text = NULL;
	json_t *o;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		kiln_fail_errno(e, "template: getrandom");
		return NULL;
	}
	hex(rnd, ENTROPY_BYTES, ent);
	hex(rnd + ENTROPY_BYTES, 16, mid);
	hostname_of(job_name, mid, host, sizeof(host));
	o = json_pack("{s:s, s:s, s:s}", "entropy", ent, "hostname", host, "machine_id", mid);
	if (o && ip) {
		json_t *net = json_pack("{s:s}", "ip", ip);

		if (net && mac)
			json_object_set_new(net, "mac", json_string(mac));
		if (net && gw)
			json_object_set_new(net, "gw", json_string(gw));
		if (net && dns)
			json_object_set_new(net, "dns", json_string(dns));
		json_object_set_new(o, "net", net);
	}
	if (o)
		text = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	explicit_bzero(rnd, sizeof(rnd));
	explicit_bzero(ent, sizeof(ent));
	if (!text)
		kiln_fail(e, KILN_E_NOMEM, "template: out of memory");
	return text;
}

/* Bytes dir's files take on disk (the memory file is sparse). */
static unsigned long long disk_use(const char *dir)
{
	static const char *const files[] = { "state", "memory", TEMPLATE_META };
	unsigned long long sum = 0;
	char path[PATH_MAX];
	struct stat st;
	size_t i;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (stat(path, &st) == 0)
			sum += (unsigned long long)st.st_blocks * 512;
	}
	return sum;
}

enum kiln_rc template_list(const char *root, FILE *out, struct kiln_err *e)
{
	char sub[PATH_MAX], reason[256];
	struct dirent *d;
	DIR *dp;

	if (!(dp = opendir(root)))
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "opening %s", root);
	fprintf(out, "%-16s  %-5s  %-24s  %5s  %7s  %3s  %8s\n", "TEMPLATE", "READY", "IMAGE", "VCPUS", "MEM_MIB", "NET",
		"DISK_MIB");
	while ((d = readdir(dp))) {
		json_t *o;

		if (d->d_name[0] == '.' || strchr(d->d_name, '.'))
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", root, d->d_name);
		o = read_meta(sub, reason, sizeof(reason));
		if (!o) {
			fprintf(out, "%-16s  %-5s  (%s)\n", d->d_name, "no", reason);
			continue;
		}
		fprintf(out, "%-16s  %-5s  %-24s  %5d  %7d  %3s  %8.1f\n", d->d_name,
			json_is_true(json_object_get(o, "ready")) ? "yes" : "no",
			json_string_value(json_object_get(o, "image")) ? json_string_value(json_object_get(o, "image"))
								       : "?",
			(int)json_integer_value(json_object_get(o, "vcpus")),
			(int)json_integer_value(json_object_get(o, "mem_mib")),
			!json_object_get(o, "net") ? "?" : json_is_true(json_object_get(o, "net")) ? "yes" : "no",
			(double)disk_use(sub) / (1 << 20));
		json_decref(o);
	}
	closedir(dp);
	return KILN_OK;
}

/* Whether name is what a build that died left: KEY16.new.PID.TID with no
 * process PID. */
static bool dead_build(const char *name)
{
	const char *p = strstr(name, ".new.");
	char *end;
	long pid;

	if (!p)
		return false;
	errno = 0;
	pid = strtol(p + 5, &end, 10);
	if (errno || pid <= 0 || *end != '.')
		return false;
	return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

enum kiln_rc template_prune(const char *root, const char *key, const struct template_inputs *in,
			    const char *image_name, const char *kernel_name, int *removed, struct kiln_err *e)
{
	char sub[PATH_MAX], lock[PATH_MAX + 8], reason[256];
	enum kiln_rc rc = KILN_OK;
	struct dirent *d;
	int n = 0;
	DIR *dp;

	if (removed)
		*removed = 0;
	if (!(dp = opendir(root)))
		return errno == ENOENT ? KILN_OK : kiln_fail_errno(e, "opening %s", root);
	while ((d = readdir(dp))) {
		const char *img, *kern, *k;
		json_t *o, *jn;
		bool same;

		if (d->d_name[0] == '.' || snprintf(sub, sizeof(sub), "%s/%s", root, d->d_name) >= (int)sizeof(sub))
			continue;
		if (strchr(d->d_name, '.')) {
			if (dead_build(d->d_name) && kiln_rm_rf(sub) == 0)
				n++;
			continue;
		}
		if (!strncmp(d->d_name, key, 16))
			continue;
		/* Only this image's and kernel's machine: a failed build's
		 * record names none, and it is a few bytes that keep a broken
		 * build from being tried again. */
		if (!(o = read_meta(sub, reason, sizeof(reason))))
			continue;
		img = json_string_value(json_object_get(o, "image"));
		kern = json_string_value(json_object_get(o, "kernel"));
		k = json_string_value(json_object_get(o, "key"));
		jn = json_object_get(o, "net");
		same = img && kern && !strcmp(img, image_name) && !strcmp(kern, kernel_name) &&
		       json_integer_value(json_object_get(o, "vcpus")) == in->vcpus &&
		       json_integer_value(json_object_get(o, "mem_mib")) == in->memory_mib && json_is_true(jn) == in->net;
		if (same && k && strcmp(k, key)) {
			if (kiln_rm_rf(sub) < 0 && errno != ENOENT) {
				rc = kiln_fail_errno(e, "template: removing %s", sub);
			} else {
				n++;
				/* Its build lock: no kiln builds those inputs again. */
				snprintf(lock, sizeof(lock), "%s.lock", sub);
				unlink(lock);
			}
		}
		json_decref(o);
	}
	closedir(dp);
	if (removed)
		*removed = n;
	return rc;
}
