#!/bin/bash
# The host-side fault matrix: the real kiln, jobs in fresh VMs with the
# qemu executor, and for each fault what the user sees, whether anything
# acknowledged was lost, and whether anything was left behind (job
# folders, VMM and helper processes, scratch files, the crash journal,
# mounts, loop devices; taps and nftables elements in the network cell).
#   disk-full-workspace   state_dir on a tmpfs too small for the workspace
#   disk-full-guest       the guest fills its workspace disk past the tmpfs
#   disk-full-overlay     the guest fills its root disk's overlay (in the job folder,
#                         or $TMPDIR unjailed: both on a tmpfs)
#   disk-full-artifacts   .kiln/artifacts on a tmpfs smaller than the artifacts
#   tap-removed           the job's tap deleted under its VM (KILN_FAULTS_NET=0
#                         leaves it out; the VM tests' lock keeps others' taps away)
#   sigkill-*             kiln run SIGKILLed while it builds the workspace,
#                         while the guest boots, while the script runs, while
#                         it uploads artifacts; a new kiln on the same
#                         state_dir reports the job failed and sweeps
#   server-gone           the CI server unreachable mid-trace (a TCP proxy in
#                         front of tests/fake-gitlab.py, killed and started again)
#   sigkill-final         the server gone when the job ends, kiln SIGKILLed while
#                         it retries the final update, then restarted
# Each cell prints "cell NAME: user sees ...; lost: ...; left behind: ...";
# the matrix is printed again at the end.
# Exit 77 (SKIP) with the reason when something it needs is missing.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}

