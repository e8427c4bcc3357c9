/* The host <-> kiln-agent protocol: length-prefixed frames on one byte
 * stream (vsock, or a virtio-console port when the VMM has no vsock). See
 * docs/agent-protocol.md. Shared by the runner and the static agent, so it
 * depends on libc only. */
#ifndef KILN_AGENTPROTO_H
#define KILN_AGENTPROTO_H

#include <stddef.h>
#include <stdint.h>

#define AP_VERSION 1
#define AP_HEADER_SIZE 8
#define AP_MAX_PAYLOAD (1u << 20)   /* a larger frame is a protocol error */
/* A reader holds a frame being read plus what its caller fed before taking
 * the complete frames out (a read()'s worth at a time). */
#define AP_READER_MAX (16u << 20)
#define AP_VSOCK_PORT 1024          /* the agent connects to host CID 2 on this port */
#define AP_FEATURE_SHELL "shell"    /* in HELLO's features: it holds failed jobs for a shell */
/* In HELLO's features: it mounts a workspace filled in after boot
 * (kiln.workspace=late) once the JOB frame is there. */
#define AP_FEATURE_LATE_WORKSPACE "late-workspace"
/* In HELLO's features: it enters an OCI image (the job spec's image). */
#define AP_FEATURE_OCI_IMAGE "oci-image"
/* In HELLO's features: it runs each step's shell under the job spec's
 * image.entrypoint (docker's Entrypoint + Cmd). */
#define AP_FEATURE_ENTRYPOINT "entrypoint"

enum ap_type {
	AP_HELLO = 1,    /* guest -> host: {"version": N, "agent": "..."} */
	AP_JOB = 2,      /* host -> guest: the job spec (JSON) */
	AP_OUTPUT = 3,   /* guest -> host: raw job output bytes */
	AP_STEP = 4,     /* guest -> host: {"step": NAME, "exit_code": N} when a step ends */
	AP_EXIT = 5,     /* guest -> host: {"exit_code": N, "failure_reason": S?} then power off */
	AP_CANCEL = 6,   /* host -> guest: {"graceful": BOOL} */
	AP_SHELL = 7,    /* host -> guest, to a held job: {"rows": N, "cols": N, "term": S} */
	AP_STDIN = 8,    /* host -> guest: raw bytes typed into that shell */
	AP_WINSIZE = 9,  /* host -> guest: {"rows": N, "cols": N} of the host's terminal */
	/* host -> guest, before JOB, to a VM restored from a template: its new
	 * identity (agent/restore.h); the clock comes with JOB as always. */
	AP_RESTORED = 10,
	AP_TYPE_MAX = AP_RESTORED,
};

/* Accumulates stream bytes and cuts them into frames; its buffer never
 * grows past AP_READER_MAX. */
struct ap_reader {
	uint8_t *buf;
	size_t len;   /* bytes held */
	size_t cap;   /* allocated */
	size_t skip;  /* bytes of the last returned frame, dropped on the next call */
};

void ap_reader_init(struct ap_reader *r);
void ap_reader_free(struct ap_reader *r);

/* Append n bytes read from the stream. 0, -EMSGSIZE past AP_READER_MAX, or
 * -ENOMEM. */
int ap_reader_feed(struct ap_reader *r, const void *data, size_t n);

/* The next complete frame: returns 1 with *type, *payload and *len set (the
 * payload stays valid until the next call), 0 when more bytes are needed,
 * -EPROTO for an unknown type or reserved bits set, -EMSGSIZE for a frame
 * over AP_MAX_PAYLOAD. After an error the stream cannot be resynchronised. */
int ap_reader_next(struct ap_reader *r, uint8_t *type, const uint8_t **payload, uint32_t *len);

/* Fill the 8-byte header: u32 payload length (LE), u8 type, 3 zero bytes. */
void ap_header(uint8_t hdr[AP_HEADER_SIZE], uint8_t type, uint32_t len);

/* Write a whole frame to a blocking fd. 0, -EMSGSIZE or -errno. */
int ap_send(int fd, uint8_t type, const void *payload, uint32_t len);

/* Name of a frame type, for messages. */
const char *ap_type_name(uint8_t type);

#endif
