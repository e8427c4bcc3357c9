/* Zip archives, as GitLab's artifacts and kiln's local cache hold them,
 * through libarchive: a folder tree written into a zip (deflate, zip64
 * extensions where an entry or the archive passes 4 GiB), and a zip, zip64
 * included, read back into a folder.
 *
 * Writing takes regular files (their permission bits and modification
 * time; modes are masked to 0777 both ways, so no setuid, setgid or sticky
 * bit is stored or restored), folders, and symbolic links (as Info-ZIP
 * and gitlab-runner store them: the target as the content, S_IFLNK in the
 * external attributes); it never follows a link. Entries are taken in
 * sorted order, so the same tree always makes the same archive. Names are
 * UTF-8 flagged.
 *
 * Hard links are not a zip notion (gitlab-runner's Go writer has none
 * either): each name of a hard-linked file is stored as a file of its own.
 *
 * Reading uses libarchive's seekable reader (the central directory, as
 * unzip does) and creates files, folders and symbolic links inside dest,
 * never through a link: every folder on an entry's way is opened with
 * O_NOFOLLOW from dest (an entry under a link is skipped with a count) and
 * files are created O_EXCL|O_NOFOLLOW after what an earlier entry left
 * there is removed (a folder excepted). A link is made when its target
 * cannot lead out of dest however the links there resolve: relative, its
 * ".." first and no more of them than the link's folders inside dest
 * ("node_modules/.bin/x -> ../pkg/bin/x", "libfoo.so -> libfoo.so.1").
 * Absolute targets, a climb above dest, and a ".." after a name (which
 * could climb back out through another link) are skipped with a count, as
 * are names that are absolute, hold "..", ".", an empty component or a
 * backslash, hard links, and devices, fifos and sockets. Every entry's
 * CRC32 is checked (libarchive reports a mismatch, an error here), its
 * declared size against max_bytes before anything is written and its real
 * size while writing. Encrypted entries are an error.
 *
 * Ceilings: ZIP_MAX_ENTRIES entries and a ZIP_MAX_CENTRAL-byte central
 * directory, both ways; reading holds the end record's (zip64's included)
 * to them before libarchive reads the directory. libarchive keeps all of it
 * in memory: reading, about 160 bytes an entry whatever its name's length
 * (measured: 1,000,000 entries named in 60 or in 200 bytes, 157 MiB
 * resident either way); writing, the directory itself, at most
 * ZIP_MAX_CENTRAL. The entry ceiling is the file ceiling of fstree_copy
 * (FSTREE_MAX_FILES), which lays every extracted tree over the checkout: a
 * larger archive could not be used. 65,535 (zip's count without zip64) was
 * too few for node_modules caches. The directory ceiling leaves 1,000,000
 * entries names of about 160 bytes (a central record is 46 bytes,
 * libarchive's extra fields up to 52, and the name).
 *
 * Where libarchive differs from the zip code it replaces: a backslash in a
 * name not flagged UTF-8 is read as a folder separator (as Windows tools
 * mean it: "a\b" lands as a/b, "..\x" is "../x" and skipped); methods
 * other than store and deflate (bzip2, lzma, xz, zstd) are read too, under
 * the same byte ceiling. Measured on the 2-core build machine, a tree with
 * one sparse 4,297,064,448-byte file: written in 27 s (a 4.2 MB zip64
 * archive), extracted and compared in 51 s, at 5.5 MB resident. */
#ifndef KILN_ZIP_H
#define KILN_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "lib/result.h"

#define ZIP_MAX_ENTRIES 1000000u          /* = FSTREE_MAX_FILES */
#define ZIP_MAX_CENTRAL (256ULL << 20)     /* central directory bytes */
#define ZIP_MAX_BYTES (64ULL << 30)    /* uncompressed total when the caller gives none */

struct zip_stats {
	unsigned files;            /* regular files written or extracted */
	unsigned links;            /* symbolic links written or made */
	unsigned skipped;          /* entries left out (reading: unsafe names or links) */
	uint64_t bytes;            /* their uncompressed size */
};

/* Write every entry below dir into a new zip at path (replaced; removed
 * again on failure), names relative to dir. max_bytes bounds the
 * uncompressed total (0: ZIP_MAX_BYTES). */
enum kiln_rc zip_write_dir(const char *dir, const char *path, uint64_t max_bytes, struct zip_stats *st,
			   struct kiln_err *e);

/* Extract the zip at path into dest (created when missing). max_bytes
 * bounds the uncompressed total (0: ZIP_MAX_BYTES). */
enum kiln_rc zip_extract(const char *path, const char *dest, uint64_t max_bytes, struct zip_stats *st,
			 struct kiln_err *e);

#endif
