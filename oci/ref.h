/* Image references as docker and containerd read them
 * (distribution/reference): [host[:port]/]path[:tag][@sha256:hex].
 *
 * The first path component is a registry host when it has a '.' or a ':',
 * is "localhost" or has upper case; otherwise the reference names Docker
 * Hub: domain "docker.io", API host "registry-1.docker.io", and a
 * one-component path gets "library/". No tag and no digest means "latest";
 * with both, the digest decides. */
#ifndef KILN_OCI_REF_H
#define KILN_OCI_REF_H

#include "lib/result.h"

#define OCI_REF_MAX 512

struct oci_ref {
	char domain[256];   /* as named: "docker.io", "ghcr.io", "127.0.0.1:5000" */
	char host[256];     /* where the API answers: "registry-1.docker.io" for docker.io */
	char path[256];     /* repository: "library/alpine" */
	char tag[129];      /* "" when only a digest was given */
	char digest[80];    /* "sha256:<64 hex>" or "" */
};

/* Parse s into r. A malformed reference is KILN_E_SYNTAX with one line
 * naming what is wrong in it (upper-case path, bad tag, digest that is not
 * sha256 with 64 lower-case hex digits, too long, empty component). */
enum kiln_rc oci_ref_parse(const char *s, struct oci_ref *r, struct kiln_err *e);

/* The canonical form: "docker.io/library/alpine:latest",
 * "host:5000/a/b@sha256:...". Returns buf. */
char *oci_ref_str(const struct oci_ref *r, char *buf, size_t size);

/* 1 when s is "sha256:" and 64 lower-case hex digits. */
int oci_digest_valid(const char *s);

#endif
