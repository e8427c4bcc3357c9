#!/bin/sh
# Replay every fuzz target's seeds (tests/fuzz/corpus/<target>/) and every
# input that once crashed it (tests/fuzz/regress/<target>/) through the
# target built with the normal compiler: a fixed bug that comes back, or a
# seed that no longer passes a target's checks, fails here.
: "${top_srcdir:?}" "${top_builddir:?}"
fail=0
n=0
for dir in "$top_srcdir"/tests/fuzz/corpus/*/; do
	dir=${dir%/}
	t=$(basename "$dir")
	bin=$top_builddir/tests/fuzz/replay-$t
	if [ ! -x "$bin" ]; then
		echo "FAIL: $t: no $bin to replay its inputs with"
		fail=1
		continue
	fi
	set -- "$dir"
	[ -d "$top_srcdir/tests/fuzz/regress/$t" ] && set -- "$@" "$top_srcdir/tests/fuzz/regress/$t"
	if "$bin" "$@"; then
		echo "ok: $t"
	else
		echo "FAIL: $t (replay: $bin $*)"
		fail=1
	fi
	n=$((n + 1))
done
[ $n -gt 0 ] || { echo "FAIL: no fuzz corpus under $top_srcdir/tests/fuzz/corpus"; exit 1; }
exit $fail
