#!/bin/sh
# Generate ./configure and the Makefile templates.
set -e
cd "$(dirname "$0")"
command -v autoreconf >/dev/null || {
	echo "autogen.sh: autoreconf not found: install the Debian packages autoconf automake pkg-config" >&2
	exit 1
}
autoreconf --install --force
