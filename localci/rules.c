#include "localci/rules.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/glob.h"
#include "lib/treewalk.h"
#include "lib/varexpand.h"

/* ---- expressions ------------------------------------------------------ */

#define MAX_AST 1024

enum tok_kind { T_END, T_VAR, T_STR, T_RE, T_NULL, T_EQ, T_NE, T_MATCH, T_NMATCH, T_AND, T_OR, T_LP, T_RP };

struct tok {
	enum tok_kind k;
	size_t pos;            /* byte offset in the expression */
	const char *s;         /* VAR: name; STR: text; RE: source */
	size_t len;
	char flags[8];         /* RE */
};

enum ast_op { A_VAR, A_STR, A_NULL, A_RE, A_EQ, A_NE, A_MATCH, A_NMATCH, A_AND, A_OR };

struct ast {
	enum ast_op op;
	int l, r;
	char *s;               /* VAR name or STR text, malloc'd */
	regex_t re;
	bool have_re;
};

struct expr {
	const char *src;
	size_t pos;
	struct tok cur;
	struct ast nodes[MAX_AST];
	int n;
	int depth;
	struct kiln_err *e;
};

enum val_kind { V_NULL, V_STR, V_BOOL, V_RE };

struct val {
	enum val_kind k;
	const char *s;         /* V_STR */
	bool b;                /* V_BOOL */
	const regex_t *re;     /* V_RE */
};

static enum kiln_rc syntax(struct expr *x, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static enum kiln_rc syntax(struct expr *x, size_t pos, const char *fmt, ...)
{
	char what[300];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(x->e, KILN_E_SYNTAX, "%s at column %zu", what, pos + 1);
}

static bool name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_';
}

static const char *tok_name(const struct tok *t)
{
	switch (t->k) {
	case T_END: return "end of expression";
	case T_VAR: return "variable";
	case T_STR: return "string";
	case T_RE: return "regex";
	case T_NULL: return "null";
	case T_EQ: return "'=='";
	case T_NE: return "'!='";
	case T_MATCH: return "'=~'";
	case T_NMATCH: return "'!~'";
	case T_AND: return "'&&'";
	case T_OR: return "'||'";
	case T_LP: return "'('";
	case T_RP: return "')'";
	}
	return "?";
}

static enum kiln_rc lex(struct expr *x)
{
	const char *s = x->src;
	size_t i = x->pos, j;
	struct tok *t = &x->cur;

