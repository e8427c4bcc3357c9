/* Reading a finished job's workspace image without parsing it in kiln.
 *
 * The image was written by the guest, which may have rewritten its raw
 * blocks: names with "/" or "..", links and files under one name, folders
 * inside themselves, inflated sizes, corrupt inode maps. Parsing it as root
 * (debugfs did, until this) handed the guest the host. Instead kiln runs
 * kiln-diskread (workspace/guestdisk/main.c), a throw-away process that:
 *   - starts in new mount, network, IPC and UTS namespaces, with the image
 *     open on fd 3 (opening is not parsing) and nothing else of the host;
 *   - has as its whole file system a private tmpfs of DISKREAD_SCRATCH_BYTES
 *     (for a copy of the checkout's git index), gone with its namespace;
 *   - runs as uid/gid DISKREAD_UID with no supplementary groups, no
 *     capabilities, no_new_privs, not dumpable, RLIMIT_AS, RLIMIT_CPU,
 *     RLIMIT_NOFILE, RLIMIT_FSIZE and RLIMIT_CORE set;
 *   - under a seccomp allowlist (no socket, no exec, no kill, no ptrace, no
 *     PROT_EXEC), entered before the first byte of the image is read;
 *   - walks the project folder with workspace/guestdisk/ext4walk.h (libext2fs,
 *     bounded) and, for untracked, reads the guest's .git/index with
 *     libgit2, then writes what the artifact spec selects as a tar stream on
 *     a pipe.
 * kiln reads that stream with workspace/guestdisk/tarstream.h, which checks
 * every name, type, size and ceiling itself, within a wall-clock deadline,
 * and kills the reader past it. */
#ifndef KILN_GUESTDISK_DISKREAD_H
#define KILN_GUESTDISK_DISKREAD_H

#include <stdint.h>
#include <sys/types.h>

#include "workspace/artifacts.h"
#include "workspace/fstree.h"
#include "workspace/guestdisk/tarstream.h"
#include "lib/result.h"

#define DISKREAD_UID 65534                   /* nobody: owns nothing on the host */
#define DISKREAD_SCRATCH_BYTES (264ULL << 20) /* the git index and a margin */
#define DISKREAD_MAX_INDEX (256u << 20)       /* bytes of a checkout's .git/index */
#define DISKREAD_MAX_VISITS 2000000u          /* entries looked at in the project */
#define DISKREAD_MEMORY (2ULL << 30)          /* RLIMIT_AS */
#define DISKREAD_TIME_S 900                   /* wall clock and CPU */

struct diskread_req {
	const char *image;        /* the workspace image (ext4) */
	const char *project;      /* "group/project": the folder in it */
	const struct artifacts_spec *a;
	const char *tmp_dir;      /* a root-only folder for the jail's mount point */
	uint64_t max_bytes;       /* 0: ARTIFACTS_MAX_BYTES */
	uint32_t max_files;       /* 0: ARTIFACTS_MAX_FILES */
	unsigned time_s;          /* 0: DISKREAD_TIME_S */
	/* Called with the reader's pid before its stream is read (so it
	 * blocks once the pipe is full); the tests look at its /proc. */
	void (*started)(pid_t pid, void *arg);
	void *started_arg;
};

/* Extract what r->a selects from r->image into dest (created, left as it
 * is when something fails: the caller removes it). st gets the count.
 * Needs root (namespaces, tmpfs, the uid change); kiln-diskread is found in
 * kiln_libexec_dir(). A failure names the image and what was wrong. */
enum kiln_rc diskread_extract(const struct diskread_req *r, const char *dest, struct tarin_stats *st,
			      struct kiln_err *e);

/* Extract the artifacts a selects from the ext4 image (project: the
 * project folder inside it, "group/project") into dest, which is emptied
 * first (and removed again when nothing matched or something failed).
 * tmp_dir is a root-only folder for the reader's jail. st gets what was
 * copied. */
enum kiln_rc artifacts_collect(const char *image, const char *project, const struct artifacts_spec *a,
			       const char *tmp_dir, const char *dest, struct fstree_stats *st, struct kiln_err *e);

#endif
