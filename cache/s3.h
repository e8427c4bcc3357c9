/* A small S3 client for the job cache: GET an object into a file, PUT a
 * file as an object (multipart above a size), signed with AWS Signature
 * V4 by libcurl (CURLOPT_AWS_SIGV4). Path-style URLs only
 * (<scheme>://<server>/<bucket>/<key>): what every S3-compatible server
 * (MinIO, Ceph RGW, s3rver) and AWS itself still accept. Archives are
 * streamed from and to files, never held in memory. */
#ifndef KILN_CACHE_S3_H
#define KILN_CACHE_S3_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/result.h"

#define S3_PART_SIZE (64L << 20)   /* multipart above this; each part this big */
#define S3_MAX_PARTS 10000         /* S3's limit; larger files get larger parts */
#define S3_REPLY_MAX 16384
#define S3_ETAG_MAX 256         /* bytes of an XML reply or error body kept */

struct s3_client {
	const char *server;        /* host[:port], as gitlab-runner's ServerAddress */
	const char *bucket;
	const char *region;        /* bucket_location; "us-east-1" when NULL */
	const char *access_key;
	const char *secret_key;
	const char *session_token; /* x-amz-security-token (iam credentials), or NULL */
	bool insecure;             /* http instead of https */
	long part_size;            /* 0: S3_PART_SIZE */
	long timeout_s;            /* whole transfer; 0: 3600 */
	long connect_timeout_s;    /* 0: 10 */
};

/* Why a request failed, for callers that treat a store that is down
 * differently from one that refuses them. */
enum s3_fail {
	S3_OK,
	S3_MISSING,   /* 404: no such object */
	S3_DOWN,      /* no connection, a timeout, a 5xx */
	S3_REFUSED,   /* 4xx other than 404: credentials, bucket, permissions */
	S3_LOCAL,     /* a local file could not be read or written */
	S3_UNCHANGED, /* 304: the object still has the ETag the caller has */
};

/* GET key into the file dst (created or truncated; removed on failure)
 * and its ETag into etag (S3_ETAG_MAX bytes, may be NULL). With
 * if_none_match (an ETag, or NULL) an object that still has it is not
 * sent: KILN_OK, dst removed, *why S3_UNCHANGED. KILN_E_NOTFOUND when the
 * object does not exist. *why (may be NULL) says which kind of failure it
 * was. */
enum kiln_rc s3_get(const struct s3_client *c, const char *key, const char *dst, const char *if_none_match,
		    char *etag, enum s3_fail *why, struct kiln_err *e);

/* PUT the file src as key: one request up to part_size, else a multipart
 * upload (aborted when a part fails, so no parts are left behind). The
 * object's ETag into etag (S3_ETAG_MAX bytes, may be NULL; "" when the
 * server gave none). */
enum kiln_rc s3_put(const struct s3_client *c, const char *key, const char *src, char *etag, enum s3_fail *why,
		    struct kiln_err *e);

/* HEAD the bucket (S3's HeadBucket, path style): whether it exists and
 * the credentials may use it. Errors as s3_get's. */
enum kiln_rc s3_head_bucket(const struct s3_client *c, enum s3_fail *why, struct kiln_err *e);

/* The text of the first <tag>...</tag> in xml[0..len) into out (at most
 * size - 1 bytes, NUL-terminated), with the five XML entities decoded.
 * Returns false when there is none or it does not fit. Never reads past
 * len: replies come from the network. */
bool s3_xml_value(const char *xml, size_t len, const char *tag, char *out, size_t size);

/* Temporary credentials of the EC2 instance's IAM role, from the instance
 * metadata service (IMDSv2: a session token first). endpoint: NULL for
 * http://169.254.169.254. Each out buffer is 256 bytes, token 4096. */
enum kiln_rc s3_imds_credentials(const char *endpoint, char *access_key, char *secret_key, char *token,
				 struct kiln_err *e);

#endif