	while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
		i++;
	memset(t, 0, sizeof(*t));
	t->pos = i;
	if (!s[i]) {
		t->k = T_END;
		x->pos = i;
		return KILN_OK;
	}
	if (s[i] == '$') {
		if (s[i + 1] == '{') {
			for (j = i + 2; name_char(s[j]); j++)
				;
			if (j == i + 2 || s[j] != '}')
				return syntax(x, i, "%s", "bad variable reference (expected ${NAME})");
			t->s = s + i + 2;
			t->len = j - i - 2;
			i = j + 1;
		} else {
			for (j = i + 1; name_char(s[j]); j++)
				;
			if (j == i + 1)
				return syntax(x, i, "%s", "'$' without a variable name");
			t->s = s + i + 1;
			t->len = j - i - 1;
			i = j;
		}
		t->k = T_VAR;
	} else if (s[i] == '"' || s[i] == '\'') {
		const char *end = strchr(s + i + 1, s[i]);

		if (!end)
			return syntax(x, i, "%s", "unterminated string");
		t->k = T_STR;
		t->s = s + i + 1;
		t->len = (size_t)(end - (s + i + 1));
		i = (size_t)(end - s) + 1;
	} else if (s[i] == '/') {
		size_t f = 0;

		for (j = i + 1; s[j] && s[j] != '/'; j++)
			if (s[j] == '\\' && s[j + 1])
				j++;
		if (!s[j])
			return syntax(x, i, "%s", "unterminated regex (expected /.../)");
		if (j == i + 1)
			return syntax(x, i, "%s", "empty regex");
		t->k = T_RE;
		t->s = s + i + 1;
		t->len = j - i - 1;
		for (i = j + 1; isalpha((unsigned char)s[i]); i++) {
			if (!strchr("ims", s[i]))
				return syntax(x, i, "unsupported regex flag '%c' (i, m and s are)", s[i]);
			if (f < sizeof(t->flags) - 1)
				t->flags[f++] = s[i];
		}
	} else if (!strncmp(s + i, "null", 4) && !name_char(s[i + 4])) {
		t->k = T_NULL;
		i += 4;
	} else if (s[i] == '(' || s[i] == ')') {
		t->k = s[i] == '(' ? T_LP : T_RP;
		i++;
	} else {
		static const struct { const char *op; enum tok_kind k; } ops[] = {
			{ "==", T_EQ }, { "!=", T_NE }, { "=~", T_MATCH }, { "!~", T_NMATCH },
			{ "&&", T_AND }, { "||", T_OR },
		};
		size_t o;

		for (o = 0; o < sizeof(ops) / sizeof(ops[0]); o++)
			if (!strncmp(s + i, ops[o].op, 2))
				break;
		if (o == sizeof(ops) / sizeof(ops[0])) {
			size_t n = 0;

			while (s[i + n] && !isspace((unsigned char)s[i + n]) && n < 20)
				n++;
			return syntax(x, i, "unexpected '%.*s'", (int)n, s + i);
		}
		t->k = ops[o].k;
		i += 2;
	}
	x->pos = i;
	return KILN_OK;
}

/* RE2 source to a POSIX extended regex in out (size outsz); -1 with why
 * set when the source uses something POSIX cannot express. */
static int translate_re(const char *src, size_t len, char *out, size_t outsz, const char **why)
{
	size_t i = 0, o = 0;
	bool in_br = false;

#define EMIT(str)                                                                    \
	do {                                                                         \
		const char *e_ = (str);                                              \
		size_t l_ = strlen(e_);                                              \
		if (o + l_ + 1 > outsz) {                                            \
			*why = "too long";                                           \
			return -1;                                                   \
		}                                                                    \
		memcpy(out + o, e_, l_);                                             \
		o += l_;                                                             \
	} while (0)
	while (i < len) {
		char c = src[i], d = i + 1 < len ? src[i + 1] : '\0', one[3] = { 0 };

		if (!in_br) {
			if (c == '\\' && i + 1 < len) {
				i += 2;
				switch (d) {
				case 'd': EMIT("[0-9]"); break;
				case 'D': EMIT("[^0-9]"); break;
				case 'w': EMIT("[A-Za-z0-9_]"); break;
				case 'W': EMIT("[^A-Za-z0-9_]"); break;
				case 's': EMIT("[[:space:]]"); break;
				case 'S': EMIT("[^[:space:]]"); break;
				case 'A': EMIT("^"); break;
				case 'z': case 'Z': EMIT("$"); break;
				case 'n': EMIT("\n"); break;
				case 't': EMIT("\t"); break;
				case 'r': EMIT("\r"); break;
				case 'b': EMIT("\\b"); break;
				case 'B': EMIT("\\B"); break;
				case '/': EMIT("/"); break;
				default:
					if (isalnum((unsigned char)d)) {
						*why = "unsupported escape";
						return -1;
					}
					one[0] = '\\';
					one[1] = d;
					EMIT(one);
				}
				continue;
			}
			if (c == '[') {
				in_br = true;
				EMIT("[");
				i++;
				if (i < len && src[i] == '^') {
					EMIT("^");
					i++;
				}
				if (i < len && src[i] == ']') {
					EMIT("]");
					i++;
				}
				continue;
			}
			if (c == '(' && d == '?') {
				if (i + 2 < len && src[i + 2] == ':') {
					EMIT("(");
					i += 3;
					continue;
				}
				*why = "unsupported group (?...)";
				return -1;
			}
			if ((c == '*' || c == '+' || c == '?' || c == '}') && d == '?') {
				one[0] = c;
				EMIT(one);
				i += 2; /* lazy: the same yes/no answer as greedy */
				continue;
			}
			one[0] = c;
			EMIT(one);
			i++;
			continue;
		}
		/* inside [...] */
		if (c == ']') {
			in_br = false;
			EMIT("]");
			i++;
		} else if (c == '[' && d == ':') {
			const char *end = strstr(src + i, ":]");

			if (!end || (size_t)(end - src) >= len) {
				*why = "unterminated [:class:]";
				return -1;
			}
			while (src + i < end + 2) {
				one[0] = src[i++];
				EMIT(one);
			}
		} else if (c == '\\' && i + 1 < len) {
			i += 2;
			switch (d) {
			case 'd': EMIT("0-9"); break;
			case 'w': EMIT("A-Za-z0-9_"); break;
			case 's': EMIT(" \t\n\r\f\v"); break;
			case 'n': EMIT("\n"); break;
			case 't': EMIT("\t"); break;
			case 'r': EMIT("\r"); break;
			case ']': EMIT("[.].]"); break;
			case '-': EMIT("[.-.]"); break;
			case '^': EMIT("[.^.]"); break;
			case 'D': case 'W': case 'S':
				*why = "negated class inside [...]";
				return -1;
			default:
				one[0] = d;
				EMIT(one);
			}
		} else {
			one[0] = c;
			EMIT(one);
			i++;
		}
	}
#undef EMIT
	out[o] = '\0';
	return 0;
}

