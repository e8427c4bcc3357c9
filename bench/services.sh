#!/bin/bash
# Job start with one service against job start without it (issue #16):
# from `kiln exec` starting with a ready payload to the first byte of the
# script's output, the same tiny job with and without a service (the tiny
# image running busybox nc, waited for on its port), taking turns, same
# executor, kernel, image and network (on: a service needs it). The
# service boots while the workspace is built and the job's VM boots, so
# the target is <= 1.3x. Needs root and the tiny image with an agent that
# knows "mode": "service" (KILN_IMAGES_DIR names another images folder).
#   bench/services.sh [RUNS] [EXECUTOR]     (default 5, qemu)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
executor=${2:-qemu}
work=$(mktemp -d /tmp/kiln-bench-services.XXXXXX)
trap '[ -n "${KILN_BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT
export KILN_DATA_DIR=$top KILN_LIBEXEC_DIR=$top KILN_STATE_DIR=$work/state
export KILN_IMAGES_DIR=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
"$top/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null
for kind in without with; do
	python3 - "$top/examples/tiny.json" "$work/$kind.json" "$work/demo.git" "$kind" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["git_info"]["repo_url"] = sys.argv[3]
d["steps"][0]["script"] = ["echo job-start-marker"]
if sys.argv[4] == "with":
    d["services"] = [{"name": "tiny", "alias": "db", "command": ["nc", "-ll", "-p", "5432", "-e", "echo", "hi"],
                      "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "5432"}]}]
json.dump(d, open(sys.argv[2], "w"))
PY
done
# Warm the mirror once so both pay the same workspace cost.
"$top/kiln" exec --executor "$executor" --network --job-file "$work/without.json" >/dev/null 2>&1
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for _ in $(seq 1 "$runs"); do
	for kind in without with; do
		python3 "$top/bench/first-byte.py" 1 'job-start-marker' \
			"$top/kiln" exec --executor "$executor" --network --vcpus 1 --memory 256 \
			--job-file "$work/$kind.json" >>"$work/$kind.txt"
	done
done
declare -A first total
for kind in without with; do
	first[$kind]=$(cut -d' ' -f1 "$work/$kind.txt" | median)
	total[$kind]=$(cut -d' ' -f2 "$work/$kind.txt" | median)
	bad=$(awk '$3 != 0' "$work/$kind.txt" | wc -l)
	[ "$bad" = 0 ] || echo "warning: $bad runs $kind a service failed" >&2
done
printf '%-16s %-28s %-16s\n' job "payload -> first output (s)" "whole job (s)"
for kind in without with; do
	printf '%-16s %-28s %-16s\n' "$kind a service" "${first[$kind]}" "${total[$kind]}"
done
awk -v a="${first[with]}" -v b="${first[without]}" 'BEGIN { printf "ratio (with / without): %.2fx (target <= 1.3x)\n", a / b }'
echo "runs: $runs each, taking turns, medians; executor $executor"
