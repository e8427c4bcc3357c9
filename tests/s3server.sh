#!/bin/sh
# An S3-compatible server for the cache tests and bench/cache.sh: s3rver
# (npm), kept in $KILN_S3RVER_HOME (default /var/cache/kiln-test/s3rver)
# so that it is installed once, by `tools/dev deps` or by hand.
#
#   tests/s3server.sh install     npm install s3rver there (needs the registry)
#   tests/s3server.sh start DIR   serve DIR/data with bucket kiln-cache on a free
#                                 port of 127.0.0.1; prints host:port; access key
#                                 and secret are S3RVER/S3RVER
#   tests/s3server.sh verifier DIR  start tests/s3sigv4.py instead: a stub that
#                                 checks every V4 signature with botocore
#                                 (python3-botocore); key AK, secret SECRET
#   tests/s3server.sh stop DIR    stop the server started on DIR
#
# Exit status 77 (automake's skip) when the server cannot be had, with the
# reason on stderr.
#
# Why s3rver: Debian's radosgw needs a running Ceph cluster (monitors and
# OSDs) to start; python3-moto is not packaged for Debian 12 and pip is not
# available to the tests; MinIO is not in Debian. s3rver is one `npm
# install` on Debian's nodejs and starts in a second. It checks the access
# key but not the V4 signature itself.
set -eu

HOME_DIR=${KILN_S3RVER_HOME:-/var/cache/kiln-test/s3rver}
VERSION=3.7.1
BIN=$HOME_DIR/node_modules/s3rver/bin/s3rver.js

skip() { echo "s3server: $*" >&2; exit 77; }

case ${1:-} in
install)
	[ -f "$BIN" ] && exit 0
	command -v npm >/dev/null || skip "npm is not installed"
	mkdir -p "$HOME_DIR"
	cd "$HOME_DIR"
	npm install --no-audit --no-fund --silent "s3rver@$VERSION" >/dev/null || skip "npm install s3rver failed"
	;;
start)
	dir=${2:?usage: s3server.sh start DIR}
	command -v node >/dev/null || skip "node is not installed"
	[ -f "$BIN" ] || skip "s3rver is not installed in $HOME_DIR (tests/s3server.sh install; tools/dev deps does it)"
	mkdir -p "$dir/data"
	node "$BIN" -d "$dir/data" -a 127.0.0.1 -p 0 --configure-bucket kiln-cache >"$dir/log" 2>&1 &
	echo $! >"$dir/pid"
	i=0
	while [ $i -lt 100 ]; do
		addr=$(sed -n 's/.*listening on \(127\.0\.0\.1:[0-9]*\).*/\1/p' "$dir/log" | head -n1)
		if [ -n "$addr" ]; then
			echo "$addr"
			exit 0
		fi
		kill -0 "$(cat "$dir/pid")" 2>/dev/null || skip "s3rver exited: $(tail -n1 "$dir/log")"
		sleep 0.1
		i=$((i + 1))
	done
	kill "$(cat "$dir/pid")" 2>/dev/null || true
	skip "s3rver did not start within 10 s"
	;;
verifier)
	dir=${2:?usage: s3server.sh verifier DIR}
	python3 -c 'import botocore' 2>/dev/null || skip "python3-botocore is not installed"
	mkdir -p "$dir"
	python3 "$(dirname "$0")/s3sigv4.py" >"$dir/addr" 2>"$dir/log" &
	echo $! >"$dir/pid"
	i=0
	while [ $i -lt 100 ]; do
		if [ -s "$dir/addr" ]; then
			head -n1 "$dir/addr"
			exit 0
		fi
		kill -0 "$(cat "$dir/pid")" 2>/dev/null || skip "s3sigv4.py exited: $(tail -n1 "$dir/log")"
		sleep 0.1
		i=$((i + 1))
	done
	kill "$(cat "$dir/pid")" 2>/dev/null || true
	skip "s3sigv4.py did not start within 10 s"
	;;
stop)
	dir=${2:?usage: s3server.sh stop DIR}
	[ -f "$dir/pid" ] || exit 0
	kill "$(cat "$dir/pid")" 2>/dev/null || true
	rm -f "$dir/pid"
	;;
*)
	echo "usage: tests/s3server.sh install | start DIR | verifier DIR | stop DIR" >&2
	exit 2
	;;
esac
