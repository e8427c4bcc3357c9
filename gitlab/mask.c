#include "gitlab/mask.h"

#include <stdlib.h>
#include <string.h>

#include "lib/vec.h"

static bool token_char(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
	       c == '=' || c == '-';
}

/* A URL parameter's value runs to the next '?', '&', blank or control
 * character, as gitlab-runner's urlsanitizer ends it ('#', quotes and the
 * like are part of it). */
static bool param_char(unsigned char c)
{
	return c > ' ' && c != 0x7f && c != '&' && c != '?';
}

/* gitlab-runner's default token prefixes (FF_MASK_ALL_DEFAULT_TOKENS, on
 * by default): every token GitLab issues. */
static const char *const default_prefixes[] = {
	"glpat-", "gloas-", "gldt-",   "glrt-",    "glrtr-",    "glcbt-",           "glptt-",
	"glft-",  "glimt-", "glagent-", "glsoat-", "glffct-", "GR1348941", "_gitlab_session=",
};

/* URL parameters whose values gitlab-runner hides (after '?' or '&', any
 * case): "?private_token=abc" gives "?private_token=[MASKED]". */
static const char *const url_params[] = {
	"private_token=",    "authenticity_token=", "rss_token=",
	"x-amz-signature=",  "x-amz-credential=",   "x-amz-security-token=",
};

