/*
 * vmm-test-init: PID 1 of the test root image that tests/vmm-boot.sh and
 * bench/vmm-boot.sh boot under kiln-vmm (and QEMU). Static, no libc in the
 * image needed.
 *
 * It first writes the boot marker (byte 123 at guest-physical 0xC0000000
 * through /dev/mem: kiln-vmm logs "Guest-boot-time = N us") and prints
 * "BOOTED (uptime N ms)", then does what kiln.test= on the kernel command
 * line asks:
 *
 *   full (default)  every step below; "SUCCESS" when all passed, else
 *                   "FAIL: <step>: <reason>" at the first failure; then reboot
 *     disk   a file written across 64 KiB cluster edges and a partial
 *            overwrite of /ref.bin (a pattern file put in the image), fsync,
 *            drop caches, read both back and compare
 *     vsock  connect to CID 2 port 5000, send "ping-from-guest\n", expect
 *            "pong\n"; then listen on port 6000, accept one connection,
 *            expect "hello-from-host\n", answer "hi-host\n"
 *     net    eth0 gets kiln.ip=A.B.C.D/N (ioctls), three ICMP echoes to
 *            kiln.gw= (raw socket; one reply is enough, as ping -c 3 -W 2)
 *     rate   kiln.rate_bytes= bytes over TCP to kiln.gw port 5001 as fast
 *            as possible, then half-close and expect "got <N>\n" back
 *   sleep            print "SLEEPING" and wait; Ctrl-Alt-Del (kiln-vmm's
 *                    answer to SIGTERM) arrives as SIGINT: print "CTRL-ALT-DEL"
 *                    and reboot
 *   count            for snapshots (tests/vmm-snapshot.sh): print "COUNTING",
 *                    then every 50 ms a counter kept in memory goes up by one
 *                    and is written to /count on disk (O_DIRECT, checked
 *                    against memory before each write: "FAIL: count: ..."
 *                    when they differ), 512 bytes are read from /dev/hwrng
 *                    (virtio-rng; past the driver's own buffer), and
 *                    "tick N rng HEX" is printed (HEX: the last 32 of them);
 *                    a VM restored from a snapshot goes on from its N;
 *                    first "vmgenid: bound NAME" when the kernel's vmgenid
 *                    driver has a device (else "vmgenid: not bound" or "vmgenid:
 *                    no driver"), and "VMFORK RESEED" once the kernel logs
 *                    that a new VM generation ID reseeded its CRNG (restore)
 *   boot             nothing more (boot-time benchmark); with kiln.dmesg=1
 *                    print the kernel log first (as "dmesg: " lines)
 *   hostile          attack every virtio device but the root disk by hand
 *                    (tests/guest/hostile.c: bad rings, loops, resets, every
 *                    register width), then read /ref.bin back from the root
 *                    disk: "SUCCESS" when the VM still works, whatever the
 *                    devices answered (the "hostile:" lines say)
 *
 * and ends the VM: reboot(RB_AUTOBOOT) (the command line has reboot=k), or
 * power off with kiln.end=poweroff.
 *
 * Outside a VM, `vmm-test-init --write-ref FILE` writes the /ref.bin pattern
 * file, so that the image builder and this program agree on its bytes.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "tests/guest/vmm-test-init.h"

#define MARKER_ADDR 0xc0000000UL
#define MARKER_VALUE 123

#define CLUSTER (64 * 1024)
#define REF_PATH "/ref.bin"
#define REF_SIZE (4 * CLUSTER)
#define NEW_PATH "/vmm-test.bin"
#define NEW_SIZE (3 * CLUSTER + 12345)

#define VSOCK_HOST_CID 2
#define VSOCK_OUT_PORT 5000
#define VSOCK_IN_PORT 6000
#define RATE_PORT 5001

/* TCG runs 10-50x slower than hardware: generous timeouts. */
#define CONNECT_TIMEOUT_MS 30000
#define ACCEPT_TIMEOUT_MS 120000
#define IO_TIMEOUT_MS 60000

