#include "workspace/gittls.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <git2.h>
#include <git2/sys/stream.h>

#include "lib/tls.h"
#include "workspace/gitstream.h"

struct gittls {
	git_stream parent;
	git_stream *io;           /* the TCP stream, or a proxy's tunnel */
	bool owned;               /* io is ours to connect, close and free */
	char *host;
	SSL *ssl;
	git_cert_x509 cert;       /* the peer's certificate, DER, for libgit2's check callback */
};

static pthread_mutex_t ctx_lock = PTHREAD_MUTEX_INITIALIZER;
static SSL_CTX *shared_ctx;  /* under ctx_lock; each SSL holds its own reference */

/* Client certificates by host, under ctx_lock. */
static struct client_cert {
	char host[256];
	char cert[PATH_MAX], key[PATH_MAX];
} clients[GITTLS_MAX_CLIENTS];
static size_t n_clients;

static SSL_CTX *ctx_new(const char *ca_file, struct kiln_err *e)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());

	if (!ctx) {
		kiln_fail(e, KILN_E_NOMEM, "TLS: cannot make a context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
	if (kiln_tls_trust(SSL_CTX_get_cert_store(ctx), ca_file, e)) {
		SSL_CTX_free(ctx);
		return NULL;
	}
	return ctx;
}

enum kiln_rc gittls_trust(const char *ca_file, struct kiln_err *e)
{
	SSL_CTX *ctx = ctx_new(ca_file, e), *old;

	if (!ctx)
		return e->rc;
	pthread_mutex_lock(&ctx_lock);
	old = shared_ctx;
	shared_ctx = ctx;
	pthread_mutex_unlock(&ctx_lock);
	SSL_CTX_free(old);
	return KILN_OK;
}

enum kiln_rc gittls_client_cert(const char *host, const char *cert_file, const char *key_file,
				struct kiln_err *e)
{
	enum kiln_rc rc = KILN_OK;
	struct client_cert *c = NULL;
	size_t i;

	if (strlen(host) >= sizeof(c->host) || strlen(cert_file) >= sizeof(c->cert) ||
	    strlen(key_file) >= sizeof(c->key))
		return kiln_fail(e, KILN_E_LIMIT, "git TLS client certificate for %.64s: name too long", host);
	if (access(cert_file, R_OK) < 0)
		return kiln_fail_errno(e, "tls_cert_file %s", cert_file);
	if (access(key_file, R_OK) < 0)
		return kiln_fail_errno(e, "tls_key_file %s", key_file);
	pthread_mutex_lock(&ctx_lock);
	for (i = 0; i < n_clients && !c; i++)
		if (!strcasecmp(clients[i].host, host))
			c = &clients[i];
	if (!c && n_clients < GITTLS_MAX_CLIENTS)
		c = &clients[n_clients++];
	if (c) {
		snprintf(c->host, sizeof(c->host), "%s", host);
		snprintf(c->cert, sizeof(c->cert), "%s", cert_file);
		snprintf(c->key, sizeof(c->key), "%s", key_file);
	} else {
		rc = kiln_fail(e, KILN_E_LIMIT, "git TLS client certificates: more than %d hosts", GITTLS_MAX_CLIENTS);
	}
	pthread_mutex_unlock(&ctx_lock);
	return rc;
}

void gittls_client_certs_clear(void)
{
	pthread_mutex_lock(&ctx_lock);
	n_clients = 0;
	pthread_mutex_unlock(&ctx_lock);
}

/* ssl presents host's client certificate, if any. Under ctx_lock. -1 with
 * libgit2's error set when it cannot be loaded. */
static int use_client_cert(SSL *ssl, const char *host)
{
	size_t i;

	for (i = 0; i < n_clients; i++) {
		if (strcasecmp(clients[i].host, host))
			continue;
		if (SSL_use_certificate_chain_file(ssl, clients[i].cert) != 1 ||
		    SSL_use_PrivateKey_file(ssl, clients[i].key, SSL_FILETYPE_PEM) != 1) {
			ERR_clear_error();
			git_error_set(GIT_ERROR_SSL, "TLS to %s: cannot use the client certificate %s with %s", host,
				      clients[i].cert, clients[i].key);
			return -1;
		}
		return 0;
	}
	return 0;
}

/* --- a BIO on the stream underneath ---------------------------------------- */

static int bio_write(BIO *b, const char *buf, int len)
{
	git_stream *io = BIO_get_data(b);
	ssize_t n = io->write(io, buf, (size_t)len, 0);

	BIO_clear_retry_flags(b);
	return n < 0 ? -1 : (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
	git_stream *io = BIO_get_data(b);
	ssize_t n = io->read(io, buf, (size_t)len);

	BIO_clear_retry_flags(b);
	return n < 0 ? -1 : (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	BIO_set_data(b, NULL);
	return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kiln git stream");

	if (m && BIO_meth_set_write(m, bio_write) && BIO_meth_set_read(m, bio_read) &&
	    BIO_meth_set_ctrl(m, bio_ctrl) && BIO_meth_set_create(m, bio_create))
		bio_method = m;
	else if (m)
		BIO_meth_free(m);
}

/* --- the stream -------------------------------------------------------------- */

static void ssl_error(const char *what, const char *host)
{
	char buf[256];
	unsigned long err = ERR_get_error();

	if (err)
		ERR_error_string_n(err, buf, sizeof(buf));
	ERR_clear_error();
	git_error_set(GIT_ERROR_SSL, "TLS %s %s: %s", what, host, err ? buf : "connection closed");
}

static int gt_connect(git_stream *stream)
{
	struct gittls *st = (struct gittls *)stream;
	struct kiln_err e = { 0 };
	SSL_CTX *ctx;
	X509 *peer;
	BIO *bio;
	bool named;
	long v;
	int len;

	if (st->owned && st->io->connect(st->io) < 0)
		return -1;
	pthread_once(&bio_once, bio_method_init);
	pthread_mutex_lock(&ctx_lock);
	if (!shared_ctx)
		shared_ctx = ctx_new(NULL, &e);
	ctx = shared_ctx;
	st->ssl = ctx ? SSL_new(ctx) : NULL;
	if (st->ssl && use_client_cert(st->ssl, st->host) < 0) {
		pthread_mutex_unlock(&ctx_lock);
		return -1;
	}
	pthread_mutex_unlock(&ctx_lock);
	if (!st->ssl || !bio_method || !(bio = BIO_new(bio_method))) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: %s", st->host, e.msg[0] ? e.msg : "out of memory");
		return -1;
	}
	BIO_set_data(bio, st->io);
	SSL_set_bio(st->ssl, bio, bio);
	/* Verified after the handshake so that libgit2 can hand a refusal to
	 * the caller's certificate_check callback, as its own streams do. */
	SSL_set_verify(st->ssl, SSL_VERIFY_NONE, NULL);
	if (kiln_tls_sni(st->ssl, st->host) < 0) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: not a host name", st->host);
		return -1;
	}
	if (SSL_connect(st->ssl) != 1) {
		ssl_error("handshake with", st->host);
		return -1;
	}
	peer = SSL_get1_peer_certificate(st->ssl);
	if (!peer) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: the server sent no certificate", st->host);
		return GIT_ECERTIFICATE;
	}
	len = i2d_X509(peer, NULL);
	if (len > 0 && (st->cert.data = malloc((size_t)len))) {
		unsigned char *p = st->cert.data;

		st->cert.len = (size_t)i2d_X509(peer, &p);
		st->cert.parent.cert_type = GIT_CERT_X509;
	}
	v = SSL_get_verify_result(st->ssl);
	named = kiln_tls_name_ok(peer, st->host);
	X509_free(peer);
	if (v != X509_V_OK) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: certificate refused: %s", st->host,
			      X509_verify_cert_error_string(v));
		return GIT_ECERTIFICATE;
	}
	if (!named) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: certificate refused: it does not name %s", st->host,
			      st->host);
		return GIT_ECERTIFICATE;
	}
	return 0;
}

