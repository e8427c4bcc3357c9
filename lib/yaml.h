/* YAML as a tree, the one libyaml front end (the pipeline's .gitlab-ci.yml
 * and kiln's configuration file): every node knows the file and line it came
 * from, mappings keep their key order, anchors/aliases are expanded,
 * `<<` merge keys are applied (Psych's semantics, see below) and a
 * `!reference [job, key, ...]` sequence is kept as a marked node for the
 * pipeline layer to resolve after include and extends.
 *
 * Every node and string lives in one arena (struct cy_arena) with a byte
 * and a node ceiling, freed at once: nothing in a tree is freed on its own,
 * and the transformations here never modify a node they did not create, so
 * subtrees may be shared freely.
 *
 * Choices where YAML and GitLab differ, following GitLab (Ruby's Psych):
 *  - `<<: *a` copies a's keys into the mapping at that point, overwriting
 *    keys already there; keys written after it overwrite merged ones. With
 *    `<<: [*a, *b]` the earlier mapping wins over the later one.
 *  - A plain scalar that is empty, ~, null, Null or NULL is null; booleans
 *    are YAML 1.1's (true/false, yes/no, on/off in three casings).
 *  - A key written twice: the later value wins, in the first one's place,
 *    and a warning names both lines.
 *  - A stream with two documents is accepted only when the first is a
 *    `spec:` header (GitLab's inputs header); it is skipped with a warning.
 *  - Unknown tags are ignored with a warning; !!str makes a scalar a string.
 */
#ifndef KILN_CIYAML_H
#define KILN_CIYAML_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define CY_MAX_FILE_BYTES (1u << 20)    /* one YAML file */
#define CY_MAX_ARENA_BYTES (96u << 20)  /* everything one pipeline allocates */
#define CY_MAX_NODES 400000u            /* nodes created, copies included */
#define CY_MAX_DEPTH 200                /* nesting of one document */
#define CY_MAX_MAP_KEYS 10000u          /* keys of one mapping */

/* Receives one warning line ("FILE:LINE: what"); arg is the caller's. */
typedef void (*ci_warn_fn)(void *arg, const char *msg);

enum cy_kind { CY_NULL, CY_SCALAR, CY_SEQ, CY_MAP };

struct cy_pair;

struct cy_node {
	enum cy_kind kind;
	bool plain;            /* scalar written without quotes or !!str */
	bool ref;              /* a `!reference [...]` sequence */
	const char *file;      /* repository-relative file name */
	unsigned line;         /* 1-based */
	const char *str;       /* CY_SCALAR: the text; CY_NULL: "" */
	size_t n;              /* CY_SEQ: items; CY_MAP: pairs */
	struct cy_node **items;
	struct cy_pair *pairs;
};

struct cy_pair {
	const char *key;
	const struct cy_node *knode;   /* the key as written (for its line) */
	struct cy_node *value;
};

struct cy_arena;

/* A new arena with the ceilings above; NULL when out of memory. */
struct cy_arena *cy_arena_new(void);
/* Free the arena and everything in it; *a becomes NULL (NULL is fine). */
void cy_arena_free(struct cy_arena **a);
/* n zeroed bytes, or NULL when the ceiling is reached or memory is out. */
void *cy_alloc(struct cy_arena *a, size_t n);
char *cy_strdup(struct cy_arena *a, const char *s);
char *cy_strndup(struct cy_arena *a, const char *s, size_t n);
char *cy_printf(struct cy_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* After an allocation from a failed: fill e with "out of memory" or with
 * the ceiling that was reached (KILN_E_LIMIT); returns the code. */
enum kiln_rc cy_fail_alloc(struct cy_arena *a, struct kiln_err *e);

/* A new node of kind k at file:line (counted against CY_MAX_NODES). */
struct cy_node *cy_new(struct cy_arena *a, enum cy_kind k, const char *file, unsigned line);
/* A new plain scalar holding a copy of s. */
struct cy_node *cy_new_str(struct cy_arena *a, const char *s, const char *file, unsigned line);
/* Append item to a sequence node or (key, value) to a mapping node that
 * this caller created; capacity grows in the arena. -1 when out of memory. */
int cy_seq_push(struct cy_arena *a, struct cy_node *seq, struct cy_node *item);
int cy_map_push(struct cy_arena *a, struct cy_node *map, const char *key, const struct cy_node *knode,
		struct cy_node *value);

/* Parse text (len bytes) of the file called name (as messages show it)
 * into *root. A YAML error is KILN_E_SYNTAX "NAME:LINE: YAML syntax error:
 * PROBLEM"; an empty document gives a CY_NULL root. Warnings go to warn
 * (which may be NULL). */
enum kiln_rc cy_parse(struct cy_arena *a, const char *name, const char *text, size_t len, struct cy_node **root,
		      ci_warn_fn warn, void *warn_arg, struct kiln_err *e);
/* cy_parse with flags: CY_AS_WRITTEN reads the mappings as written (a key
 * written twice is there twice, `<<` is an ordinary key) and leaves a null
 * its text in str, for a caller that reports those itself (the kiln
 * configuration file). */
#define CY_AS_WRITTEN 1u
enum kiln_rc cy_parse_flags(struct cy_arena *a, const char *name, const char *text, size_t len, unsigned flags,
			    struct cy_node **root, ci_warn_fn warn, void *warn_arg, struct kiln_err *e);
/* Read path (at most CY_MAX_FILE_BYTES) and parse it as cy_parse does,
 * naming it name in messages. A missing file is KILN_E_NOTFOUND. */
enum kiln_rc cy_load_file(struct cy_arena *a, const char *path, const char *name, struct cy_node **root,
			  ci_warn_fn warn, void *warn_arg, struct kiln_err *e);

/* The value of key in map, or NULL (also when map is not a mapping). */
struct cy_node *cy_get(const struct cy_node *map, const char *key);
/* The pair of key in map, or NULL. */
const struct cy_pair *cy_find(const struct cy_node *map, const char *key);
/* A scalar that is not null. */
bool cy_is_str(const struct cy_node *n);
/* A YAML 1.1 boolean into *out; false when n is not one. */
bool cy_bool(const struct cy_node *n, bool *out);
/* A plain decimal integer into *out; false when n is not one. */
bool cy_int(const struct cy_node *n, long *out);
/* "a string", "a list", "a mapping" or "null", for messages. */
const char *cy_kind_name(const struct cy_node *n);

/* A deep copy of n (NULL when out of memory or nodes). */
struct cy_node *cy_copy(struct cy_arena *a, const struct cy_node *n);
/* GitLab's deep_merge: when both are mappings, a new mapping with base's
 * keys in order, over's values replacing them (merged again when both are
 * mappings) and over's new keys appended; otherwise over itself. A
 * !reference is a leaf. NULL when out of memory. */
struct cy_node *cy_merge(struct cy_arena *a, const struct cy_node *base, const struct cy_node *over);
/* A new mapping holding map's pairs but key (NULL when out of memory). */
struct cy_node *cy_without(struct cy_arena *a, const struct cy_node *map, const char *key);

#endif