/* Compile src (len bytes) with flags; -1 with msg filled on failure. */
static int compile_re(const char *src, size_t len, const char *flags, regex_t *re, char *msg, size_t msgsz)
{
	int cflags = REG_EXTENDED | REG_NOSUB, rc;
	const char *why = NULL;
	char *buf;
	size_t bufsz = len * 12 + 16;

	if (strchr(flags, 'i'))
		cflags |= REG_ICASE;
	if (strchr(flags, 'm'))
		cflags |= REG_NEWLINE;
	buf = malloc(bufsz);
	if (!buf) {
		snprintf(msg, msgsz, "out of memory");
		return -1;
	}
	if (translate_re(src, len, buf, bufsz, &why)) {
		snprintf(msg, msgsz, "%s", why);
		free(buf);
		return -1;
	}
	rc = regcomp(re, buf, cflags);
	free(buf);
	if (rc) {
		regerror(rc, re, msg, msgsz);
		return -1;
	}
	return 0;
}

static int new_node(struct expr *x, enum ast_op op, int l, int r)
{
	struct ast *a;

	if (x->n >= MAX_AST)
		return -1;
	a = &x->nodes[x->n];
	memset(a, 0, sizeof(*a));
	a->op = op;
	a->l = l;
	a->r = r;
	return x->n++;
}

static enum kiln_rc parse_or(struct expr *x, int *out);

static enum kiln_rc parse_primary(struct expr *x, int *out)
{
	struct tok t = x->cur;
	enum kiln_rc rc;
	int n;

	switch (t.k) {
	case T_LP:
		if (++x->depth > CIRULES_MAX_DEPTH)
			return syntax(x, t.pos, "parentheses nested deeper than %d", CIRULES_MAX_DEPTH);
		if ((rc = lex(x)) || (rc = parse_or(x, out)))
			return rc;
		if (x->cur.k != T_RP)
			return syntax(x, x->cur.pos, "expected ')', got %s", tok_name(&x->cur));
		x->depth--;
		return lex(x);
	case T_VAR:
	case T_STR:
	case T_NULL:
	case T_RE:
		n = new_node(x, t.k == T_VAR ? A_VAR : t.k == T_STR ? A_STR : t.k == T_NULL ? A_NULL : A_RE, -1, -1);
		if (n < 0)
			return syntax(x, t.pos, "%s", "expression too long");
		if (t.k == T_VAR || t.k == T_STR) {
			x->nodes[n].s = strndup(t.s, t.len);
			if (!x->nodes[n].s)
				return kiln_fail(x->e, KILN_E_NOMEM, "out of memory");
		} else if (t.k == T_RE) {
			char msg[200];

			if (compile_re(t.s, t.len, t.flags, &x->nodes[n].re, msg, sizeof(msg)))
				return syntax(x, t.pos, "invalid regex /%.*s/: %s", (int)t.len, t.s, msg);
			x->nodes[n].have_re = true;
		}
		*out = n;
		return lex(x);
	default:
		return syntax(x, t.pos, "expected a value, got %s", tok_name(&t));
	}
}

