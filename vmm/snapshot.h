/* The snapshot state file: a versioned, self-checking container of
 * sections, and the bounds-checked way to read one back.
 *
 * Layout (little-endian, docs/vmm.md "Snapshots"):
 *	header   SNAP_HEADER_SIZE bytes: magic "KILNSNAP", snapshot_version,
 *	         header size, file length, the machine digest, the host CPU
 *	         signature, guest RAM bytes, the section count
 *	sections each a 16-byte head (tag, index, payload length) and the
 *	         payload padded to 8 bytes
 *	trailer  sha256 of every byte before it
 * Guest memory lives in a file of its own (SNAP_MEM_FILE), mapped at
 * restore. The state file is input: every length and count is checked
 * before it is used, and any changed byte fails the trailing digest. */
#ifndef VMM_SNAPSHOT_H
#define VMM_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SNAP_MAGIC "KILNSNAP"
#define SNAP_VERSION 1
#define SNAP_HEADER_SIZE 128
#define SNAP_SECTION_HEAD 16
#define SNAP_DIGEST 32
#define SNAP_MAX_SECTIONS 256
#define SNAP_MAX_BYTES (16u << 20)  /* the state file's ceiling (memory is apart) */
#define SNAP_STATE_FILE "state"
#define SNAP_MEM_FILE "memory"

/* Section tags. index tells instances apart (vCPU number, device slot). */
enum snap_tag {
	SNAP_SEC_VM = 1,      /* irqchips, PIT, kvmclock */
	SNAP_SEC_VCPU = 2,    /* one per vCPU */
	SNAP_SEC_SERIAL = 3,
	SNAP_SEC_I8042 = 4,
	SNAP_SEC_VIRTIO = 5,  /* one per virtio-mmio slot: transport + device */
};

struct snap_header {
	uint32_t version;
	uint8_t machine[SNAP_DIGEST];  /* sha256 of the machine description */
	uint8_t cpu[SNAP_DIGEST];      /* sha256 of host CPUID + XSAVE size */
	uint64_t mem_bytes;
};

/* Growing the state file; the first failure sticks in err (-ENOMEM, or
 * -E2BIG past SNAP_MAX_BYTES) and later calls do nothing. */
struct snap_writer {
	uint8_t *buf;
	size_t len, cap;
	size_t sec_start;   /* offset of the open section's head, 0 = none */
	uint32_t n_sections;
	int err;
};

void snap_writer_init(struct snap_writer *w);
void snap_writer_free(struct snap_writer *w);
/* Open a section (closing any open one). */
void snap_section(struct snap_writer *w, uint32_t tag, uint32_t index);
void snap_put(struct snap_writer *w, const void *data, size_t n);
void snap_put_u32(struct snap_writer *w, uint32_t v);
void snap_put_u64(struct snap_writer *w, uint64_t v);
/* A length-prefixed blob (u32 length, bytes). */
void snap_put_blob(struct snap_writer *w, const void *data, uint32_t n);
/* Close the last section, fill the header from h and append the digest:
 * w->buf[0..w->len) is then the file. 0 or the sticky -errno. */
int snap_finish(struct snap_writer *w, const struct snap_header *h);

/* A validated state file: its header and where each section lies. */
struct snap_file {
	struct snap_header h;
	uint32_t n_sections;
	struct {
		uint32_t tag, index;
		const uint8_t *data;
		uint32_t len;
	} sec[SNAP_MAX_SECTIONS];
};

/* Check buf[0..len) as a state file: size, magic, version, header fields,
 * the trailing digest, and that the sections tile the body exactly. When
 * machine / cpu are not NULL the header must carry those digests. Fills f
 * (pointing into buf) or writes a one-line reason into err and returns
 * -EINVAL (a wrong file), -EPROTO (another snapshot_version) or -ESTALE
 * (another machine or host CPU). */
int snap_parse(struct snap_file *f, const uint8_t *buf, size_t len, const uint8_t *machine, const uint8_t *cpu,
	       char *err, size_t errlen);

/* A bounded cursor over one section's payload. A read past the end marks
 * it bad and yields zeros; snap_rd_done() says whether every read fit and
 * the payload was used up exactly. */
struct snap_reader {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

/* The cursor over section (tag, index): false when f has no such section. */
bool snap_find(const struct snap_file *f, uint32_t tag, uint32_t index, struct snap_reader *r);
void snap_get(struct snap_reader *r, void *dst, size_t n);
uint32_t snap_get_u32(struct snap_reader *r);
uint64_t snap_get_u64(struct snap_reader *r);
/* A blob written by snap_put_blob that must be exactly n bytes long. */
void snap_get_blob(struct snap_reader *r, void *dst, uint32_t n);
/* A blob of at most max bytes; its length goes to *n. */
void snap_get_blob_max(struct snap_reader *r, void *dst, uint32_t max, uint32_t *n);
bool snap_rd_done(const struct snap_reader *r);

#endif
