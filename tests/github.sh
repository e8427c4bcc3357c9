#!/bin/bash
# The GitHub API side (github/) against tests/fake-github.py: real HTTPS
# with a CA made by openssl here, App JWTs checked with a test RSA key,
# ETag/304, pagination and the 409/422/403/404/429/5xx paths. The tests
# themselves are tests/unit/check_github's suite "github-fake".
: "${top_srcdir:?}" "${top_builddir:?}"
skip() { echo "SKIP: $*"; exit 77; }
command -v python3 >/dev/null || skip "python3 is not installed"
command -v openssl >/dev/null || skip "openssl is not installed"
bin=$top_builddir/tests/unit/check_github
[ -x "$bin" ] || { echo "FAIL: no $bin"; exit 1; }

work=$(mktemp -d /tmp/kiln-github.XXXXXX)
fpid=
cleanup() {
	[ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/fake"
python3 "$top_srcdir/tests/fake-github.py" --dir "$work/fake" >"$work/fake.log" 2>&1 &
fpid=$!
for _ in $(seq 200); do [ -f "$work/fake/url" ] && break; sleep 0.1; done
[ -f "$work/fake/url" ] || { cat "$work/fake.log"; echo "FAIL: the fake GitHub did not start"; exit 1; }

CK_RUN_SUITE=github-fake GH_FAKE_DIR=$work/fake "$bin"
rc=$?
[ $rc -eq 0 ] || { echo "--- fake.log"; tail -50 "$work/fake.log"; }
exit $rc