static enum kiln_rc parse_cmp(struct expr *x, int *out)
{
	enum kiln_rc rc;
	int l, r;

	if ((rc = parse_primary(x, &l)))
		return rc;
	while (x->cur.k == T_EQ || x->cur.k == T_NE || x->cur.k == T_MATCH || x->cur.k == T_NMATCH) {
		enum tok_kind k = x->cur.k;
		size_t pos = x->cur.pos;

		if ((rc = lex(x)) || (rc = parse_primary(x, &r)))
			return rc;
		l = new_node(x, k == T_EQ ? A_EQ : k == T_NE ? A_NE : k == T_MATCH ? A_MATCH : A_NMATCH, l, r);
		if (l < 0)
			return syntax(x, pos, "%s", "expression too long");
	}
	*out = l;
	return KILN_OK;
}

static enum kiln_rc parse_and(struct expr *x, int *out)
{
	enum kiln_rc rc;
	int l, r;

	if ((rc = parse_cmp(x, &l)))
		return rc;
	while (x->cur.k == T_AND) {
		size_t pos = x->cur.pos;

		if ((rc = lex(x)) || (rc = parse_cmp(x, &r)))
			return rc;
		if ((l = new_node(x, A_AND, l, r)) < 0)
			return syntax(x, pos, "%s", "expression too long");
	}
	*out = l;
	return KILN_OK;
}

static enum kiln_rc parse_or(struct expr *x, int *out)
{
	enum kiln_rc rc;
	int l, r;

	if ((rc = parse_and(x, &l)))
		return rc;
	while (x->cur.k == T_OR) {
		size_t pos = x->cur.pos;

		if ((rc = lex(x)) || (rc = parse_and(x, &r)))
			return rc;
		if ((l = new_node(x, A_OR, l, r)) < 0)
			return syntax(x, pos, "%s", "expression too long");
	}
	*out = l;
	return KILN_OK;
}

static bool ruby_truthy(const struct val *v)
{
	return !(v->k == V_NULL || (v->k == V_BOOL && !v->b));
}

static bool present(const struct val *v)
{
	const char *s;

	switch (v->k) {
	case V_NULL: return false;
	case V_BOOL: return v->b;
	case V_RE: return true;
	case V_STR:
		for (s = v->s; *s; s++)
			if (!isspace((unsigned char)*s))
				return true;
		return false;
	}
	return false;
}

static bool equal(const struct val *a, const struct val *b)
{
	if (a->k != b->k)
		return false;
	switch (a->k) {
	case V_NULL: return true;
	case V_STR: return !strcmp(a->s, b->s);
	case V_BOOL: return a->b == b->b;
	case V_RE: return a->re == b->re;
	}
	return false;
}

/* Does the regex value re match text? A string is used as a regex, in the
 * /.../flags form or bare; one that does not compile never matches. */
