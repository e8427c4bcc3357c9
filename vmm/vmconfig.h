/* kiln-vmm's input: the VM description read from vm.json. Every key is
 * checked; an unknown or invalid key is an error that names it. */
#ifndef VMM_VMCONFIG_H
#define VMM_VMCONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/ratelimit.h"

#define VM_MAX_DRIVES 8
#define VM_MAX_NETS 4
#define VM_CMDLINE_MAX 2048
#define VM_MAX_VCPUS 32

/* A copy-on-write overlay's cap by default, MiB: the images' free space
 * (1 GiB) and more, not the whole image that a guest may rewrite. */
#define VM_COW_LIMIT_MIB 2048

struct vm_drive_cfg {
	char id[64];
	char *path;
	bool read_only;
	bool cow;                  /* private copy-on-write overlay; path never written */
	uint64_t cow_limit_mib;    /* the overlay's cap (cow_limit); 0: none */
	bool has_rate_limiter;
	struct rate_limiter_cfg rate_limiter;
};

struct vm_net_cfg {
	char id[64];
	char *tap;                 /* host tap interface name */
	bool has_tap_fd;
	int tap_fd;                /* the tap, already attached on this fd by a jailer */
	uint8_t mac[6];
	bool has_mac;
	bool has_rx_rate_limiter, has_tx_rate_limiter;
	struct rate_limiter_cfg rx_rate_limiter, tx_rate_limiter;
};

struct vm_vsock_cfg {
	bool present;
	uint32_t guest_cid;        /* >= 3 */
	char *uds_path;            /* host Unix socket; guest-initiated go to <uds_path>_<port> */
};

enum vm_serial_out { VM_SERIAL_STDOUT, VM_SERIAL_FILE, VM_SERIAL_NONE };

struct vm_config {
	char *kernel;
	char *initrd;              /* NULL when none */
	char *cmdline;
	int vcpus;                 /* 1..32 */
	uint64_t mem_mib;
	struct vm_drive_cfg drives[VM_MAX_DRIVES];
	int n_drives;
	struct vm_net_cfg nets[VM_MAX_NETS];
	int n_nets;
	struct vm_vsock_cfg vsock;
	enum vm_serial_out serial;
	char *serial_path;
	bool entropy;
	char *snapshot_save_to;    /* "snapshot": {"save_to"}: where SIGUSR2 saves; NULL: none */
	char *snapshot_load;       /* "snapshot": {"load"}: restore from here; NULL: boot */
	bool snapshot_resume;      /* "resume_after_save": run on after a save (else stop) */
	bool snapshot_copy;        /* "memory": "copy" (read into RAM), else "map" (MAP_PRIVATE) */
};

/* Parse the JSON text (name is used in messages). On failure returns
 * -EINVAL (-ENOMEM) and writes a one-line message naming the key into err. */
int vm_config_parse(struct vm_config *c, const char *name, const char *text, char *err, size_t errlen);
/* Read and parse a file; the same contract, and -errno of the read (-E2BIG
 * past 1 MiB) with a message naming the file. */
int vm_config_load(struct vm_config *c, const char *path, char *err, size_t errlen);
void vm_config_free(struct vm_config *c);

/* The sha256 of the machine's shape in a canonical text form (vCPUs,
 * memory, each drive's id and mode, each interface's id, vsock, entropy):
 * a snapshot restores only onto the same shape. Paths, tap names, MACs and
 * limits are not part of it. */
void vm_config_machine_digest(const struct vm_config *c, uint8_t digest[32]);

#endif
