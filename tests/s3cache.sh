#!/bin/sh
# The S3 cache tests that need servers (tests/unit/check_s3.c): start
# s3rver and tests/s3sigv4.py (botocore) through tests/s3server.sh, run
# check_s3 against them, stop them. Exit 77 (skip), with the reason, when
# either cannot start: a missing server is a skip, never a pass.
set -u
top=${top_srcdir:-.}
b=${top_builddir:-.}
tmp=$(mktemp -d)
trap '"$top/tests/s3server.sh" stop "$tmp/s3" 2>/dev/null; "$top/tests/s3server.sh" stop "$tmp/sig" 2>/dev/null; rm -rf "$tmp"' EXIT
s3=$("$top/tests/s3server.sh" start "$tmp/s3") || { echo "SKIP: the S3 server (s3rver) cannot start: see above"; exit 77; }
sig=$("$top/tests/s3server.sh" verifier "$tmp/sig") ||
	{ echo "SKIP: the SigV4 verifier (python3-botocore) cannot start: see above"; exit 77; }
KILN_TEST_S3=$s3 KILN_TEST_S3_DIR=$tmp/s3 KILN_TEST_SIGV4=$sig "$b/tests/unit/check_s3"