static char failure[256];
static volatile sig_atomic_t got_sigint;

void say(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = (int)sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(1, buf, (size_t)n) < 0) {
		/* Nowhere to report it. */
	}
}

/* Record the first failure of a step; returns false for `return fail(...)`. */
static bool fail(const char *step, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(const char *step, const char *fmt, ...)
{
	char why[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (!failure[0])
		snprintf(failure, sizeof(failure), "%s: %s", step, why);
	return false;
}

uint8_t pat(unsigned seed, uint32_t i)
{
	return (uint8_t)(((uint32_t)(i * 2654435761u) >> 11) ^ (i >> 8) ^ (seed * 0x9du));
}

static void fill(uint8_t *buf, size_t len, unsigned seed, uint32_t start)
{
	size_t i;

	for (i = 0; i < len; i++)
		buf[i] = pat(seed, start + (uint32_t)i);
}

static bool write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
	}
	return true;
}

static bool pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		p += n;
		len -= (size_t)n;
		off += n;
	}
	return true;
}

/* --- kernel command line ------------------------------------------------ */

static char cmdline[4096];

/* The value of key=... on /proc/cmdline copied into out, or false. */
static bool param(const char *key, char *out, size_t outlen)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (*p) {
		const char *end;

		while (*p == ' ' || *p == '\n')
			p++;
		end = p;
		while (*end && *end != ' ' && *end != '\n')
			end++;
		if ((size_t)(end - p) > klen && !strncmp(p, key, klen) && p[klen] == '=') {
			size_t vlen = (size_t)(end - p) - klen - 1;

			if (vlen >= outlen)
				vlen = outlen - 1;
			memcpy(out, p + klen + 1, vlen);
			out[vlen] = '\0';
			return true;
		}
		p = end;
	}
	return false;
}

static void read_cmdline(void)
{
	int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, cmdline, sizeof(cmdline) - 1) : -1;

	cmdline[n > 0 ? n : 0] = '\0';
	if (fd >= 0)
		close(fd);
}

/* --- boot marker and mounts --------------------------------------------- */

static void boot_marker(void)
{
	long page = sysconf(_SC_PAGESIZE);
	int fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	volatile uint8_t *p;

	if (fd < 0 && errno == ENOENT) {
		/* The kernel mounts devtmpfs only without an initramfs. */
		mkdir("/dev", 0755);
		mount("devtmpfs", "/dev", "devtmpfs", 0, "mode=0755");
		fd = open("/dev/mem", O_RDWR | O_SYNC | O_CLOEXEC);
	}
	if (fd < 0) {
		say("vmm-test-init: boot marker: /dev/mem: %s", strerror(errno));
		return;
	}
	p = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)MARKER_ADDR);
	if (p == MAP_FAILED) {
		say("vmm-test-init: boot marker: mmap: %s", strerror(errno));
	} else {
		*p = MARKER_VALUE;
		msync((void *)p, (size_t)page, MS_SYNC);
		munmap((void *)p, (size_t)page);
	}
	close(fd);
}

static void mount_fs(const char *src, const char *dir, const char *type)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, 0, NULL) < 0 && errno != EBUSY)
		say("vmm-test-init: mount %s on %s: %s", type, dir, strerror(errno));
}

/* --- step (i): disk ------------------------------------------------------ */

static bool drop_caches(void)
{
	int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
	bool ok;

	sync();
	if (fd < 0)
		return false;
	ok = write(fd, "3\n", 2) == 2;
	close(fd);
	return ok;
}

