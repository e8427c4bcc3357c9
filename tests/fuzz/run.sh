#!/bin/sh
# run.sh BUILD_DIR SECONDS TARGET...: run each libFuzzer target for SECONDS
# over a scratch copy of its seeds and past crashes (the source tree is
# never written), then print a table of executions per second, coverage
# (libFuzzer's cov: edges reached, of the edges instrumented in the binary,
# and ft: features) and corpus size. Exits 1 when
# any target crashed, leaked, timed out or ran out of memory; the input
# that did it is kept and named, to be committed under
# tests/fuzz/regress/<target>/ once the bug is fixed.
set -u

here=$(cd "$(dirname "$0")" && pwd)
build=$1 secs=$2
shift 2
scratch=$(mktemp -d "${TMPDIR:-/tmp}/kiln-fuzz.XXXXXX") || exit 1
summary=$build/fuzz-summary.txt
# Crash reports with function names and lines.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-16/bin/llvm-symbolizer ]; then
	ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-16/bin/llvm-symbolizer
	export ASAN_SYMBOLIZER_PATH
fi
failed=
printf '%-14s %8s %8s %7s %7s %7s %7s  %s\n' target seconds exec/s cov edges ft corpus result >"$summary"

for t in "$@"; do
	work=$scratch/$t
	mkdir -p "$work/corpus" "$work/crash"
	for d in "$here/corpus/$t" "$here/regress/$t"; do
		[ -d "$d" ] && cp "$d"/* "$work/corpus/" 2>/dev/null
	done
	# Not -close_fd_mask: a device's fds would take 1 and 2 and its
	# warnings land in them. Its warnings are rate-limited anyway.
	"$build/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/crash/" \
		"$work/corpus" >"$work/log" 2>&1
	rc=$?
	last=$(grep -E '^#[0-9]+.*cov: ' "$work/log" | tail -n 1)
	cov=$(printf '%s\n' "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(printf '%s\n' "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
	# Instrumented edges in the binary (the target's code and what it links).
	edges=$(sed -n 's/^INFO: Loaded 1 modules *(\([0-9]*\) inline 8-bit counters.*/\1/p' "$work/log")
	units=$(ls "$work/corpus" | wc -l)
	if [ $rc -eq 0 ]; then
		result=clean
	else
		result="FAILED (rc $rc): $(ls "$work/crash"/* 2>/dev/null | head -n 1)"
		failed="$failed $t"
		echo "== $t: the end of its log ($work/log)"
		tail -n 60 "$work/log"
	fi
	printf '%-14s %8s %8s %7s %7s %7s %7s  %s\n' "$t" "$secs" "${eps:-?}" "${cov:-?}" "${edges:-?}" \
		"${ft:-?}" "$units" "$result" | tee -a "$summary"
done

# The corpora as the run left them, for a look or a coverage report
# (make -f tests/fuzz/fuzz.mk coverage); the next run starts from the seeds.
for t in "$@"; do
	rm -rf "$build/corpus-last/$t"
	mkdir -p "$build/corpus-last"
	cp -r "$scratch/$t/corpus" "$build/corpus-last/$t"
done
echo "fuzz: summary in $summary"
if [ -n "$failed" ]; then
	echo "fuzz: crashed:$failed; inputs and logs kept in $scratch" >&2
	exit 1
fi
rm -rf "$scratch"
