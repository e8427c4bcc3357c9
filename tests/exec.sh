#!/bin/bash
# kiln exec --job-file, end to end, with nothing left behind.
#   on the host:        the qemu executor (TCG here, KVM where it works)
#   in the KVM sandbox: the microvm executor (kiln-vmm), plus the network
#                       checks: an outside service is reachable only with
#                       networking on, the host never.
# Exit 77 (SKIP) with the reason when images or the sandbox are missing.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
mode=${1:-host}

skip() { echo "SKIP: $*"; exit 77; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for i in kernel tiny debian; do
	[ -f "$images/$i/manifest.json" ] || skip "image $i is not built (./tools/dev images $i)"
done
[ "$(id -u)" = 0 ] || skip "needs root (taps, nftables)"

. "$top_srcdir/tests/vmtest.sh"
work=$(mktemp -d /tmp/kiln-exec-test.XXXXXX)
state=$work/state
fails=0
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
# Templates (on by default: the sandbox's jobs restore) are a cache apart
# from the state folder, whose size the fill case checks.
export KILN_TEMPLATES_DIR=$work/templates
kiln=$top_builddir/kiln
executor=qemu
[ "$mode" = sandbox ] && executor=microvm

cleanup() { rm -rf "$work"; }
trap cleanup EXIT

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$top_srcdir/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }

# payload NAME: the example with the test's repository.
payload() {
	sed "s|/var/lib/kiln/examples/demo.git|$work/demo.git|" "$top_srcdir/examples/$1.json" > "$work/$1.json"
	echo "$work/$1.json"
}

