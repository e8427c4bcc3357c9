#!/bin/sh
# Create the demo repository the example payloads clone, at DEST (default
# /var/lib/kiln/examples/demo.git). Author, committer and dates are fixed,
# so the commit ids are the same on every machine and the payloads in this
# folder can name them.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dest=${1:-/var/lib/kiln/examples/demo.git}
export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@example.invalid GIT_COMMITTER_NAME=kiln \
	GIT_COMMITTER_EMAIL=kiln@example.invalid GIT_AUTHOR_DATE='2026-01-01T00:00:00Z' \
	GIT_COMMITTER_DATE='2026-01-01T00:00:00Z' GIT_CONFIG_NOSYSTEM=1 HOME=/nonexistent
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git init -q -b main "$work/src"
cp "$here/demo-repo/README.md" "$here/demo-repo/build.sh" "$work/src/"
chmod 0755 "$work/src/build.sh"
git -C "$work/src" add README.md build.sh
git -C "$work/src" commit -q -m "demo: first commit"
git -C "$work/src" tag v1.0
echo "second line" >> "$work/src/README.md"
git -C "$work/src" commit -q -am "demo: second commit"
rm -rf "$dest.tmp"
mkdir -p "$(dirname "$dest")"
git clone -q --bare "$work/src" "$dest.tmp"
rm -rf "$dest"
mv "$dest.tmp" "$dest"
git -C "$dest" rev-parse HEAD