static bool blank(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* value without surrounding blanks: *len bytes from the returned pointer. */
static const char *trim(const char *value, size_t *len)
{
	size_t n;

	while (*value && blank(*value))
		value++;
	n = strlen(value);
	while (n > 0 && blank(value[n - 1]))
		n--;
	*len = n;
	return value;
}

void mask_init(struct mask *m, mask_out_fn out, void *arg)
{
	memset(m, 0, sizeof(*m));
	m->out = out;
	m->arg = arg;
	m->first['?'] = m->first['&'] = 1;
	for (size_t i = 0; i < sizeof(default_prefixes) / sizeof(default_prefixes[0]); i++)
		mask_add_prefix(m, default_prefixes[i], NULL);
	m->n_default_prefixes = m->n_prefixes;
}

void mask_free(struct mask *m)
{
	size_t i;

	for (i = 0; i < m->n_secrets; i++)
		free(m->secrets[i]);
	for (i = 0; i < m->n_prefixes; i++)
		free(m->prefixes[i]);
	free(m->secrets);
	free(m->lens);
	free(m->hold);
	memset(m, 0, sizeof(*m));
}

enum kiln_rc mask_add_secret(struct mask *m, const char *value, struct kiln_err *e)
{
	size_t n, i, pos;
	const char *v = trim(value, &n);
	char *copy;

	if (n == 0)
		return KILN_OK;
	if (n > MASK_MAX_SECRET_BYTES)
		return kiln_fail(e, KILN_E_LIMIT, "masking: a value of %zu bytes is over the %u bytes kiln can mask", n,
				 MASK_MAX_SECRET_BYTES);
	for (i = 0; i < m->n_secrets; i++)
		if (m->lens[i] == n && !memcmp(m->secrets[i], v, n))
			return KILN_OK;
	if (m->n_secrets >= MASK_MAX_SECRETS)
		return kiln_fail(e, KILN_E_LIMIT, "masking: more than %d masked values", MASK_MAX_SECRETS);
	if (VEC_GROW(m->secrets, m->secrets_cap, m->n_secrets, 1, MASK_MAX_SECRETS) ||
	    VEC_GROW(m->lens, m->lens_cap, m->n_secrets, 1, MASK_MAX_SECRETS))
		return kiln_fail(e, KILN_E_NOMEM, "masking: out of memory");
	if (!(copy = malloc(n + 1)))
		return kiln_fail(e, KILN_E_NOMEM, "masking: out of memory");
	memcpy(copy, v, n);
	copy[n] = '\0';
	/* Longest first: a longer secret wins over one it contains. */
	for (pos = 0; pos < m->n_secrets && m->lens[pos] >= n; pos++)
		;
	memmove(m->secrets + pos + 1, m->secrets + pos, (m->n_secrets - pos) * sizeof(*m->secrets));
	memmove(m->lens + pos + 1, m->lens + pos, (m->n_secrets - pos) * sizeof(*m->lens));
	m->secrets[pos] = copy;
	m->lens[pos] = n;
	m->n_secrets++;
	m->first[(unsigned char)copy[0]] = 1;
	return KILN_OK;
}

enum kiln_rc mask_add_prefix(struct mask *m, const char *prefix, struct kiln_err *e)
{
	size_t n, i;
	const char *p = trim(prefix, &n);

	if (n == 0)
		return KILN_OK;
	for (i = 0; i < m->n_prefixes; i++)
		if (strlen(m->prefixes[i]) == n && !memcmp(m->prefixes[i], p, n))
			return KILN_OK;
	if (m->n_prefixes >= MASK_MAX_PREFIXES ||
	    (m->n_default_prefixes && m->n_prefixes - m->n_default_prefixes >= MASK_MAX_JOB_PREFIXES))
		return KILN_OK;
	if (!(m->prefixes[m->n_prefixes] = strndup(p, n)))
		return kiln_fail(e, KILN_E_NOMEM, "masking: out of memory");
	m->n_prefixes++;
	m->first[(unsigned char)p[0]] = 1;
	return KILN_OK;
}

static void emit(struct mask *m, const char *p, size_t n)
{
	if (n)
		m->out(m->arg, p, n);
}

/* 1 when d[i..] is '?' or '&' and a hidden URL parameter's name with its
 * '=' and the first character of a value: *adv the bytes up to the value.
 * 0 when not, -1 when more bytes are needed to tell (never at_end: the
 * stream ended, no more will come). */
static int param_at(const char *d, size_t i, size_t len, bool at_end, size_t *adv)
{
	size_t avail = len - i - 1, k, j;

	if (d[i] != '?' && d[i] != '&')
		return 0;
	for (k = 0; k < sizeof(url_params) / sizeof(url_params[0]); k++) {
		const char *p = url_params[k];
		size_t pl = strlen(p);

		for (j = 0; j < pl && j < avail; j++) {
			char c = d[i + 1 + j];

			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			if (c != p[j])
				break;
		}
		if (j < pl && j < avail)
			continue; /* differs */
		if (avail <= pl) {
			if (at_end)
				continue;
			return -1; /* the name, or the value's first character, is still to come */
		}
		if (param_char((unsigned char)d[i + 1 + pl])) {
			*adv = 1 + pl;
			return 1;
		}
	}
	return 0;
}

/* What stands at d[i] (len bytes in all): 1 and *adv when a secret, a
 * prefixed token or a hidden URL parameter starts there, 0 when nothing
 * does, -1 when more bytes are needed to tell; at_end, the stream ended, so
 * what could only match with more bytes does not, and a shorter secret
 * may. *prefix_len is what is kept before "[MASKED]" (a token's prefix, a
 * parameter's "?name="), *run the kind of run then dropped. */
static int match_at(const struct mask *m, const char *d, size_t i, size_t len, bool at_end, size_t *adv,
		    size_t *prefix_len, int *run)
{
	size_t avail = len - i, k;
	int r;

	if (!m->first[(unsigned char)d[i]])
		return 0;
	if ((r = param_at(d, i, len, at_end, adv)) != 0) {
		*prefix_len = *adv;
		*run = MASK_RUN_PARAM;
		return r;
	}
	*run = MASK_RUN_TOKEN;
	for (k = 0; k < m->n_secrets; k++) {
		size_t sl = m->lens[k];

		if (m->secrets[k][0] != d[i])
			continue;
		if (avail >= sl) {
			if (!memcmp(d + i, m->secrets[k], sl)) {
				*adv = sl;
				*prefix_len = 0;
				return 1;
			}
		} else if (!at_end && !memcmp(d + i, m->secrets[k], avail)) {
			return -1; /* a longer secret may still match */
		}
	}
	for (k = 0; k < m->n_prefixes; k++) {
		size_t pl = strlen(m->prefixes[k]);

		if (m->prefixes[k][0] != d[i])
			continue;
		if (avail > pl) {
			if (!memcmp(d + i, m->prefixes[k], pl) && token_char((unsigned char)d[i + pl])) {
				*adv = pl;
				*prefix_len = pl;
				return 1;
			}
		} else if (!at_end && !memcmp(d + i, m->prefixes[k], avail)) {
			return -1; /* the prefix, or the character after it, is still to come */
		}
	}
	return 0;
}

/* Mask the hold_len bytes held, emitting all that is decided and keeping
 * the rest (nothing at_end, when no more bytes will come). */
static void scan(struct mask *m, bool at_end)
{
	const char *d = m->hold;
	size_t len = m->hold_len, i = 0, from = 0;

	if (len == 0)
		return;  /* hold may not be allocated yet */
	while (i < len) {
		size_t adv = 0, pl = 0;
		int r, run = MASK_RUN_NONE;

		if (m->in_run) {
			if (m->in_run == MASK_RUN_TOKEN ? token_char((unsigned char)d[i]) : param_char((unsigned char)d[i])) {
				from = ++i;
				continue;
			}
			m->in_run = MASK_RUN_NONE;
		}
		r = match_at(m, d, i, len, at_end, &adv, &pl, &run);
		if (r < 0)
			break;
		if (r == 0) {
			i++;
			continue;
		}
		emit(m, d + from, i - from + pl);
		emit(m, MASK_TEXT, sizeof(MASK_TEXT) - 1);
		i += adv;
		from = i;
		m->in_run = pl > 0 ? run : MASK_RUN_NONE;
	}
	emit(m, d + from, i - from);
	/* Keep what could not be decided yet. */
	memmove(m->hold, d + i, len - i);
	m->hold_len = len - i;
}

enum kiln_rc mask_write(struct mask *m, const void *buf, size_t n)
{
	enum kiln_rc rc;

	if (n == 0)
		return KILN_OK;
	if ((rc = VEC_GROW(m->hold, m->hold_cap, m->hold_len, n, MASK_MAX_HOLD)))
		return rc;
	memcpy(m->hold + m->hold_len, buf, n);
	m->hold_len += n;
	scan(m, false);
/* A long stream must not keep a large buffer it no longer needs. */
	if (m->hold_cap > (1u << 20) && m->hold_len < m->hold_cap / 4) {
		char *p = realloc(m->hold, m->hold_len > 4096 ? m->hold_len : 4096);
		if (p) {
			m->hold = p;
			m->hold_cap = m->hold_len > 4096 ? m->hold_len : 4096;
		}
	}
	return KILN_OK;
}

void mask_flush(struct mask *m)
{
	/* What was held may still hold a whole secret: one that is also the
	 * start of a longer one, which can no longer come. */
	scan(m, true);
	m->hold_len = 0;
	m->in_run = MASK_RUN_NONE;
}
