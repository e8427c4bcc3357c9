/* Reading an ext4 image that a guest wrote, as data that may be hostile:
 * libext2fs over an already-open fd (never a path: the reader runs in a
 * jail where the image has no name), with every count checked before it is
 * used. A walk visits the regular files and symbolic links below one
 * folder of the image; names are checked (no '/', NUL, "." or ".."), a
 * folder that is its own ancestor stops the walk, and a file's declared
 * size is charged against the byte ceiling before a byte of it is read, so
 * an inflated size costs nothing. Corruption is an error naming the path,
 * never a crash or a loop. This runs only inside kiln-diskread's jail
 * (workspace/guestdisk/jail.h); the fuzz target drives it in-process. */
#ifndef KILN_GUESTDISK_EXT4WALK_H
#define KILN_GUESTDISK_EXT4WALK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/result.h"

#define EXT4WALK_MAX_DEPTH 64
#define EXT4WALK_MAX_DIR_ENTRIES 200000u   /* names in one folder */
#define EXT4WALK_MAX_LINK 4095u             /* bytes of a link's target */

struct ext4walk_limits {
	uint64_t max_bytes;       /* file bytes in all, declared sizes */
	uint32_t max_files;       /* files and links emitted */
	uint32_t max_visits;      /* entries looked at, emitted or not */
};

struct ext4walk_entry {
	const char *rel;          /* "a/b.txt", below the walked folder */
	bool link;                /* a symbolic link (else a regular file) */
	mode_t perm;              /* permission bits, masked to 0777 */
	int64_t mtime;
	uint64_t size;            /* file: bytes that data() will get */
	const char *target;       /* link: its target, NUL-terminated */
};

struct ext4walk_sink {
	/* Whether rel (a file, a link or a folder to descend into) is wanted;
	 * a folder is entered when want is NULL or says yes. */
	bool (*want)(void *arg, const char *rel, bool folder);
	/* A wanted entry: begin, then (files) data until size bytes, then end. */
	enum kiln_rc (*begin)(void *arg, const struct ext4walk_entry *en, struct kiln_err *e);
	enum kiln_rc (*data)(void *arg, const void *buf, size_t n, struct kiln_err *e);
	enum kiln_rc (*end)(void *arg, struct kiln_err *e);
	void *arg;
};

struct ext4walk;

/* Open the ext4 image on fd (read only; fd stays the caller's). */
enum kiln_rc ext4walk_open(struct ext4walk **w, int fd, struct kiln_err *e);
void ext4walk_close(struct ext4walk *w);

/* Walk the folder at path ("group/project", relative to the image's root;
 * "" for the root) through sink within lim. KILN_E_NOTFOUND when path is
 * not a folder of the image; KILN_E_LIMIT past a ceiling; KILN_E_SYNTAX on
 * a corrupt image. */
enum kiln_rc ext4walk_tree(struct ext4walk *w, const char *path, const struct ext4walk_limits *lim,
			   const struct ext4walk_sink *sink, struct kiln_err *e);

/* Read the regular file at path into a new buffer (*buf, *len; free it)
 * of at most max bytes. KILN_E_NOTFOUND when it is absent. */
enum kiln_rc ext4walk_read_file(struct ext4walk *w, const char *path, size_t max, char **buf, size_t *len,
				struct kiln_err *e);

#endif