/* Compare the file with want; reports the first differing offset. */
static bool check_file(const char *path, const uint8_t *want, size_t len)
{
	uint8_t *got = malloc(len + 1);
	size_t off = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok = false;

	if (!got || fd < 0) {
		fail("disk", "open %s: %s", path, strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, got + off, len + 1 - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			fail("disk", "read %s: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		off += (size_t)n;
		if (off > len)
			break;
	}
	if (off != len) {
		fail("disk", "%s has %zu bytes, want %zu", path, off, len);
		goto out;
	}
	for (off = 0; off < len; off++) {
		if (got[off] != want[off]) {
			fail("disk", "%s differs at offset %zu: 0x%02x, want 0x%02x", path, off, got[off],
			     want[off]);
			goto out;
		}
	}
	ok = true;
out:
	if (fd >= 0)
		close(fd);
	free(got);
	return ok;
}

static bool step_disk(void)
{
	/* Small writes straddling the 64 KiB cluster edges of the new file. */
	static const struct { uint32_t off, len; } edges[] = {
		{ CLUSTER - 3, 6 }, { 2 * CLUSTER - 1, 2 }, { 3 * CLUSTER - 4096, 8192 },
	};
	/* Overwritten in /ref.bin: the middle of its clusters 0/1 and 2/3. */
	static const struct { uint32_t off, len; } ref_edits[] = {
		{ CLUSTER - 2000, 4000 }, { 3 * CLUSTER - 1, 2 },
	};
	uint8_t *want_new = malloc(NEW_SIZE), *want_ref = malloc(REF_SIZE);
	size_t off, i;
	int fd;
	bool ok = false;

	if (!want_new || !want_ref)
		return fail("disk", "out of memory");
	/* The base image's bytes, read before anything is written. */
	fill(want_ref, REF_SIZE, 0, 0);
	if (!check_file(REF_PATH, want_ref, REF_SIZE))
		goto out;

	fill(want_new, NEW_SIZE, 1, 0);
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
		fill(want_new + edges[i].off, edges[i].len, 2, edges[i].off);
	fd = open(NEW_PATH, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		fail("disk", "create %s: %s", NEW_PATH, strerror(errno));
		goto out;
	}
	/* Odd-sized chunks, so that writes start and end off block edges. */
	for (off = 0; off < NEW_SIZE; off += 4093) {
		size_t n = NEW_SIZE - off < 4093 ? NEW_SIZE - off : 4093;
		uint8_t chunk[4093];

		fill(chunk, n, 1, (uint32_t)off);
		if (!write_all(fd, chunk, n)) {
			close(fd);
			fail("disk", "write %s: %s", NEW_PATH, strerror(errno));
			goto out;
		}
	}
	for (i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
		if (!pwrite_all(fd, want_new + edges[i].off, edges[i].len, edges[i].off)) {
			close(fd);
			fail("disk", "pwrite %s: %s", NEW_PATH, strerror(errno));
			goto out;
		}
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fail("disk", "fsync %s: %s", NEW_PATH, strerror(errno));
		goto out;
	}

	fd = open(REF_PATH, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		fail("disk", "open %s for writing: %s", REF_PATH, strerror(errno));
		goto out;
	}
	for (i = 0; i < sizeof(ref_edits) / sizeof(ref_edits[0]); i++) {
		fill(want_ref + ref_edits[i].off, ref_edits[i].len, 3, ref_edits[i].off);
		if (!pwrite_all(fd, want_ref + ref_edits[i].off, ref_edits[i].len, ref_edits[i].off)) {
			close(fd);
			fail("disk", "pwrite %s: %s", REF_PATH, strerror(errno));
			goto out;
		}
	}
	if (fsync(fd) < 0 || close(fd) < 0) {
		fail("disk", "fsync %s: %s", REF_PATH, strerror(errno));
		goto out;
	}

	if (!drop_caches()) {
		fail("disk", "echo 3 > /proc/sys/vm/drop_caches: %s", strerror(errno));
		goto out;
	}
	if (!check_file(NEW_PATH, want_new, NEW_SIZE) || !check_file(REF_PATH, want_ref, REF_SIZE))
		goto out;
	say("vmm-test-init: disk: %d + %d bytes written across 64 KiB edges, read back after drop_caches: ok",
	    NEW_SIZE, REF_SIZE);
	ok = true;
out:
	free(want_new);
	free(want_ref);
	return ok;
}

/* --- sockets --------------------------------------------------------------- */

/* Wait for events on fd for at most ms; false on timeout or error. */
static bool wait_fd(int fd, short events, int ms)
{
	struct pollfd p = { .fd = fd, .events = events };
	int64_t end = mono_ms() + ms;

	for (;;) {
		int left = (int)(end > mono_ms() ? end - mono_ms() : 0);
		int n = poll(&p, 1, left);

		if (n < 0 && errno == EINTR)
			continue;
		return n > 0;
	}
}

/* Connect a non-blocking socket within ms; 0 or an errno value. */
static int connect_timeout(int fd, const struct sockaddr *sa, socklen_t len, int ms)
{
	int err = 0;
	socklen_t elen = sizeof(err);

	if (connect(fd, sa, len) == 0)
		return 0;
	if (errno != EINPROGRESS && errno != EINTR)
		return errno;
	if (!wait_fd(fd, POLLOUT, ms))
		return ETIMEDOUT;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
		return errno;
	return err;
}

/* Read one line (up to '\n', kept) within ms; false on error/timeout/EOF. */
static bool read_line(int fd, char *buf, size_t len, int ms)
{
	size_t n = 0;

	while (n + 1 < len) {
		ssize_t r;

		if (!wait_fd(fd, POLLIN, ms))
			break;
		r = read(fd, buf + n, 1);
		if (r < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (r <= 0)
			break;
		if (buf[n++] == '\n')
			break;
	}
	buf[n] = '\0';
	return n > 0 && buf[n - 1] == '\n';
}

static bool step_vsock(void)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VSOCK_HOST_CID, .svm_port = VSOCK_OUT_PORT };
	char line[64];
	int fd, c, err, one = 1;

	/* Guest -> host: the VMM connects us to <uds_path>_5000. */
	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("vsock", "socket(AF_VSOCK): %s", strerror(errno));
	if ((err = connect_timeout(fd, (struct sockaddr *)&sa, sizeof(sa), CONNECT_TIMEOUT_MS))) {
		close(fd);
		return fail("vsock", "connect to CID 2 port %d: %s", VSOCK_OUT_PORT, strerror(err));
	}
	if (!write_all(fd, "ping-from-guest\n", 16)) {
		close(fd);
		return fail("vsock", "write to port %d: %s", VSOCK_OUT_PORT, strerror(errno));
	}
	if (!read_line(fd, line, sizeof(line), IO_TIMEOUT_MS) || strcmp(line, "pong\n")) {
		close(fd);
		return fail("vsock", "port %d answered '%.*s', want 'pong'", VSOCK_OUT_PORT,
			    (int)strcspn(line, "\n"), line);
	}
	close(fd);
	say("vmm-test-init: vsock: guest -> host port %d: ok", VSOCK_OUT_PORT);

	/* Host -> guest: the host writes "CONNECT 6000\n" to uds_path. */
	fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
	sa = (struct sockaddr_vm){ .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY, .svm_port = VSOCK_IN_PORT };
	if (fd < 0)
		return fail("vsock", "socket(AF_VSOCK): %s", strerror(errno));
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 1) < 0) {
		close(fd);
		return fail("vsock", "listen on port %d: %s", VSOCK_IN_PORT, strerror(errno));
	}
	say("vmm-test-init: vsock: listening on port %d", VSOCK_IN_PORT);
	if (!wait_fd(fd, POLLIN, ACCEPT_TIMEOUT_MS)) {
		close(fd);
		return fail("vsock", "no host connection to port %d within %d s", VSOCK_IN_PORT,
			    ACCEPT_TIMEOUT_MS / 1000);
	}
	c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
	close(fd);
	if (c < 0)
		return fail("vsock", "accept on port %d: %s", VSOCK_IN_PORT, strerror(errno));
	if (!read_line(c, line, sizeof(line), IO_TIMEOUT_MS) || strcmp(line, "hello-from-host\n")) {
		close(c);
		return fail("vsock", "host sent '%.*s', want 'hello-from-host'", (int)strcspn(line, "\n"), line);
	}
	if (!write_all(c, "hi-host\n", 8)) {
		close(c);
		return fail("vsock", "write to the host: %s", strerror(errno));
	}
	/* Let the host read the answer before the RST of a close. */
	shutdown(c, SHUT_WR);
	read_line(c, line, sizeof(line), 5000);
	close(c);
	say("vmm-test-init: vsock: host -> guest port %d: ok", VSOCK_IN_PORT);
	return true;
}

