#!/bin/sh
# sandbox-smoke.sh: run tests/kvm-smoke inside tests/kvm-sandbox to check
# that the sandbox gives tests a working /dev/kvm.  Automake test (run with
# $SHELL, so plain POSIX sh); exit 77 skips when the sandbox image, qemu or
# the kvm-smoke binary is missing.
set -eu

: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"

images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}/sandbox
smoke=$top_builddir/tests/kvm-smoke

skip() {
	echo "SKIP: $*"
	exit 77
}
if [ ! -f "$images/vmlinuz" ] || [ ! -f "$images/initrd.img" ]; then
	skip "no sandbox image in $images (build it: kiln images build sandbox)"
fi
command -v "${KILN_QEMU:-qemu-system-x86_64}" >/dev/null 2>&1 ||
	skip "${KILN_QEMU:-qemu-system-x86_64} not found"
[ -x "$smoke" ] || skip "$smoke is not built"

log=$(mktemp) || { echo "FAIL: cannot create a temporary file"; exit 1; }
trap 'rm -f "$log"' EXIT
rc=0
"$top_srcdir/tests/kvm-sandbox" --timeout 450 --tries 4 -- "$smoke" >"$log" 2>&1 || rc=$?
cat "$log"
case $rc in
0) ;;
77)
	# kvm-smoke skips without /dev/kvm: the sandbox failed to provide it.
	grep -q '^kvm-smoke: SKIP' "$log" && { echo "FAIL: no /dev/kvm inside the sandbox"; exit 1; }
	skip "kvm-sandbox could not run (see above)"
	;;
124) echo "FAIL: the sandbox timed out or stalled four times"; exit 1 ;;
*) echo "FAIL: kvm-sandbox -- kvm-smoke exited with $rc"; exit 1 ;;
esac
grep -q '^kvm-smoke: OK' "$log" || { echo "FAIL: no 'kvm-smoke: OK' in the output"; exit 1; }
echo "PASS: kvm-smoke passed inside the sandbox"