skip() { echo "SKIP: $*"; exit 77; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for tool in openssl python3 git curl; do
	command -v "$tool" >/dev/null || skip "$tool is not installed (./tools/dev deps)"
done
for i in kernel tiny; do
	[ -f "$images/$i/manifest.json" ] || skip "image $i is not built (./tools/dev images $i)"
done
[ "$(id -u)" = 0 ] || skip "needs root (tmpfs mounts)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"

. "$top_srcdir/tests/vmtest.sh"
work=$(mktemp -d /tmp/kiln-faults-test.XXXXXX)
fails=0
fpid= kpid= ppid_=
mounts=()
matrix=()
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$images
export KILN_CACHE_DIR=$work/cache GIT_CONFIG_NOSYSTEM=1 HOME=$work NO_COLOR=1
kiln=$top_builddir/kiln

cleanup() {
	local m
	[ -n "$kpid" ] && kill -KILL "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null
	[ -n "$ppid_" ] && kill -KILL "$ppid_" 2>/dev/null && wait "$ppid_" 2>/dev/null
	[ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
	for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT

ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: [${SECONDS}s] $*"; fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...
	local what=$1
	shift
	if "$@"; then ok "$what"; else bad "$what"; fi
}
# cell NAME SEES LOST LEFT: one row of the matrix; a row with something
# lost or left behind fails the test.
cell() {
	local line="cell $1: user sees $2; lost: $3; left behind: $4"
	matrix+=("$line")
	echo "$line"
	[ "$3" = nothing ] && [ "$4" = nothing ] || bad "cell $1: lost: $3; left behind: $4"
}
# tmpfs DIR SIZE: a tmpfs of SIZE on DIR (made), undone at exit.
tmpfs() {
	mkdir -p "$1" && mount -t tmpfs -o "size=$2,mode=0755" kiln-faults "$1" && mounts+=("$1")
}
# left STATE [DIR...]: what jobs left under the state folder STATE (and in
# each DIR), or "nothing".
left() {
	local s=$1 out="" d
	shift
	[ -z "$(ls -A "$s/jobs" 2>/dev/null)" ] || out="$out job-folders:$(ls "$s/jobs" | tr '\n' ',')"
	[ -z "$(ls -A "$s/tmp" 2>/dev/null)" ] || out="$out tmp:$(ls "$s/tmp" | tr '\n' ',')"
	[ -z "$(ls -A "$s/running" 2>/dev/null)" ] || out="$out journal:$(ls "$s/running" | tr '\n' ',')"
	pgrep -f "$s/" >/dev/null && out="$out processes:$(pgrep -f "$s/" | tr '\n' ',')"
	ls "$s"/mirrors/*/*.lock "$s"/mirrors/*/objects/pack/tmp_* >/dev/null 2>&1 && out="$out mirror-temp-files"
	grep -qF " $s/" /proc/mounts && out="$out mounts"
	losetup -a 2>/dev/null | grep -qF "$s/" && out="$out loop-devices"
	for d in "$@"; do
		[ -z "$(ls -A "$d" 2>/dev/null)" ] || out="$out $d:$(ls -A "$d" | tr '\n' ',')"
	done
	echo "${out:+${out# }}${out:-nothing}"
}
# wait_until SECONDS COMMAND...: poll every 0.1 s.
wait_until() {
	local n=$(($1 * 10))
	shift
	while [ "$n" -gt 0 ]; do
		"$@" && return 0
		sleep 0.1
		n=$((n - 1))
	done
	return 1
}

sha=$("$top_srcdir/examples/make-demo-repo.sh" "$work/demo.git") || { echo "FAIL: demo repo"; exit 1; }
# payload FILE SCRIPT_JSON [TIMEOUT]: examples/tiny.json with the test's
# repository and the given script.
payload() {
	python3 - "$top_srcdir/examples/tiny.json" "$work/demo.git" "$2" "${3:-120}" >"$1" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
p["git_info"]["repo_url"] = sys.argv[2]
p["runner_info"]["timeout"] = int(sys.argv[4])
p["steps"][0]["script"] = json.loads(sys.argv[3])
p["steps"][0]["timeout"] = int(sys.argv[4])
print(json.dumps(p))
PY
}

# --- 1. disk full in state_dir ------------------------------------------------
echo "# disk full in state_dir"
# a. Too small for the workspace kiln builds: the job never gets a VM.
s1=$work/state-small
tmpfs "$s1" 256k || skip "cannot mount a tmpfs"
payload "$work/small.json" '["echo never runs"]'
out=$(KILN_STATE_DIR=$s1 "$kiln" exec --executor qemu --no-network --job-file "$work/small.json" 2>&1)
st=$?
vm_glitch_note "$out"
err=$(echo "$out" | grep '^kiln: error:')
check "disk full (workspace): exit status $st, not 0" test "$st" != 0
check "disk full (workspace): one error line names the full disk: $err" grep -q "the disk holding $s1 is full" <<<"$err"
check "disk full (workspace): no VM was started" bash -c '! grep -q "booting a fresh VM" <<<"$1"' _ "$out"
cell disk-full-workspace "exit $st, '$err'" nothing "$(left "$s1")"

# b. Room for the workspace, not for what the guest writes into it.
s2=$work/state-full
tmpfs "$s2" 24m
payload "$work/fill.json" '["echo filling", "dd if=/dev/zero of=big bs=1M count=64 conv=fsync", "echo never printed"]'
t0=$(date +%s)
out=$(KILN_STATE_DIR=$s2 timeout 300 "$kiln" exec --executor qemu --no-network --job-file "$work/fill.json" 2>&1)
st=$?
t1=$(date +%s)
vm_glitch_note "$out"
err=$(echo "$out" | grep -m1 'is full')
check "disk full (guest): exit status $st, not 0, after $((t1 - t0)) s" test "$st" != 0 -a "$st" != 124
check "disk full (guest): over in $((t1 - t0)) s, not at the job's timeout (120 s)" test $((t1 - t0)) -lt 100
check "disk full (guest): the script stopped at the failed write" bash -c '! grep -q "^never printed" <<<"$1"' _ "$out"
check "disk full (guest): kiln names the full disk: $err" grep -q "the disk holding $s2 .* is full" <<<"$err"
cell disk-full-guest "exit $st after $((t1 - t0)) s, '$err'" nothing "$(left "$s2")"

# c. The copy-on-write overlay of the VM's root disk full. A jailed QEMU
# keeps it in the VM's own folder (TMPDIR=/vm, the job folder in
# state_dir); unjailed, in kiln's $TMPDIR. Both on the same small tmpfs.
vt=$work/vartmp
tmpfs "$vt" 32m
payload "$work/root.json" '["echo filling", "dd if=/dev/zero of=/big bs=1M count=48 conv=fsync", "echo never printed"]'
t0=$(date +%s)
out=$(KILN_STATE_DIR=$vt/state TMPDIR=$vt timeout 300 "$kiln" exec --executor qemu --no-network --job-file "$work/root.json" 2>&1)
st=$?
t1=$(date +%s)
vm_glitch_note "$out"
err=$(echo "$out" | grep -m1 'is full')
check "disk full (overlay): exit status $st, not 0, over in $((t1 - t0)) s (job timeout 120 s)" test "$st" != 0 -a $((t1 - t0)) -lt 100
check "disk full (overlay): the script stopped at the failed write" bash -c '! grep -q "^never printed" <<<"$1"' _ "$out"
check "disk full (overlay): kiln names the full disk: $err" grep -q "the disk holding $vt.* is full" <<<"$err"
cell disk-full-overlay "exit $st after $((t1 - t0)) s, '$err'" nothing "$(left "$vt/state")"

# d. Artifacts that do not fit where kiln exec keeps them.
echo "# disk full during artifact collection"
export KILN_STATE_DIR=$work/state
repo=$work/artrepo
mkdir -p "$repo"
cat >"$repo/.gitlab-ci.yml" <<'EOF'
image: tiny
stages: [build, test]
build:
  stage: build
  script:
    - mkdir -p out
    - dd if=/dev/urandom of=out/big.bin bs=1M count=6
    - echo small > out/small.txt
  artifacts:
    paths: [out/]
test:
  stage: test
  script:
    - ls out/
EOF
git -C "$repo" init -q -b main && git -C "$repo" add -A &&
	git -C "$repo" -c user.name=kiln -c user.email=kiln@example.invalid commit -qm artifacts || { echo "FAIL: repo"; exit 1; }
tmpfs "$repo/.kiln/artifacts" 2m
out=$(cd "$repo" && "$kiln" exec --executor qemu --no-network 2>&1)
st=$?
vm_glitch_note "$out"
err=$(echo "$out" | grep -m1 'build *> artifacts:')
summ=$(echo "$out" | sed -n '/^pipeline #/,$p' | grep -E '^  build ' | tr -s ' ' | cut -c1-160)
check "disk full (artifacts): exit status $st, not 0" test "$st" != 0
check "disk full (artifacts): the job says why: $err" grep -q "No space left on device" <<<"$err"
check "disk full (artifacts): build failed: $summ" grep -q "FAIL" <<<"$summ"
check "disk full (artifacts): test did not run without them" bash -c '! grep -q "^test *> .*ls out/" <<<"$1"' _ "$out"
cell disk-full-artifacts "exit $st, '$err', summary '$summ'" nothing "$(left "$KILN_STATE_DIR" "$repo/.kiln/artifacts")"

# --- 3. the tap removed under a running VM ----------------------------------------
if [ "${KILN_FAULTS_NET:-1}" = 1 ]; then
	echo "# the tap removed under a running VM"
	payload "$work/net.json" '["echo N-started", "sleep 3", "set -- $(ip route | grep default); ping -c 2 -W 2 $3 && echo N-net-up || echo N-net-down", "echo N-done"]'
	"$kiln" exec --executor qemu --network --job-file "$work/net.json" >"$work/net.log" 2>&1 &
	pid=$!
	wait_until 120 grep -q '^N-started' "$work/net.log"
	tap=$(grep -o 'network: kt[0-9]*' "$work/net.log" | head -1 | cut -d' ' -f2)
	check "tap: the job has tap $tap" test -n "$tap"
	[ -n "$tap" ] && ip link del "$tap"
	t0=$(date +%s)
	wait "$pid"
	st=$?
	t1=$(date +%s)
	out=$(cat "$work/net.log")
	vm_glitch_note "$out"
	sees=$(echo "$out" | grep -E '^N-net-|^kiln: (job (succeeded|failed)|warning|error)' | tr '\n' ' ')
	check "tap: the job ran to its end ($st), its network down from then on" \
		bash -c 'grep -q "^N-net-down" <<<"$1" && grep -q "^N-done" <<<"$1"' _ "$out"
	netleft=$(left "$KILN_STATE_DIR")
	[ -n "$tap" ] && ip link show "$tap" >/dev/null 2>&1 && netleft="${netleft/#nothing/} tap:$tap"
	[ -n "$tap" ] && nft list set inet kiln job_ifs 2>/dev/null | grep -qw "$tap" && netleft="${netleft/#nothing/} nft-element:$tap"
	# The job's claim on its network slot (host-wide, /run/kiln/net).
	grep -qx "pid=$pid" /run/kiln/net/slot-* 2>/dev/null && netleft="${netleft/#nothing/} net-slot-claim"
	cell tap-removed "exit $st $((t1 - t0)) s after, '$sees'" nothing "${netleft# }"
else
	echo "skip: cell tap-removed: KILN_FAULTS_NET=0"
	matrix+=("cell tap-removed: skipped (KILN_FAULTS_NET=0)")
fi

# --- 4 and 5: kiln run against the fake GitLab, through a proxy ----------------------
echo "# kiln run: SIGKILL at each phase, the CI server going away"
token=glrt-kiln-faults-0123456789
state=$KILN_STATE_DIR
cfg=$work/config.yml
fake=$work/fake
python3 "$top_srcdir/tests/fake-gitlab.py" --dir "$fake" --runner-token "$token" >"$work/fake.log" 2>&1 &
fpid=$!
wait_until 20 test -f "$fake/url" || { cat "$work/fake.log"; echo "FAIL: the fake GitLab did not start"; exit 1; }
furl=$(cat "$fake/url")
ca=$fake/ca.pem
"$top_srcdir/examples/make-demo-repo.sh" "$fake/repos/group/project.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }
pport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
start_proxy() {
	python3 "$top_srcdir/tests/tcp-proxy.py" "$pport" "$(cat "$fake/port")" &
	ppid_=$!
	wait_until 20 curl -s --cacert "$ca" -o /dev/null "https://127.0.0.1:$pport/__state"
}
start_proxy || { echo "FAIL: the proxy did not start"; exit 1; }
url=https://127.0.0.1:$pport

ctl() { # ctl METHOD PATH [curl args]: straight to the fake, never through the proxy
	local m=$1 p=$2
	shift 2
	curl -sS --cacert "$ca" -X "$m" "$furl$p" "$@"
}
st() { # st EXPR: a Python expression over the fake's state s (and j, the job $J)
	ctl GET /__state | J=${J:-} python3 -c '
import json, os, re, sys
s = json.load(sys.stdin)
j = s["jobs"].get(os.environ["J"]) if os.environ["J"] else None
print(eval(sys.argv[1]))' "$1"
}
is() { [ "$(st "$1" 2>/dev/null)" = True ]; }
# enqueue NAME SCRIPT_JSON [FAULTS_JSON [EXTRA_JSON]]: queue a job; prints its id.
enqueue() {
	python3 - "$sha" "$@" <<'PY' | ctl POST /__job --data-binary @- | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
import json, sys
sha, name, script = sys.argv[1:4]
faults = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
p = {
    "job_info": {"name": name, "stage": "test", "project_id": 1, "project_name": "project",
                 "project_full_path": "group/project", "pipeline_id": 7},
    "git_info": {"ref": "main", "sha": sha, "before_sha": "0" * 40, "ref_type": "branch",
                 "refspecs": ["+refs/heads/*:refs/remotes/origin/*"], "depth": 0},
    "runner_info": {"timeout": 120},
    "steps": [{"name": "script", "script": json.loads(script), "timeout": 120, "when": "on_success",
               "allow_failure": False}],
    "image": {"name": "tiny"},
    "features": {"trace_sections": True, "failure_reasons": ["script_failure", "runner_system_failure"]},
}
p.update(extra)
print(json.dumps({"payload": p, "script": faults}))
PY
}
start_kiln() {
	"$kiln" -c "$cfg" run >>"$work/run.log" 2>&1 &
	kpid=$!
}
out=$("$kiln" -c "$cfg" register --url "$url" --token "$token" --tls-ca-file "$ca" --name faults --executor qemu 2>&1)
check "register: $out" grep -q "registered runner faults" <<<"$out"
cat >>"$cfg" <<EOF
concurrent: 1
check_interval: 1
defaults:
  network: false
  image: tiny
  executor: qemu
EOF
start_kiln

# sigkill PHASE ID CONDITION...: once CONDITION holds, SIGKILL kiln; check
# that no VM outlived it, start a new kiln on the same state folder and
# check what it reports and sweeps.
sigkill() {
	local phase=$1 id=$2 dead sees lost=nothing J=$2
	shift 2
	if ! wait_until 120 "$@"; then
		bad "sigkill-$phase: job $id never reached the phase"
		tail -5 "$work/run.log"
		return
	fi
	local vmm
	vmm=$(pgrep -P "$kpid" qemu-system-x86)
	kill -KILL "$kpid"
	wait "$kpid" 2>/dev/null
	kpid=
	sleep 0.5
	dead=$(ls "$state/jobs" "$state/tmp" "$state/running" 2>/dev/null | grep -v '^/\|^$' | tr '\n' ' ')
	# A jailed VMM's argv names no job folder: it is known as kiln's child.
	# (the parent-death signal takes a moment; a dead one may stay a zombie
	# where nothing reaps orphans)
	check "sigkill-$phase: no VMM outlived kiln" wait_until 10 bash -c '
		for p in $1; do
			[ -e /proc/$p ] && [ "$(cut -d" " -f3 /proc/$p/stat 2>/dev/null)" != Z ] && exit 1
		done; exit 0' _ "$vmm"
	start_kiln
	if ! J=$id wait_until 60 is "j['final'] is not None"; then
		bad "sigkill-$phase: job $id not reported after the restart"
		sees="job $id never reported"
	else
		sees="after the restart $(st "j['final']['state'] + ', ' + j['final']['failure_reason']"): '$(st "re.sub(r'\x1b\[[0-9;]*m', '', j['trace']).strip().splitlines()[-1].replace('ERROR: ', '')")'"
		check "sigkill-$phase: job $id reported failed, runner_system_failure" is "j['final']['state'] + '/' + j['final']['failure_reason'] == 'failed/runner_system_failure'"
		check "sigkill-$phase: the log says why, its checksum right" \
			is "'kiln was interrupted' in j['trace'] and j['final']['checksum_ok'] and j['final']['bytesize_ok']"
		J=$id is "j['final']['checksum_ok']" || lost="the trace's tail"
	fi
	# The new kiln sweeps at start; the reporting thread removes the journal.
	wait_until 10 test -z "$(ls -A "$state/running" 2>/dev/null)"
	cell "sigkill-$phase" "$sees (the dead kiln left: ${dead:-nothing})" "$lost" "$(left "$state")"
}

# a. While the workspace is built (its git fetch held up): before any VM.
ctl POST /__faults -d '{"git": [{"delay": 10}]}' >/dev/null
a=$(enqueue ws '["echo never runs"]')
sigkill workspace "$a" is "any('.git/' in r['path'] for r in s['arrived'])"
check "sigkill-workspace: no VM had started" bash -c '! grep -q "prepare_executor" <<<"$1"' _ "$(ctl GET "/__trace/$a")"
ctl POST /__faults -d '{"git": []}' >/dev/null

# b. While the guest boots: QEMU is up (polled every 0.1 s; the guest
# needs about a second to say hello), the script has not begun.
b=$(enqueue boot '["echo B-started", "sleep 300"]')
sigkill boot "$b" bash -c 'pgrep -P "$1" qemu-system-x86 >/dev/null' _ "$kpid"
check "sigkill-boot: the script never started" bash -c '! grep -q "B-started" <<<"$1"' _ "$(ctl GET "/__trace/$b")"

# c. While the script runs.
c=$(enqueue script '["echo S-started", "sleep 300"]')
sigkill script "$c" is "'S-started' in j['trace']"

# d. While it uploads the artifacts (the upload held up by the server).
art='{"artifacts": [{"name": "out", "paths": ["out/"], "when": "on_success", "artifact_type": "archive", "artifact_format": "zip"}]}'
d=$(enqueue upload '["mkdir -p out", "echo result > out/r.txt"]' '{"artifacts": [{"delay": 10}]}' "$art")
sigkill upload "$d" is "any(r['path'] == '/api/v4/jobs/$d/artifacts' for r in s['arrived'])"

# e. The CI server goes away mid-trace and comes back after the job ended.
g=$(enqueue gone '["echo G-started", "for i in 1 2 3 4 5 6; do echo G-tick $i; sleep 1; done", "echo G-done"]')
if J=$g wait_until 120 is "'G-started' in j['trace']"; then
	kill -KILL "$ppid_"
	wait "$ppid_" 2>/dev/null
	ppid_=
	t0=$(date +%s)
	# The job goes on; its VM must go when it ends, whatever the server does.
	wait_until 60 bash -c '! pgrep -f "$1/jobs" >/dev/null' _ "$state"
	t1=$(date +%s)
	check "server-gone: the VM ended $((t1 - t0)) s into the outage" bash -c '! pgrep -f "$1/jobs" >/dev/null' _ "$state"
	sleep 3
	check "server-gone: kiln still runs" kill -0 "$kpid"
	during=$(grep -c 'failed\|again in' "$work/run.log")
	start_proxy
	t2=$(date +%s)
	J=$g wait_until 90 is "j['final'] is not None" || bad "server-gone: no final update after the server came back"
	t3=$(date +%s)
	res=$(J=$g st "'%s, checksum %s, G-done %s' % (j['final']['state'] if j['final'] else None, j['final'] and j['final']['checksum_ok'], 'G-done' in j['trace'])")
	check "server-gone: reported $((t3 - t2)) s after the server came back: $res" test "$res" = "success, checksum True, G-done True"
	lost=nothing
	J=$g is "all('G-tick %d' % i in j['trace'] for i in range(1, 7)) and 'G-done' in j['trace']" || lost="log lines"
	check "server-gone: kiln still runs" kill -0 "$kpid"
	cell server-gone "$((t1 - t0)) s outage while the job ran and $((t2 - t1)) s after, kiln logged $during retry lines, then $res ($((t3 - t2)) s after the server came back)" \
		"$lost" "$(left "$state")"
else
	bad "server-gone: job $g never started"
fi

# f. The server gone when the job ends, and kiln SIGKILLed while it retries
# the final update: the new kiln reports the job as it ended.
k=$(enqueue final '["echo K-started", "sleep 5", "echo K-done"]')
if J=$k wait_until 120 is "'K-started' in j['trace']"; then
	kill -KILL "$ppid_"
	wait "$ppid_" 2>/dev/null
	ppid_=
	wait_until 60 grep -q "job $k: final update failed" "$work/run.log"
	check "sigkill-final: kiln was retrying the final update" grep -q "job $k: final update failed" "$work/run.log"
	kill -KILL "$kpid"
	wait "$kpid" 2>/dev/null
	kpid=
	start_proxy
	start_kiln
	J=$k wait_until 60 is "j['final'] is not None" || bad "sigkill-final: job $k not reported after the restart"
	res=$(J=$k st "'%s/%s, checksum %s' % (j['final']['state'], j['final'].get('failure_reason'), j['final']['checksum_ok'] and j['final']['bytesize_ok']) if j['final'] else 'none'")
	check "sigkill-final: reported as it ended: $res" test "$res" = "success/None, checksum True"
	J=$k check "sigkill-final: the log says the rest of it is lost" is "'the rest of its log is lost; the job had succeeded' in j['trace']"
	lost=nothing
	J=$k is "j['final'] and j['final']['state'] == 'success'" || lost="the job's outcome ($res)"
	wait_until 10 test -z "$(ls -A "$state/running" 2>/dev/null)"
	cell sigkill-final "after the restart $res, '$(J=$k st "re.sub(r'\x1b\[[0-9;]*m', '', j['trace']).strip().splitlines()[-1]")' (the log after the outage began was never acknowledged)" \
		"$lost" "$(left "$state")"
else
	bad "sigkill-final: job $k never started"
fi

kill -TERM "$kpid"
wait "$kpid"
kpid=
check "nothing left at the end" test "$(left "$state")" = nothing

echo "# the fault matrix"
printf '%s\n' "${matrix[@]}"
if [ "$fails" -gt 0 ]; then
	echo "--- kiln run log"; tail -30 "$work/run.log"
fi
echo "# $fails failure(s)"
[ "$fails" = 0 ] || vm_glitch_exit
[ "$fails" = 0 ]