/* --- step (iii): network ------------------------------------------------- */

static bool set_addr(int s, unsigned long req, const char *ifname, struct in_addr a)
{
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	sin->sin_family = AF_INET;
	sin->sin_addr = a;
	return ioctl(s, req, &ifr) == 0;
}

static bool link_up(int s, const char *ifname)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
		return false;
	ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
	return ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
}

static uint16_t inet_csum(const void *data, size_t len)
{
	const uint8_t *p = data;
	uint32_t sum = 0;

	for (; len > 1; p += 2, len -= 2)
		sum += (uint32_t)(p[0] << 8 | p[1]);
	if (len)
		sum += (uint32_t)(p[0] << 8);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return htons((uint16_t)~sum);
}

/* Three echo requests, up to 2 s for each reply; the number answered. */
static int ping3(struct in_addr gw)
{
	struct sockaddr_in dst = { .sin_family = AF_INET, .sin_addr = gw };
	uint16_t id = (uint16_t)(getpid() ^ 0x6b69);
	int s = socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMP), seq, got = 0;

	if (s < 0) {
		say("vmm-test-init: net: raw socket: %s", strerror(errno));
		return 0;
	}
	for (seq = 1; seq <= 3; seq++) {
		uint8_t pkt[64] = { 0 }, buf[1500];
		struct icmphdr *ic = (struct icmphdr *)pkt;
		int64_t sent = mono_ms(), end = sent + 2000;

		ic->type = ICMP_ECHO;
		ic->un.echo.id = htons(id);
		ic->un.echo.sequence = htons((uint16_t)seq);
		memcpy(pkt + sizeof(*ic), "kiln-vmm-test", 13);
		ic->checksum = inet_csum(pkt, sizeof(pkt));
		if (sendto(s, pkt, sizeof(pkt), 0, (struct sockaddr *)&dst, sizeof(dst)) < 0) {
			say("vmm-test-init: net: ping %d: %s", seq, strerror(errno));
			continue;
		}
		while (mono_ms() < end) {
			const struct iphdr *ip = (const struct iphdr *)buf;
			const struct icmphdr *r;
			ssize_t n;

			if (!wait_fd(s, POLLIN, (int)(end - mono_ms())))
				break;
			n = recv(s, buf, sizeof(buf), MSG_DONTWAIT);
			if (n < (ssize_t)sizeof(*ip) || n < (ssize_t)(ip->ihl * 4 + sizeof(*r)))
				continue;
			r = (const struct icmphdr *)(buf + ip->ihl * 4);
			if (r->type == ICMP_ECHOREPLY && ntohs(r->un.echo.id) == id &&
			    ntohs(r->un.echo.sequence) == seq) {
				say("vmm-test-init: net: reply from %s seq=%d time=%llu ms", inet_ntoa(gw), seq,
				    (unsigned long long)(mono_ms() - sent));
				got++;
				break;
			}
		}
		if (seq < 3)
			usleep(200000);
	}
	close(s);
	return got;
}