# The jail's VM cgroups (a jailed VMM's argv names no job folder: a VMM
# left running keeps its cgroup).
cgroups() { ls -d /sys/fs/cgroup/kiln/*/ /sys/fs/cgroup/*/kiln/*/ 2>/dev/null | sort; }
cgroups_before=$(cgroups)

# Nothing of a job may remain: job folders, VMM processes, taps, nft set elements.
leftovers() {
	local what=$1 left=""
	[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] || left="$left job-folder:$(ls "$state/jobs")"
	pgrep -f "$state/jobs" >/dev/null && left="$left vmm-process"
	[ "$(cgroups)" = "$cgroups_before" ] || left="$left cgroup:$(comm -13 <(echo "$cgroups_before") <(cgroups) | tr '\n' ' ')"
	ip -br link 2>/dev/null | grep -q '^kt[0-9]' && left="$left tap:$(ip -br link | grep -o '^kt[0-9]*' | tr '\n' ' ')"
	if nft list set inet kiln job_ifs 2>/dev/null | grep -q 'elements'; then left="$left nft-elements"; fi
	[ -z "$(ls -A "$state/tmp" 2>/dev/null)" ] || left="$left tmp:$(ls "$state/tmp")"
	[ -z "$left" ] && ok "$what: nothing left behind" || bad "$what: left behind:$left"
}

# run NAME WANT_STATUS PATTERN... : run a payload, check status and log lines.
run() {
	local name=$1 want=$2 out st
	shift 2
	out=$("$kiln" exec --executor "$executor" --job-file "$(payload "$name")" ${EXTRA:-} 2>&1)
	st=$?
	vm_glitch_note "$out"
	[ "$st" = "$want" ] && ok "$name: exit status $st" || { bad "$name: exit status $st, want $want"; echo "$out" | tail -15; }
	for p in "$@"; do
		case "$p" in
		!*) echo "$out" | grep -qF -- "${p#!}" && bad "$name: log has '${p#!}'" || ok "$name: log lacks '${p#!}'" ;;
		*) echo "$out" | grep -qF -- "$p" && ok "$name: log has '$p'" || { bad "$name: log lacks '$p'"; echo "$out" | tail -15; } ;;
		esac
	done
	leftovers "$name"
}

echo "# executor: $executor"
run hello 0 '$ ./build.sh' 'build ok' 'a6cc3af demo: second commit' 'after_script: job status is success'
run variables 0 'plain: hello from kiln' 'glpat-examplesecret123' 'region=eu-1' 'file variable path: /builds/examples/demo.tmp/DEPLOY_CONFIG'
run fail 3 'about to fail with 3' '!never printed' 'after_script sees CI_JOB_STATUS=failed' 'job failed: script_failure, exit code 3'
t0=$(date +%s)
run timeout 1 'sleeping past the 5 s timeout' 'ERROR: Job failed: execution took longer than 5 seconds' '!after_script after timeout' 'job_execution_timeout'
t1=$(date +%s)
[ $((t1 - t0)) -lt 60 ] && ok "timeout: ended $((t1 - t0)) s after start (job timeout 5 s)" || bad "timeout: took $((t1 - t0)) s"
run tiny 0 'NAME="kiln tiny"' 'README.md' 'CI=true job tiny'

# A guest that fills its disks: the workspace (its image has a fixed size)
# and the root file system (a copy-on-write overlay that kiln caps). The job
# fails on its own ENOSPC or I/O error like any failing script; the host's
# state folder holds no more than before, and nothing is left.
python3 - "$(payload fail)" "$work/fill.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["steps"][0]["script"] = [
    "dd if=/dev/zero of=fill bs=1M 2>/tmp/dd.err || cat /tmp/dd.err; echo workspace-full",
    "dd if=/dev/zero of=/var/tmp/fill bs=1M count=64 2>/dev/null; echo root-written",
    "exit 7",
]
json.dump(d, open(sys.argv[2], "w"))
PY
out=$("$kiln" exec --executor "$executor" --job-file "$work/fill.json" 2>&1); st=$?
vm_glitch_note "$out"
[ "$st" = 7 ] && echo "$out" | grep -q 'No space left on device' && echo "$out" | grep -q 'workspace-full' &&
	echo "$out" | grep -q 'root-written' && ok "a guest that fills its workspace: ENOSPC in the guest, status 7" ||
	{ bad "fill: status $st"; echo "$out" | tail -8; }
[ "$(du -sm "$state" | cut -f1)" -lt 64 ] && ok "fill: the state folder stays small ($(du -sh "$state" | cut -f1))" ||
	bad "fill: the state folder grew to $(du -sh "$state" | cut -f1)"
leftovers "fill"

# A commit the repository lacks: the job cannot run (125) and says why. The
# microvm executor has its VM booting by then (the workspace is built
# meanwhile): it must go too.
sed 's/a6cc3af9e005e5d0e3e1eb84b2b325f3e9c1b99d/0123456789abcdef0123456789abcdef01234567/' "$(payload tiny)" > "$work/nosha.json"
out=$("$kiln" exec --executor "$executor" --job-file "$work/nosha.json" 2>&1); st=$?
[ "$st" = 125 ] && echo "$out" | grep -q 'commit 0123456789abcdef0123456789abcdef01234567 is not in' &&
	ok "missing commit: status 125, '$(echo "$out" | tail -1 | cut -c1-100)...'" ||
	{ bad "missing commit: status $st"; echo "$out" | tail -5; }
leftovers "missing commit"

# An invalid payload: one line naming the field, exit 2, no VM.
printf '{"id": 1, "job_info": {"name": "x"}, "git_info": {"repo_url": "/x", "sha": "zz"}, "steps": []}' > "$work/bad.json"
out=$("$kiln" exec --job-file "$work/bad.json" 2>&1); st=$?
[ "$st" = 2 ] && [ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q 'git_info.sha' &&
	ok "invalid payload: '$out'" || bad "invalid payload: status $st: $out"

# SIGINT while the job runs: the VM goes at once, nothing stays.
sed 's/"sleep 600"/"sleep 300"/; s/"timeout": 5/"timeout": 600/g' "$(payload timeout)" > "$work/long.json"
"$kiln" exec --executor "$executor" --job-file "$work/long.json" > "$work/long.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q 'sleeping past' "$work/long.log" && break; sleep 0.1; done
kill -INT $pid
t0=$(date +%s%N)
wait $pid; st=$?
t1=$(date +%s%N)
[ "$st" != 0 ] && ok "SIGINT: kiln exec ended with status $st in $(( (t1 - t0) / 1000000 )) ms" || bad "SIGINT: status 0"
leftovers "SIGINT"

# SIGTERM: a graceful cancel; the script stops, after_script still runs.
"$kiln" exec --executor "$executor" --job-file "$work/long.json" > "$work/long.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q 'sleeping past' "$work/long.log" && break; sleep 0.1; done
kill -TERM $pid
wait $pid; st=$?
grep -q 'after_script after timeout' "$work/long.log" && grep -q 'job failed: canceled' "$work/long.log" &&
	[ "$st" != 0 ] && ok "SIGTERM: canceled gracefully, after_script ran (status $st)" ||
	{ bad "SIGTERM: status $st"; tail -5 "$work/long.log"; }
leftovers "SIGTERM"

# SIGKILL of kiln: its VMM dies with it (PR_SET_PDEATHSIG); the next kiln sweeps the rest.
"$kiln" exec --executor "$executor" --job-file "$work/long.json" > "$work/long.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q 'sleeping past' "$work/long.log" && break; sleep 0.1; done
kill -KILL $pid
wait $pid 2>/dev/null
sleep 1
outlived=""
pgrep -f "$state/jobs" >/dev/null && outlived=yes
# A jailed VMM is known by its cgroup (the next kiln removes the cgroup).
for d in $(comm -13 <(echo "$cgroups_before") <(cgroups)); do [ -n "$(cat "$d/cgroup.procs")" ] && outlived=yes; done
[ -n "$outlived" ] && bad "SIGKILL: a VMM outlived kiln" || ok "SIGKILL: no VMM outlived kiln"
run tiny 0 'CI=true job tiny'

if [ "$mode" = sandbox ] && [ -f "$images/debian-kernel/manifest.json" ]; then
	# Debian's stock kernel (virtio_blk a module in its initrd) takes the
	# workspace built while it boots just as well.
	EXTRA="--kernel debian-kernel" run hello 0 '$ ./build.sh' 'build ok' 'a6cc3af demo: second commit'
fi

if [ "$mode" = sandbox ]; then
	# An "outside" network: a namespace behind a veth, with a web service.
	ip netns add outside
	ip link add kiln-out type veth peer name kiln-out-ns
	ip link set kiln-out-ns netns outside
	ip addr add 198.18.0.1/24 dev kiln-out
	ip link set kiln-out up
	ip -n outside addr add 198.18.0.2/24 dev kiln-out-ns
	ip -n outside link set kiln-out-ns up
	ip -n outside link set lo up
	ip -n outside route add default via 198.18.0.1
	ip route add default via 198.18.0.1 2>/dev/null || true
	mkdir -p "$work/www" && echo "hello from outside" > "$work/www/index.html"
	ip netns exec outside python3 -m http.server 8080 --bind 198.18.0.2 --directory "$work/www" >/dev/null 2>&1 &
	srv=$!
	# A service on the host itself, which jobs must never reach.
	python3 -m http.server 8081 --bind 0.0.0.0 --directory "$work/www" >/dev/null 2>&1 &
	hostsrv=$!
	for _ in $(seq 1 100); do
		curl -s --max-time 1 http://198.18.0.2:8080/ >/dev/null && curl -s --max-time 1 http://198.18.0.1:8081/ >/dev/null && break
		sleep 0.2
	done
	EXTRA=--network run network 0 'hello from outside'
	EXTRA=--no-network run network 7 '!hello from outside'
	sed 's|http://198.18.0.2:8080/|http://198.18.0.1:8081/|' "$(payload network)" > "$work/host1.json"
	sed 's|http://198.18.0.2:8080/|http://172.30.0.1:8081/|' "$(payload network)" > "$work/host2.json"
	for h in host1 host2; do
		cp "$work/$h.json" "$top_builddir/.exec-$h.json" 2>/dev/null || true
		out=$("$kiln" exec --executor microvm --network --job-file "$work/$h.json" 2>&1); st=$?
		vm_glitch_note "$out"
		[ "$st" != 0 ] && ! echo "$out" | grep -q 'hello from outside' && ok "$h: the host's own address is unreachable" ||
			{ bad "$h: reached the host"; echo "$out" | tail -5; }
		rm -f "$top_builddir/.exec-$h.json"
		leftovers "$h"
	done
	kill $srv $hostsrv 2>/dev/null
	ip netns del outside
	ip link del kiln-out 2>/dev/null
fi

if [ "$mode" = host ] && [ -f "$images/sandbox/manifest.json" ]; then
	echo "# the microvm executor, in the KVM sandbox"
	"$top_srcdir/tests/kvm-sandbox" --timeout 1200 --tries 4 --env top_srcdir --env top_builddir --env KILN_IMAGES_DIR -- \
		bash "$top_srcdir/tests/exec.sh" sandbox
	st=$?
	[ "$st" = 0 ] && ok "sandbox run" || bad "sandbox run: status $st"
fi
echo "$fails failed"
[ "$fails" = 0 ] || vm_glitch_exit
[ "$fails" = 0 ]