static bool matches(const struct val *text, const struct val *re)
{
	const char *t = text->k == V_STR ? text->s : text->k == V_BOOL ? (text->b ? "true" : "false") : "";
	regex_t tmp;
	char msg[100];
	bool m;

	if (re->k == V_RE)
		return regexec(re->re, t, 0, NULL, 0) == 0;
	if (re->k != V_STR)
		return false;
	{
		const char *s = re->s, *last = strrchr(s, '/');
		size_t len = strlen(s);
		const char *flags = "";
		char fl[8] = { 0 };

		if (s[0] == '/' && last && last > s + 1 && strspn(last + 1, "ims") == strlen(last + 1) &&
		    strlen(last + 1) < sizeof(fl)) {
			snprintf(fl, sizeof(fl), "%s", last + 1);
			flags = fl;
			len = (size_t)(last - s - 1);
			s++;
		}
		if (compile_re(s, len, flags, &tmp, msg, sizeof(msg)))
			return false;
	}
	m = regexec(&tmp, t, 0, NULL, 0) == 0;
	regfree(&tmp);
	return m;
}

static struct val eval_node(struct expr *x, int i, cirules_lookup_fn lookup, void *arg)
{
	const struct ast *a = &x->nodes[i];
	struct val v = { V_NULL, NULL, false, NULL }, l, r;

	switch (a->op) {
	case A_VAR:
		v.s = lookup ? lookup(arg, a->s) : NULL;
		v.k = v.s ? V_STR : V_NULL;
		return v;
	case A_STR:
		v.k = V_STR;
		v.s = a->s;
		return v;
	case A_NULL:
		return v;
	case A_RE:
		v.k = V_RE;
		v.re = &a->re;
		return v;
	case A_AND:
		l = eval_node(x, a->l, lookup, arg);
		return ruby_truthy(&l) ? eval_node(x, a->r, lookup, arg) : l;
	case A_OR:
		l = eval_node(x, a->l, lookup, arg);
		return ruby_truthy(&l) ? l : eval_node(x, a->r, lookup, arg);
	case A_EQ:
	case A_NE:
	case A_MATCH:
	case A_NMATCH:
		l = eval_node(x, a->l, lookup, arg);
		r = eval_node(x, a->r, lookup, arg);
		v.k = V_BOOL;
		if (a->op == A_EQ)
			v.b = equal(&l, &r);
		else if (a->op == A_NE)
			v.b = !equal(&l, &r);
		else if (r.k == V_NULL)
			v.b = a->op == A_NMATCH;
		else
			v.b = matches(&l, &r) == (a->op == A_MATCH);
		return v;
	}
	return v;
}

enum kiln_rc cirules_eval(const char *expr, cirules_lookup_fn lookup, void *arg, bool *result, struct kiln_err *e)
{
	struct expr *x;
	enum kiln_rc rc;
	int root = -1, i;

	*result = false;
	if (strlen(expr) > CIRULES_MAX_EXPR)
		return kiln_fail(e, KILN_E_LIMIT, "expression longer than %d bytes", CIRULES_MAX_EXPR);
	x = calloc(1, sizeof(*x));
	if (!x)
		return kiln_fail(e, KILN_E_NOMEM, "out of memory");
	x->src = expr;
	x->e = e;
	if ((rc = lex(x)))
		goto out;
	if (x->cur.k == T_END) {
		rc = syntax(x, 0, "%s", "empty expression");
		goto out;
	}
	if ((rc = parse_or(x, &root)))
		goto out;
	if (x->cur.k != T_END) {
		rc = syntax(x, x->cur.pos, "unexpected %s", tok_name(&x->cur));
		goto out;
	}
	{
		struct val v = eval_node(x, root, lookup, arg);

		*result = present(&v);
	}
out:
	for (i = 0; i < x->n; i++) {
		free(x->nodes[i].s);
		if (x->nodes[i].have_re)
			regfree(&x->nodes[i].re);
	}
	free(x);
	return rc;
}

/* ---- globs ------------------------------------------------------------ */

bool cirules_glob_match(const char *pattern, const char *path)
{
	if (strlen(pattern) > CIRULES_MAX_PATTERN)
		return false;
	return kiln_glob_match(pattern, path, KILN_GLOB_BRACES);
}

struct walk {
	char **alts;
	int n_alts;
	size_t seen;
	bool found;
};

