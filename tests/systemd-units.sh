#!/bin/sh
# systemd/*.in: each unit, filled in as make fills it (with this build's
# kiln, which systemd-analyze wants to find), passes systemd-analyze verify
# without a word. Skipped (77) without systemd-analyze.
set -u
src=${top_srcdir:-.}
b=${top_builddir:-.}
command -v systemd-analyze >/dev/null 2>&1 || { echo "SKIP: systemd-analyze not found"; exit 77; }
d=$(mktemp -d "${TMPDIR:-/tmp}/kiln-units.XXXXXX") || exit 99
trap 'rm -rf "$d"' EXIT
kiln=$(cd "$b" && pwd)/kiln
fill() {
	sed -e "s|@KILN@|$kiln|g" -e 's|@CONFIG@|/etc/kiln/config.yml|g' -e 's|@CONFIG_DIR@|/etc/kiln|g' \
	    -e 's|@WORKDIR@|/var/lib/kiln|g' -e '/@USER@/d' -e 's|@STOP_TIMEOUT@|90s|g' "$1"
}
fill "$src/systemd/kiln.service.in" >"$d/kiln.service"
fill "$src/systemd/kiln-images.service.in" >"$d/kiln-images.service"
cp "$src/systemd/kiln-images.timer" "$d/"
fail=0
if grep -n '@[A-Z_]*@' "$d"/*; then echo "FAIL: a placeholder is left"; fail=1; fi
for u in kiln.service kiln-images.service kiln-images.timer; do
	# verify exits 0 on unknown keys: any word about the unit is a failure.
	out=$(cd "$d" && systemd-analyze verify "$u" 2>&1)
	st=$?
	if [ $st -ne 0 ] || printf '%s' "$out" | grep -q "$u"; then
		echo "FAIL: systemd-analyze verify $u (exit $st):"; printf '%s\n' "$out"; fail=1
	else
		echo "ok: $u"
	fi
done
# The units make generates from the same templates.
for u in kiln.service kiln-images.service; do
	[ -f "$b/systemd/$u" ] || continue
	grep -q '^Type=' "$b/systemd/$u" || { echo "FAIL: $b/systemd/$u has no Type="; fail=1; }
done
exit $fail