static int gt_certificate(git_cert **out, git_stream *stream)
{
	struct gittls *st = (struct gittls *)stream;

	if (!st->cert.data) {
		git_error_set(GIT_ERROR_SSL, "TLS to %s: no certificate", st->host);
		return -1;
	}
	*out = &st->cert.parent;
	return 0;
}

static ssize_t gt_read(git_stream *stream, void *data, size_t len)
{
	struct gittls *st = (struct gittls *)stream;
	size_t got = 0;

	if (SSL_read_ex(st->ssl, data, len, &got) != 1) {
		if (SSL_get_error(st->ssl, 0) == SSL_ERROR_ZERO_RETURN)
			return 0;
		if (!git_error_last() || git_error_last()->klass != GIT_ERROR_NET)
			ssl_error("read from", st->host);
		return -1;
	}
	return (ssize_t)got;
}

static ssize_t gt_write(git_stream *stream, const char *data, size_t len, int flags)
{
	struct gittls *st = (struct gittls *)stream;
	size_t put = 0;

	(void)flags;
	if (SSL_write_ex(st->ssl, data, len, &put) != 1) {
		if (!git_error_last() || git_error_last()->klass != GIT_ERROR_NET)
			ssl_error("write to", st->host);
		return -1;
	}
	return (ssize_t)put;
}

static int gt_close(git_stream *stream)
{
	struct gittls *st = (struct gittls *)stream;

	if (st->ssl)
		SSL_shutdown(st->ssl);
	ERR_clear_error();
	return st->owned ? st->io->close(st->io) : 0;
}

static void gt_free(git_stream *stream)
{
	struct gittls *st = (struct gittls *)stream;

	if (!st)
		return;
	SSL_free(st->ssl);
	if (st->owned && st->io)
		st->io->free(st->io);
	free(st->cert.data);
	free(st->host);
	free(st);
}

static int gt_wrap_owned(git_stream **out, git_stream *in, const char *host, bool owned)
{
	struct gittls *st = calloc(1, sizeof(*st));

	*out = NULL;
	if (!st || !(st->host = strdup(host))) {
		free(st);
		git_error_set_oom();
		return -1;
	}
	st->io = in;
	st->owned = owned;
	st->parent.version = GIT_STREAM_VERSION;
	st->parent.encrypted = 1;
	st->parent.connect = gt_connect;
	st->parent.certificate = gt_certificate;
	st->parent.read = gt_read;
	st->parent.write = gt_write;
	st->parent.close = gt_close;
	st->parent.free = gt_free;
	*out = &st->parent;
	return 0;
}

static int gt_wrap(git_stream **out, git_stream *in, const char *host)
{
	return gt_wrap_owned(out, in, host, false);
}

static int gt_init(git_stream **out, const char *host, const char *port)
{
	git_stream *io;

	*out = NULL;
	if (gitstream_new(&io, host, port) < 0)
		return -1;
	if (gt_wrap_owned(out, io, host, true) < 0) {
		io->free(io);
		return -1;
	}
	return 0;
}

int gittls_register(void)
{
	static git_stream_registration reg = { GIT_STREAM_VERSION, gt_init, gt_wrap };

	return git_stream_register(GIT_STREAM_TLS, &reg);
}