static enum kiln_walk_step exists_one(void *arg, const char *rel, const struct stat *st)
{
	struct walk *w = arg;
	const char *name = strrchr(rel, '/');
	int i;

	(void)st;
	if (!strcmp(name ? name + 1 : rel, ".git"))
		return KILN_WALK_SKIP;
	if (++w->seen > CIRULES_EXISTS_MAX_FILES) {
		w->found = true; /* GitLab: too many to check, the rule holds */
		return KILN_WALK_STOP;
	}
	for (i = 0; i < w->n_alts && !w->found; i++)
		w->found = kiln_glob_match_one(w->alts[i], rel, 0);
	return w->found ? KILN_WALK_STOP : KILN_WALK_NEXT;
}

enum kiln_rc cirules_exists_in(const char *root, const char *pattern, bool *found, struct kiln_err *e)
{
	char path[PATH_MAX];
	char *alts[KILN_GLOB_MAX_ALTS];
	struct walk w = { 0 };
	enum kiln_rc rc;
	int fd;

	*found = false;
	while (!strncmp(pattern, "./", 2))
		pattern += 2;
	while (*pattern == '/')
		pattern++;
	if (strlen(pattern) > CIRULES_MAX_PATTERN)
		return kiln_fail(e, KILN_E_LIMIT, "exists: pattern longer than %d bytes", CIRULES_MAX_PATTERN);
	if (!*pattern || !strcmp(pattern, "..") || !strncmp(pattern, "../", 3) || strstr(pattern, "/../") ||
	    (strlen(pattern) >= 3 && !strcmp(pattern + strlen(pattern) - 3, "/..")))
		return KILN_OK; /* nothing outside the repository matches */
	if (!strpbrk(pattern, "*?[{\\")) {
		struct stat st;

		if (snprintf(path, sizeof(path), "%s/%s", root, pattern) >= (int)sizeof(path))
			return KILN_OK;
		*found = lstat(path, &st) == 0;
		return KILN_OK;
	}
	w.n_alts = kiln_glob_braces(pattern, alts, KILN_GLOB_MAX_ALTS);
	if (w.n_alts < 0)
		return kiln_fail(e, KILN_E_LIMIT, "exists: '%s' expands to more than %d patterns", pattern,
				 KILN_GLOB_MAX_ALTS);
	w.alts = alts;
	fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		kiln_glob_braces_free(alts, w.n_alts);
		return kiln_fail_errno(e, "exists: %s", root);
	}
	rc = kiln_treewalk(fd, CIRULES_EXISTS_MAX_DEPTH, exists_one, &w) ? kiln_fail_errno(e, "exists: %s", root)
									  : KILN_OK;
	kiln_glob_braces_free(alts, w.n_alts);
	*found = w.found;
	return rc;
}

/* ---- one rule --------------------------------------------------------- */

