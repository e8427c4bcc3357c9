#!/bin/sh
# Benchmark of a cache restore: usage bench/cache.sh [PATH-TO-cache-bench]
# (make bench-cache builds cache-bench and runs this).
#
# Makes a cache of FILES files (default 10000) of SIZE_MB MiB in all
# (default 200, random bytes: the zip stores them), saves it once with
# kiln's store (the local cache plus S3: a multipart upload, 64 MiB parts)
# into s3rver (tests/s3server.sh), then measures, RUNS times each (default
# 3), the median of:
#   local         kiln, the archive in the local cache: extract only
#   s3            kiln, an empty local cache: GET from S3 (streamed to a file)
#                 + extract
#   s3 warm       kiln, the local copy from the last s3 run: S3 answers
#                 304 Not Modified to its ETag, extract only
#   curl+unzip    gitlab-runner's path as a reference: the archive downloaded
#                 (curl, SigV4) then `unzip`
# Ratios to curl+unzip come last; the methods take turns, so that a busy
# host slows them alike, and the fastest run of each is shown too. s3rver is node.js on the same host: S3
# over a network is slower, and the local cache's lead larger.
set -eu

BIN=${1:-./bench/cache-bench}
RUNS=${RUNS:-3}
FILES=${FILES:-10000}
SIZE_MB=${SIZE_MB:-200}
case $BIN in /*) ;; *) BIN=$(pwd)/$BIN ;; esac
top=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
[ -x "$BIN" ] || { echo "bench/cache.sh: no $BIN (make bench/cache-bench)" >&2; exit 1; }
command -v unzip >/dev/null || { echo "bench/cache.sh: unzip is needed for the reference" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-cache.XXXXXX")
cleanup() { "$top/tests/s3server.sh" stop "$T/srv" 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT INT TERM

mkdir -p "$T/src" "$T/srv"
echo "making $FILES files, $SIZE_MB MiB" >&2
per=$((SIZE_MB * 1048576 / FILES))
head -c $((per * FILES)) /dev/urandom | (cd "$T/src" && split -a 5 -d -b "$per" - f)
# 100 folders of 100 files: a tree, as a dependency cache is.
(cd "$T/src" && i=0 && for f in f*; do d=d$((i % 100)); mkdir -p "$d"; mv "$f" "$d/"; i=$((i + 1)); done)

addr=$("$top/tests/s3server.sh" start "$T/srv") || { echo "bench/cache.sh: no S3 server" >&2; exit 1; }
echo "s3rver at $addr" >&2
save=$("$BIN" save "$addr" "$T/saved" "$T/src")
echo "saved (zip + upload): ${save% *} s" >&2

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
now() { date +%s.%N; }

curl_unzip() {
	curl -sf --aws-sigv4 aws:amz:us-east-1:s3 -u S3RVER:S3RVER -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' \
		-o "$T/dl.zip" "http://$addr/kiln-cache/project/1/bench"
	unzip -q -o "$T/dl.zip" -d "$T/out"
	rm -f "$T/dl.zip"
}

once() { # name command...: one timed run, extracting into a fresh folder
	name=$1
	shift
	rm -rf "$T/out" "$T/cold"
	sync
	t0=$(now)
	"$@" >/dev/null
	t1=$(now)
	echo "$t0 $t1" | awk '{ printf "%.3f\n", $2 - $1 }' >>"$T/$name.runs"
}

"$BIN" restore "$addr" "$T/warm" "$T/out" >/dev/null
# Round-robin, so that a busy host slows every method alike.
i=0
while [ $i -lt "$RUNS" ]; do
	once local "$BIN" restore local "$T/saved" "$T/out"
	once s3 "$BIN" restore "$addr" "$T/cold" "$T/out"
	once s3warm "$BIN" restore "$addr" "$T/warm" "$T/out"
	once ref curl_unzip
	i=$((i + 1))
done
for n in local s3 s3warm ref; do
	median <"$T/$n.runs" >"$T/$n"
	sort -n "$T/$n.runs" | head -n1 >"$T/$n.min"
done

ref=$(cat "$T/ref")
printf '%-12s %9s %9s %9s\n' "restore" "median s" "vs ref" "min s"
for n in local s3 s3warm ref; do
	v=$(cat "$T/$n")
	label=$n
	[ "$n" = s3warm ] && label="s3 warm"
	[ "$n" = ref ] && label="curl+unzip"
	printf '%-12s %9s %9s %9s\n' "$label" "$v" "$(echo "$v $ref" | awk '{ printf "%.2fx", $1 / $2 }')" "$(cat "$T/$n.min")"
done
echo "($FILES files, $SIZE_MB MiB, $RUNS runs each, $(nproc) CPUs)"