static bool parse_net(struct in_addr *ip, struct in_addr *mask, struct in_addr *gw)
{
	char v[64], *slash;
	long bits = 24;

	if (!param("kiln.ip", v, sizeof(v)))
		return fail("net", "no kiln.ip= on the kernel command line");
	if ((slash = strchr(v, '/'))) {
		*slash = '\0';
		bits = strtol(slash + 1, NULL, 10);
	}
	if (bits < 1 || bits > 32 || inet_pton(AF_INET, v, ip) != 1)
		return fail("net", "bad kiln.ip=%s", v);
	mask->s_addr = htonl(bits == 32 ? 0xffffffffu : ~(0xffffffffu >> bits));
	if (!param("kiln.gw", v, sizeof(v)) || inet_pton(AF_INET, v, gw) != 1)
		return fail("net", "no valid kiln.gw= on the kernel command line");
	return true;
}

static bool step_net(struct in_addr *gw_out)
{
	struct in_addr ip, mask, gw;
	int64_t end = mono_ms() + 20000;
	int s, got;

	if (!parse_net(&ip, &mask, &gw))
		return false;
	/* Drivers may still be probing. */
	while (!if_nametoindex("eth0") && mono_ms() < end)
		usleep(50000);
	if (!if_nametoindex("eth0"))
		return fail("net", "no eth0");
	s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return fail("net", "socket: %s", strerror(errno));
	link_up(s, "lo");
	if (!set_addr(s, SIOCSIFADDR, "eth0", ip) || !set_addr(s, SIOCSIFNETMASK, "eth0", mask) ||
	    !link_up(s, "eth0")) {
		close(s);
		return fail("net", "configuring eth0: %s", strerror(errno));
	}
	close(s);
	say("vmm-test-init: net: eth0 up");
	got = ping3(gw);
	if (!got)
		return fail("net", "no answer to 3 pings of %s", inet_ntoa(gw));
	say("vmm-test-init: net: %d/3 pings of %s answered", got, inet_ntoa(gw));
	*gw_out = gw;
	return true;
}

