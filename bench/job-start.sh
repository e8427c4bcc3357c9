#!/bin/bash
# Job start latency: from the payload ready in kiln (where job_run begins,
# as in a daemon that just took a job; KILN_TIMINGS says when) to the
# first byte of the script's output on the host, and from `kiln exec`'s
# start (its dynamic loading and set-up too), for the microvm executor
# (kiln-vmm) and the qemu executor (QEMU microvm), same kernel, image,
# vCPUs and memory, no network, warm mirror. Runs in the KVM sandbox, where
# both have (nested) KVM; compare the ratio, not the absolute times. The
# microvm rows: restored from the machine's template (built by the warm-up
# run; the image must carry this kiln's agent) and booted cold
# (--no-snapshot). Then memory: the Pss of the kiln-vmm processes (their
# /proc/PID/smaps_rollup) while their guests sit in a job's script, four
# VMs restored at once against one (target: under 1.5x, the clean pages of
# the template shared) and one booted cold. KILN_IMAGES_DIR picks the
# images (default /var/lib/kiln/images).
#   bench/job-start.sh [RUNS]      (default 5)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-5}
if [ -z "${KILN_IN_SANDBOX:-}" ]; then
	exec "$top/tests/kvm-sandbox" --timeout 1200 --tries 3 --env KILN_IN_SANDBOX=1 \
		--env KILN_IMAGES_DIR="${KILN_IMAGES_DIR:-/var/lib/kiln/images}" -- bash "$top/bench/job-start.sh" "$runs"
fi
work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
export KILN_DATA_DIR=$top KILN_LIBEXEC_DIR=$top KILN_STATE_DIR=$work/state KILN_IMAGES_DIR=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
# Templates are on by default (docs/vmm.md); said here, whatever the host's file.
printf 'defaults:\n  snapshots: true\n' >"$work/config.yml"
export KILN_CONFIG=$work/config.yml
"$top/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null
sed "s|/var/lib/kiln/examples/demo.git|$work/demo.git|" "$top/examples/tiny.json" > "$work/job.json"
# Warm the mirror once so both executors pay the same workspace cost; it
# also builds the microvm template of this machine.
"$top/kiln" exec --executor microvm --no-network --vcpus 1 --memory 256 --job-file "$work/job.json" > "$work/warm.txt" 2>&1
grep 'boot:' "$work/warm.txt" >&2 || true
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
declare -A first spawn total
for x in microvm microvm-cold qemu; do
	python3 "$top/bench/first-byte.py" "$runs" '$ uname -a' \
		"$top/kiln" exec --executor "${x%-cold}" $([ "$x" = microvm-cold ] && echo --no-snapshot) --no-network \
		--vcpus 1 --memory 256 --job-file "$work/job.json" > "$work/$x.txt"
	# first-byte.py: from spawn, total, status, spawn time, payload time
	first[$x]=$(awk '{ printf "%.3f\n", $4 + $1 - $5 }' "$work/$x.txt" | median)
	spawn[$x]=$(cut -d' ' -f1 "$work/$x.txt" | median)
	total[$x]=$(cut -d' ' -f2 "$work/$x.txt" | median)
	bad=$(awk '$3 != 0 || $5 == "nan"' "$work/$x.txt" | wc -l)
	[ "$bad" = 0 ] || echo "warning: $bad $x runs failed or said no payload time" >&2
done
printf '%-13s %-28s %-30s %-14s\n' executor "payload -> first output (s)" "kiln's start -> first output (s)" "whole job (s)"
for x in microvm microvm-cold qemu; do
	printf '%-13s %-28s %-30s %-14s\n' "$x" "${first[$x]}" "${spawn[$x]}" "${total[$x]}"
done
echo "runs: $runs each, medians; sandbox = TCG with nested SVM, expect hardware to be 10-50x faster"

# Memory: N jobs at once whose script says READY and sleeps; once every
# one has said it, the sum of their kiln-vmm processes' Pss (KiB).
python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); d["steps"][0]["script"] = ["echo READY", "sleep 20"]; json.dump(d, open(sys.argv[2], "w"))' \
	"$work/job.json" "$work/mem.json"