static enum kiln_rc fail_node(const struct cirules_env *env, const struct cy_node *n, struct kiln_err *e,
			      enum kiln_rc rc, const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static enum kiln_rc fail_node(const struct cirules_env *env, const struct cy_node *n, struct kiln_err *e,
			      enum kiln_rc rc, const char *fmt, ...)
{
	char what[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return kiln_fail(e, rc, "%s:%u: %s: %s", n->file, n->line, env->what, what);
}

static void warn_node(const struct cirules_env *env, const struct cy_node *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void warn_node(const struct cirules_env *env, const struct cy_node *n, const char *fmt, ...)
{
	char what[400], msg[600];
	va_list ap;

	if (!env->warn)
		return;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(msg, sizeof(msg), "%s:%u: %s: %s", n->file, n->line, env->what, what);
	env->warn(env->warn_arg, msg);
}

/* s with $VAR and ${VAR} of defined variables replaced and the others
 * kept, into out (size outsz); -1 when it does not fit. */
static int expand_pattern(const char *s, cirules_lookup_fn lookup, void *arg, char *out, size_t outsz)
{
	struct var_names vn = { lookup, arg };
	char *p = NULL;
	size_t len = 0, cap = 0;
	enum kiln_rc rc;

	rc = var_expand_into(s, VAR_KEEP_UNDEFINED | VAR_NO_ESCAPE | VAR_DIGIT_FIRST, var_by_name, &vn, &p, &len,
			     &cap, outsz);
	if (!rc)
		memcpy(out, p, len + 1);
	free(p);
	return rc ? -1 : 0;
}

/* Whether one exists: pattern node (a string, possibly in nested lists)
 * matches; *found accumulates. */
static enum kiln_rc exists_patterns(const struct cirules_env *env, const struct cy_node *n, int depth,
				    bool *found, struct kiln_err *e)
{
	char pat[CIRULES_MAX_PATTERN + 1];
	enum kiln_rc rc;
	size_t i;

	if (*found || n->kind == CY_NULL)
		return KILN_OK;
	if (n->kind == CY_SEQ) {
		if (depth > 10)
			return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: lists nested too deep");
		for (i = 0; i < n->n && !*found; i++)
			if ((rc = exists_patterns(env, n->items[i], depth + 1, found, e)))
				return rc;
		return KILN_OK;
	}
	if (n->kind != CY_SCALAR)
		return fail_node(env, n, e, KILN_E_INVALID, "rules:exists: expected a path or a list of paths, got %s",
				 cy_kind_name(n));
	if (expand_pattern(n->str, env->lookup, env->lookup_arg, pat, sizeof(pat)))
		return fail_node(env, n, e, KILN_E_LIMIT, "rules:exists: pattern longer than %d bytes",
				 CIRULES_MAX_PATTERN);
	if (!env->exists)
		return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: no repository to look in");
	rc = env->exists(env->exists_arg, pat, found, e);
	if (rc)
		return fail_node(env, n, e, rc, "rules:exists: %s", e ? e->msg : "failed");
	return KILN_OK;
}

enum kiln_rc cirules_match(const struct cirules_env *env, const struct cy_node *rule, bool *match,
			   struct kiln_err *e)
{
	const struct cy_node *n;
	enum kiln_rc rc;
	size_t i;

	*match = false;
	if (rule->kind != CY_MAP)
		return fail_node(env, rule, e, KILN_E_INVALID, "rules: each rule must be a mapping, got %s",
				 cy_kind_name(rule));
	n = cy_get(rule, "if");
	if (n && n->kind != CY_NULL) {
		char msg[sizeof(e->msg)];
		bool ok;

		if (n->kind != CY_SCALAR)
			return fail_node(env, n, e, KILN_E_INVALID, "rules:if: expected a string, got %s",
					 cy_kind_name(n));
		rc = cirules_eval(n->str, env->lookup, env->lookup_arg, &ok, e);
		if (rc) {
			snprintf(msg, sizeof(msg), "%s", e ? e->msg : "invalid");
			return fail_node(env, n, e, rc, "rules:if: %s: %s", n->str, msg);
		}
		if (!ok)
			return KILN_OK;
	}
	n = cy_get(rule, "changes");
	if (n)
		warn_node(env, n, "%s", "rules:changes needs a diff kiln does not have (taken as true)");
	n = cy_get(rule, "exists");
	if (n) {
		const struct cy_node *paths = n;
		bool found = false;

		if (n->kind == CY_MAP) {
			paths = cy_get(n, "paths");
			for (i = 0; i < n->n; i++)
				if (strcmp(n->pairs[i].key, "paths"))
					warn_node(env, n->pairs[i].knode,
						  "rules:exists:%s is not supported by kiln (ignored; the paths are "
						  "looked up in this repository)", n->pairs[i].key);
			if (!paths)
				return fail_node(env, n, e, KILN_E_INVALID, "%s", "rules:exists: missing key 'paths'");
		}
		if ((rc = exists_patterns(env, paths, 0, &found, e)))
			return rc;
		if (!found)
			return KILN_OK;
	}
	*match = true;
	return KILN_OK;
}