/* --- step (iv): TCP stream for the rate limiter ----------------------------- */

static bool step_rate(struct in_addr gw)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(RATE_PORT), .sin_addr = gw };
	static uint8_t buf[64 * 1024];
	char v[32], line[64], want[64];
	unsigned long long total, sent = 0;
	uint64_t t0;
	int fd, err;

	if (!param("kiln.rate_bytes", v, sizeof(v)))
		return fail("rate", "no kiln.rate_bytes= on the kernel command line");
	total = strtoull(v, NULL, 10);
	memset(buf, 'k', sizeof(buf));
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("rate", "socket: %s", strerror(errno));
	if ((err = connect_timeout(fd, (struct sockaddr *)&sa, sizeof(sa), CONNECT_TIMEOUT_MS))) {
		close(fd);
		return fail("rate", "connect to %s:%d: %s", inet_ntoa(gw), RATE_PORT, strerror(err));
	}
	t0 = mono_ms();
	while (sent < total) {
		size_t n = total - sent < sizeof(buf) ? (size_t)(total - sent) : sizeof(buf);
		ssize_t w;

		if (!wait_fd(fd, POLLOUT, IO_TIMEOUT_MS)) {
			close(fd);
			return fail("rate", "stalled after %llu of %llu bytes", sent, total);
		}
		w = send(fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (w < 0) {
			close(fd);
			return fail("rate", "send after %llu bytes: %s", sent, strerror(errno));
		}
		sent += (unsigned long long)w;
	}
	shutdown(fd, SHUT_WR);
	snprintf(want, sizeof(want), "got %llu\n", total);
	if (!read_line(fd, line, sizeof(line), IO_TIMEOUT_MS) || strcmp(line, want)) {
		close(fd);
		return fail("rate", "the receiver answered '%.*s', want '%.*s'", (int)strcspn(line, "\n"), line,
			    (int)strcspn(want, "\n"), want);
	}
	close(fd);
	say("vmm-test-init: rate: %llu bytes sent in %llu ms", total, (unsigned long long)(mono_ms() - t0));
	return true;
}

/* --- hostile: the devices attacked, then the root disk still reads right ---- */

static void step_hostile(void)
{
	uint8_t *want = malloc(REF_SIZE);
	int unexpected = hostile_run();

	if (unexpected < 0) {
		say("FAIL: hostile: no device could be attacked (see above)");
		goto out;
	}
	if (!want || !drop_caches()) {
		say("FAIL: hostile: cannot drop the page cache: %s", strerror(errno));
		goto out;
	}
	fill(want, REF_SIZE, 0, 0);
	if (!check_file(REF_PATH, want, REF_SIZE)) {
		say("FAIL: %s", failure);
		goto out;
	}
	say("vmm-test-init: hostile: %d unexpected device answers; the root disk still reads %s back", unexpected,
	    REF_PATH);
	say("SUCCESS");
out:
	free(want);
}