vmm_pss() {
	local n=$1 cold=$2 i t=0 sum=0 p
	for i in $(seq "$n"); do
		"$top/kiln" exec --executor microvm $cold --no-network --vcpus 1 --memory 256 --job-file "$work/mem.json" \
			> "$work/mem$i.txt" 2>&1 &
	done
	while [ "$(cat "$work"/mem[0-9]*.txt | grep -c '^READY')" -lt "$n" ] && [ $t -lt 600 ]; do
		sleep 1; t=$((t + 1))
	done
	sleep 1
	for p in $(pgrep -x kiln-vmm); do
		sum=$((sum + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
	done
	[ "$(pgrep -x kiln-vmm | wc -l)" = "$n" ] || echo "warning: $(pgrep -x kiln-vmm | wc -l) kiln-vmm processes, want $n" >&2
	wait
	grep -q 'boot: restored' "$work/mem1.txt" || [ -n "$cold" ] || echo "warning: the memory runs were not restored" >&2
	rm -f "$work"/mem[0-9]*.txt
	echo "$sum"
}
m1=$(vmm_pss 1 "")
m4=$(vmm_pss 4 "")
mc=$(vmm_pss 1 --no-snapshot)
# One VM is one booted as without templates; one restored alone holds
# only what it touched of the template, its pages not shared yet.
printf 'memory (Pss of kiln-vmm, KiB): 1 restored %s, 4 restored %s, 1 cold %s\n' "$m1" "$m4" "$mc"
awk -v a="$m4" -v b="$mc" 'BEGIN { printf "memory 4 restored / 1: %.2f (one VM booted cold; target < 1.5)\n", a / b }'
awk -v a="$m4" -v b="$m1" 'BEGIN { printf "memory 4 restored / 1 restored: %.2f\n", a / b }'
# How far start-up work can move the ratio: the microvm runs again with a
# kiln-vmm that logs when it first enters KVM_RUN (KILN_VMM_TIMINGS, on the
# same CLOCK_MONOTONIC as first-byte.py's spawn time), through a wrapper in
# a libexec folder of its own. What follows that moment (the guest kernel's
# boot, the agent, the shell) is out of reach of kiln's and kiln-vmm's
# start-up; it over qemu's first output is the ratio they could reach
# if everything before it took no time.
mkdir -p "$work/libexec"
printf '#!/bin/sh\nKILN_VMM_TIMINGS=1 exec %s "$@" 2>>%s\n' "$top/kiln-vmm" "$work/vmm.log" > "$work/libexec/kiln-vmm"
chmod +x "$work/libexec/kiln-vmm"
# kiln finds its other helpers there too: the agent the image check hashes.
ln -s "$top/kiln-agent" "$top/kiln-diskread" "$work/libexec/"
# Without the jail: a jailed kiln-vmm is the binary alone, bind-mounted
# into an empty root, where a shell wrapper cannot run.
printf 'jail: false\n' >"$work/traced.yml"
KILN_CONFIG=$work/traced.yml KILN_LIBEXEC_DIR=$work/libexec python3 "$top/bench/first-byte.py" "$runs" '$ uname -a' \
	"$top/kiln" exec --executor microvm --no-snapshot --no-network --vcpus 1 --memory 256 --job-file "$work/job.json" \
	> "$work/traced.txt"
grep -o 'CLOCK_MONOTONIC [0-9.]*' "$work/vmm.log" | cut -d' ' -f2 > "$work/runs.txt" || true
if [ "$(wc -l < "$work/runs.txt")" = "$runs" ] && ! awk '$3 != 0 { bad = 1 } END { exit !bad }' "$work/traced.txt"; then
	after=$(paste -d' ' "$work/traced.txt" "$work/runs.txt" | awk '{ print $1 - ($6 - $4) }' | median)
	before=$(paste -d' ' "$work/traced.txt" "$work/runs.txt" | awk '{ print $6 - $5 }' | median)
	printf 'microvm, traced: payload -> first KVM_RUN %.3f s, first KVM_RUN -> first output %.3f s (medians)\n' "$before" "$after"
	awk -v a="$after" -v b="${first[qemu]}" 'BEGIN { printf "ratio if everything before the first KVM_RUN took no time: %.2f\n", a / b }'
else
	echo "warning: the traced microvm runs failed or logged no first KVM_RUN; no floor" >&2
fi
awk -v a="${first[microvm-cold]}" -v b="${first[qemu]}" 'BEGIN { printf "ratio microvm/qemu (first output): %.2f (target <= 0.5)\n", a / b }'
awk -v a="${spawn[microvm]}" -v b="${spawn[microvm-cold]}" 'BEGIN { printf "ratio restored/cold from kiln'"'"'s start (first output): %.2f\n", a / b }'
awk -v a="${first[microvm]}" -v b="${first[microvm-cold]}" 'BEGIN { printf "ratio restored/cold (first output): %.2f (target <= 0.2)\n", a / b }'
