/* What kiln-diskread found on a guest's disk crosses to kiln as a tar
 * stream (libarchive, pax) on a pipe. The writer runs in the jail; the
 * reader runs in kiln, as root, and trusts the stream no more than the
 * disk it came from: only regular files and symbolic links, relative
 * names without "." / ".." / empty components or a leading .git, at most
 * TARSTREAM_MAX_DEPTH deep, each name once, and the entry and byte
 * ceilings checked against each header before its data is read. Files are
 * created inside dest through folders opened one at a time with
 * O_NOFOLLOW, never through a link, with modes masked to 0777 (no setuid,
 * setgid or sticky bits); links are made as links and never followed. */
#ifndef KILN_GUESTDISK_TARSTREAM_H
#define KILN_GUESTDISK_TARSTREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "workspace/guestdisk/ext4walk.h"
#include "lib/result.h"

#define TARSTREAM_MAX_DEPTH 64

struct tarout;

/* A writer of a tar stream to fd (left open). */
enum kiln_rc tarout_open(struct tarout **t, int fd, struct kiln_err *e);
/* The walk's sink that writes each entry it is given into t; want/arg
 * choose the entries. */
struct ext4walk_sink tarout_sink(struct tarout *t, bool (*want)(void *, const char *, bool), void *arg);
/* Finish the stream (its end-of-archive blocks) and free t. */
enum kiln_rc tarout_close(struct tarout *t, struct kiln_err *e);

struct tarin_limits {
	uint64_t max_bytes;       /* file bytes in all */
	uint32_t max_files;       /* files and links */
	double deadline;          /* CLOCK_MONOTONIC seconds: reading stops after it; 0 none */
};

struct tarin_stats {
	uint32_t files;
	uint64_t bytes;
};

/* Read the tar stream on fd into the folder dest (created when missing;
 * whatever it holds stays) within lim. KILN_E_SYNTAX for an entry that
 * breaks a rule above (naming it), KILN_E_LIMIT past a ceiling or the
 * deadline. What was written before an error stays: the caller removes it. */
enum kiln_rc tarin_extract(int fd, const char *dest, const struct tarin_limits *lim, struct tarin_stats *st,
			   struct kiln_err *e);

#endif