/* --- modes and the end ------------------------------------------------------ */

static void on_sigint(int sig)
{
	(void)sig;
	got_sigint = 1;
}

static void end_vm(void)
{
	char v[32];
	int how = RB_AUTOBOOT;

	if (param("kiln.end", v, sizeof(v)) && !strcmp(v, "poweroff"))
		how = RB_POWER_OFF;
	sync();
	reboot(how);
	/* Only when reboot() failed: PID 1 must not return. */
	say("vmm-test-init: reboot: %s", strerror(errno));
	for (;;)
		pause();
}

static int write_ref(const char *path)
{
	static uint8_t buf[REF_SIZE];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	fill(buf, sizeof(buf), 0, 0);
	if (fd < 0 || !write_all(fd, buf, sizeof(buf)) || close(fd) < 0) {
		fprintf(stderr, "vmm-test-init: %s: %s\n", path, strerror(errno));
		return 1;
	}
	return 0;
}

/* Print the kernel log (kiln.dmesg=1 in boot mode: with `quiet` and
 * initcall_debug, where the guest kernel's boot time went). */
static void dump_kmsg(void)
{
	char rec[1024];
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return;
	while ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || (n < 0 && errno == EPIPE)) {
		if (n <= 0)
			continue;  /* EPIPE: records were overwritten; go on */
		rec[n] = '\0';
		say("dmesg: %.*s", (int)strcspn(rec, "\n"), rec);
	}
	close(fd);
}

/* Say whether Linux's vmgenid driver found kiln-vmm's VM generation ID
 * device: its sysfs folder then has a link named after the device. */
static void vmgenid_bound(void)
{
	DIR *d = opendir("/sys/bus/acpi/drivers/vmgenid");
	struct dirent *e;
	bool bound = false;

	if (!d) {
		say("vmgenid: no driver (%s)", strerror(errno));
		return;
	}
	while (!bound && (e = readdir(d)))
		if (e->d_type == DT_LNK && strcmp(e->d_name, "module")) {
			say("vmgenid: bound %s", e->d_name);
			bound = true;
		}
	closedir(d);
	if (!bound)
		say("vmgenid: not bound");
}

/* Read the kernel log records that came since the last call from fd
 * (/dev/kmsg, non-blocking); true when one says that a new VM generation
 * ID reseeded the CRNG. */
static bool kmsg_vmfork(int fd)
{
	char rec[1024];
	bool seen = false;
	ssize_t n;

	while (fd >= 0 && ((n = read(fd, rec, sizeof(rec) - 1)) > 0 || (n < 0 && errno == EPIPE))) {
		if (n <= 0)
			continue;  /* EPIPE: records were overwritten; go on */
		rec[n] = '\0';
		if (strstr(rec, "crng reseeded due to virtual machine fork"))
			seen = true;
	}
	return seen;
}

/* kiln.test=count: a memory counter mirrored on disk, fresh random bytes;
 * never returns. */
static void step_count(void)
{
	static uint8_t blk[4096] __attribute__((aligned(4096)));
	struct timespec tick = { 0, 50 * 1000 * 1000 };
	uint64_t n = 0, disk;
	uint8_t r[512];
	char hex[65];
	int fd = open("/count", O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
	int rng = open("/dev/hwrng", O_RDONLY | O_CLOEXEC);
	int kmsg = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	size_t got, i;
	ssize_t k;

	if (fd < 0 || ftruncate(fd, sizeof(blk)) < 0) {
		say("FAIL: count: /count: %s", strerror(errno));
		end_vm();
	}
	if (rng < 0)
		say("vmm-test-init: /dev/hwrng: %s (rng none)", strerror(errno));
	vmgenid_bound();
	/* Only records from now on: a restored guest sees the reseed. */
	if (kmsg >= 0)
		lseek(kmsg, 0, SEEK_END);
	say("COUNTING");
	for (;;) {
		memset(blk, 0, sizeof(blk));
		if (pread(fd, blk, sizeof(blk), 0) != (ssize_t)sizeof(blk)) {
			say("FAIL: count: reading /count: %s", strerror(errno));
			end_vm();
		}
		memcpy(&disk, blk, sizeof(disk));
		if (disk != n) {
			say("FAIL: count: the disk has %llu, memory %llu", (unsigned long long)disk,
			    (unsigned long long)n);
			end_vm();
		}
		n++;
		memcpy(blk, &n, sizeof(n));
		if (pwrite(fd, blk, sizeof(blk), 0) != (ssize_t)sizeof(blk) || fdatasync(fd) < 0) {
			say("FAIL: count: writing /count: %s", strerror(errno));
			end_vm();
		}
		strcpy(hex, "none");
		for (got = 0; rng >= 0 && got < sizeof(r); got += (size_t)k)
			if ((k = read(rng, r + got, sizeof(r) - got)) <= 0)
				break;
		if (rng >= 0 && got == sizeof(r))
			for (i = 0; i < 32; i++)
				snprintf(hex + 2 * i, 3, "%02x", r[sizeof(r) - 32 + i]);
		say("tick %llu rng %s", (unsigned long long)n, hex);
		if (kmsg_vmfork(kmsg))
			say("VMFORK RESEED");
		nanosleep(&tick, NULL);
	}
}

int main(int argc, char **argv)
{
	char mode[32] = "full", v[16];
	struct in_addr gw = { 0 };
	struct timespec up;
	uint64_t t0;

	if (getpid() != 1) {
		if (argc == 3 && !strcmp(argv[1], "--write-ref"))
			return write_ref(argv[2]);
		fprintf(stderr, "usage: vmm-test-init --write-ref FILE (or run it as PID 1 in a VM)\n");
		return 2;
	}
	boot_marker();
	/* CLOCK_BOOTTIME starts with the guest kernel's timekeeping: how much
	 * of the boot the kernel took, and so how much the VMM did before. */
	clock_gettime(CLOCK_BOOTTIME, &up);
	say("BOOTED (uptime %llu ms)", (unsigned long long)up.tv_sec * 1000 + (unsigned long long)up.tv_nsec / 1000000);
	mount_fs("proc", "/proc", "proc");
	mount_fs("sysfs", "/sys", "sysfs");
	if (access("/dev/null", F_OK) < 0)
		mount_fs("devtmpfs", "/dev", "devtmpfs");
	read_cmdline();
	param("kiln.test", mode, sizeof(mode));
	say("vmm-test-init: mode %s", mode);

	if (!strcmp(mode, "boot")) {
		if (param("kiln.dmesg", v, sizeof(v)))
			dump_kmsg();
		end_vm();
	}
	if (!strcmp(mode, "sleep")) {
		struct sigaction sa = { .sa_handler = on_sigint };

		sigaction(SIGINT, &sa, NULL);
		/* Ctrl-Alt-Del then sends SIGINT to PID 1 instead of restarting. */
		reboot(RB_DISABLE_CAD);
		say("SLEEPING");
		while (!got_sigint)
			pause();
		say("CTRL-ALT-DEL");
		end_vm();
	}
	if (!strcmp(mode, "hostile")) {
		step_hostile();
		end_vm();
	}
	if (!strcmp(mode, "count"))
		step_count();
	if (strcmp(mode, "full")) {
		say("FAIL: init: unknown kiln.test=%s", mode);
		end_vm();
	}

	t0 = mono_ms();
	if (step_disk() && step_vsock() && step_net(&gw) && step_rate(gw)) {
		say("vmm-test-init: all steps passed in %llu ms", (unsigned long long)(mono_ms() - t0));
		say("SUCCESS");
	} else {
		say("FAIL: %s", failure[0] ? failure : "unknown: a step failed without a reason");
	}
	end_vm();
	return 0;
}
