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
vpid=
cleanup() {
	[ -n "${kpid:-}" ] && kill "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null
	[ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
	[ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
	ip netns del kiln-ghout 2>/dev/null
	ip link del kiln-ghout 2>/dev/null
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

# `kiln github status` against the same fake: demand, runners, records.
if [ $rc -eq 0 ]; then
	url=$(cat "$work/fake/url")
	mkdir -p "$work/state/github/acme"
	printf '{"id": 7, "name": "kiln-0123456789ab", "vm": "gh-7", "created": 1, "job_id": 0}' \
		>"$work/state/github/acme/kiln-0123456789ab.json"
	cat >"$work/config.yml" <<EOC
state_dir: $work/state
github:
  - name: acme
    url: https://github.com/acme/widgets
    api_url: $url
    token: ghp_fake
    tls_ca_file: $work/fake/ca.pem
    labels: [self-hosted, kiln]
EOC
	"$top_builddir/kiln" -c "$work/config.yml" config check | grep -q "github acme: https://github.com/acme/widgets, token auth, 2 labels" ||
		{ echo "FAIL: config check does not show the github entry"; rc=1; }
	out=$("$top_builddir/kiln" -c "$work/config.yml" github status 2>&1) || { echo "$out"; echo "FAIL: github status"; rc=1; }
	for want in "github acme (https://github.com/acme/widgets), labels self-hosted,kiln" "queued jobs: " \
		"runners kiln-*: " "kiln-0123456789ab id 7 VM gh-7"; do
		case $out in *"$want"*) ;; *) echo "$out"; echo "FAIL: github status lacks '$want'"; rc=1 ;; esac
	done
	case $out in *ghp_fake*) echo "FAIL: the token was printed"; rc=1 ;; esac
	[ $rc -eq 0 ] && echo "PASS: kiln github status"

	# kiln doctor checks the credentials: fine, then a missing permission.
	out=$("$top_builddir/kiln" -c "$work/config.yml" doctor 2>&1)
	case $out in *"ok    github acme: runners readable"*"ok    github acme: workflow runs readable"*) ;;
	*) echo "$out"; echo "FAIL: doctor's github checks"; rc=1 ;; esac
	curl -sf --cacert "$work/fake/ca.pem" -X POST "$url/__faults" -d \
		'{"GET /repos/acme/widgets/actions/runners":[{"status":403,"body":{"message":"Resource not accessible by integration"}}]}' >/dev/null
	out=$("$top_builddir/kiln" -c "$work/config.yml" doctor 2>&1) && { echo "FAIL: doctor passed a 403"; rc=1; }
	case $out in *"FAIL  github acme: listing runners: "*"Resource not accessible by integration"*"fix: give the token the \"Administration: read and write\" permission"*) ;;
	*) echo "$out"; echo "FAIL: doctor's github 403"; rc=1 ;; esac
	[ $rc -eq 0 ] && echo "PASS: kiln doctor's github checks"

	# kiln run serves the entry: the record a killed kiln left is reaped
	# with the one of the status test (their runners deleted on GitHub), and /metrics has the kiln_github_*
	# series. No job is queued, so no runner VM boots (that is the VM test below).
	curl -sf --cacert "$work/fake/ca.pem" -X POST "$url/__seed" -d '{"runs": {}, "runners": {}}' >/dev/null
	printf '{"id": 8, "name": "kiln-aaaaaaaaaaaa", "vm": "gh-8", "created": 1, "job_id": 0}' \
		>"$work/state/github/acme/kiln-aaaaaaaaaaaa.json"
	port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	printf '    webhook_secret: whsec\nlisten_address: 127.0.0.1:%s\n' "$port" >>"$work/config.yml"
	"$top_builddir/kiln" -c "$work/config.yml" run >"$work/run.log" 2>&1 &
	kpid=$!
	for _ in $(seq 100); do
		m=$(curl -s "http://127.0.0.1:$port/metrics")
		case $m in *'kiln_github_runners_deleted_total{entry="acme"} 2'*) break ;; esac
		sleep 0.1
	done
	# Webhooks: signed (a poll now), bad signature (401), replayed (400).
	body='{"action":"queued","workflow_job":{"id":77,"run_id":5,"labels":["self-hosted"],"status":"queued"},"repository":{"full_name":"acme/widgets"}}'
	sig=sha256=$(printf %s "$body" | openssl dgst -sha256 -hmac whsec | sed 's/^.* //')
	hook() { curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/github/webhook" \
		-H "X-GitHub-Event: workflow_job" -H "X-GitHub-Delivery: $1" -H "X-Hub-Signature-256: $2" --data-binary "$body"; }
	got="$(hook d-1 "$sig") $(hook d-2 sha256=0000) $(hook d-1 "$sig")"
	[ "$got" = "200 401 400" ] || { echo "FAIL: webhook statuses '$got', not '200 401 400'"; rc=1; }
	m2=$(curl -s "http://127.0.0.1:$port/metrics")
	case $m2 in *'kiln_github_webhooks_total 1'*) ;; *) echo "FAIL: no webhook counted"; rc=1 ;; esac
	kill -TERM $kpid
	wait $kpid || { echo "FAIL: kiln run exited $?"; rc=1; }
	case $m in *'kiln_github_queued_jobs{entry="acme"}'*'kiln_github_runners_deleted_total{entry="acme"} 2'*) ;;
	*) echo "$m"; echo "FAIL: kiln_github_* series"; rc=1 ;; esac
	[ ! -e "$work/state/github/acme/kiln-aaaaaaaaaaaa.json" ] || { echo "FAIL: the record stayed"; rc=1; }
	grep -q "ghp_fake" "$work/run.log" && { echo "FAIL: the token was logged"; rc=1; }
	[ $rc -eq 0 ] && echo "PASS: kiln run reaps a killed kiln's runners, takes signed webhooks" || cat "$work/run.log"
fi
[ $rc -eq 0 ] || { echo "--- fake.log"; tail -50 "$work/fake.log"; }
[ $rc -eq 0 ] || exit $rc

# Runner VMs, end to end (qemu executor, as tests/exec.sh on this host),
# with tests/github-stub-runner laid over the image's project folder
# (KILN_GITHUB_RUNNER_DIR) as run.sh: it prints the JIT blob's sha256,
# then long-polls the fake for a job, as the runner does GitHub's broker.
# The guest never reaches the host: the fake lives in a namespace behind a
# veth ("outside", 198.18.7.2), which kiln reaches too. Three kiln runs,
# seven VMs:
#  A: three jobs queued at once (concurrent 4) -> three runners, three
#     VMs, no fourth (no double spawn), each job's result read back and
#     logged;
#  B: warm_pool 1: an idle runner VM waits; a queued job is claimed at
#     once (the bench's warm line) and the pool is refilled;
#  C: a job cancelled while its runner's VM boots: the idle runner is
#     deleted, its VM destroyed (the bench's cold line and boot); then
#     kiln SIGKILLed mid-job: the VM dies with it, the restarted kiln
#     reaps the record, deletes the runner, logs the job's result, and
#     nothing is left on the host.
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
vmskip() { echo "SKIP (runner VM): $*"; exit 0; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && vmskip "KILN_SKIP_VM_TESTS is set"
[ "$(id -u)" = 0 ] || vmskip "needs root (taps, nftables, a network namespace)"
for i in kernel debian; do
	[ -f "$images/$i/manifest.json" ] || vmskip "image $i is not built"
done
. "$top_srcdir/tests/vmtest.sh"
cgroups() { find /sys/fs/cgroup -maxdepth 3 -type d -name 'kiln*' 2>/dev/null | sort; }
cgroups_before=$(cgroups)
ip netns add kiln-ghout || { echo "FAIL: ip netns add"; exit 1; }
ip link add kiln-ghout type veth peer name kiln-ghout-ns
ip link set kiln-ghout-ns netns kiln-ghout
ip addr add 198.18.7.1/24 dev kiln-ghout
ip link set kiln-ghout up
ip -n kiln-ghout addr add 198.18.7.2/24 dev kiln-ghout-ns
ip -n kiln-ghout link set kiln-ghout-ns up
ip -n kiln-ghout link set lo up
ip -n kiln-ghout route add default via 198.18.7.1
mkdir "$work/vfake"
ip netns exec kiln-ghout python3 "$top_srcdir/tests/fake-github.py" --dir "$work/vfake" --bind 198.18.7.2 \
	>"$work/vfake.log" 2>&1 &
vpid=$!
for _ in $(seq 200); do [ -f "$work/vfake/url" ] && break; sleep 0.1; done
[ -f "$work/vfake/url" ] || { cat "$work/vfake.log"; echo "FAIL: the namespaced fake GitHub did not start"; exit 1; }
vurl=$(cat "$work/vfake/url")
vcurl() { curl -sf --cacert "$work/vfake/ca.pem" "$@"; }
# st EXPR: a Python expression over the fake's /__state (s), printed.
st() { vcurl "$vurl/__state" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
# until_ok SECONDS COMMAND...: poll until it succeeds; false after SECONDS
# (or when kiln died). COMMAND is run anew each time: a predicate below.
until_ok() {
	local n=$(($1 * 5)); shift
	while [ $n -gt 0 ]; do
		"$@" && return 0
		[ -n "$kpid" ] && ! kill -0 "$kpid" 2>/dev/null && return 1
		sleep 0.2
		n=$((n - 1))
	done
	return 1
}
fail() { echo "FAIL: $*"; rc=1; }
kpid=
spid=
nup=0
# stamp: each line of kiln's output as it arrives, after the monotonic
# time it came (the clock of the fake's *_t): the bench's times of the
# stub's first line, the VM's start and the guest's HELLO, on one clock.
stamp() {
	python3 -c 'import sys, time
for l in iter(sys.stdin.buffer.readline, b""):
	sys.stdout.buffer.write(b"%.6f %s" % (time.monotonic(), l))
	sys.stdout.buffer.flush()'
}
# kiln_up NAME [warm_pool] [concurrent] [idle_timeout] [image]: config NAME.yml, kiln run logging
# to NAME.log; the stub laid over the project folder unless an image is named.
kiln_up() {
	cat >"$work/$1.yml" <<EOC
state_dir: $work/vstate
concurrent: ${3:-2}
defaults:
  executor: qemu
  network: true
github:
  - name: acme
    url: https://github.com/acme/widgets
    api_url: $vurl
    token: ghp_fake
    tls_ca_file: $work/vfake/ca.pem
    labels: [self-hosted, kiln]
    image: ${5:-debian}
    warm_pool: ${2:-0}
    idle_timeout: ${4:-300}
    poll_interval: 1
EOC
	nup=$((nup + 1))
	mkfifo "$work/out.$nup"
	stamp <"$work/out.$nup" >>"$work/$1.log" &
	spid=$!
	KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$images \
		KILN_GITHUB_RUNNER_DIR=$([ -n "${5:-}" ] || echo "$top_srcdir/tests/github-stub-runner") \
		"$top_builddir/kiln" -c "$work/$1.yml" run >"$work/out.$nup" 2>&1 &
	kpid=$!
}
kiln_down() {
	kill -TERM "$kpid"
	wait "$kpid" || fail "kiln run ($1) exited $?"
	kpid=
	until_ok 10 eval '! kill -0 "$spid" 2>/dev/null' || fail "kiln run ($1): its log was not drained"
	vm_glitch_note "$(cat "$work/$1.log")"
}
records() { ls -A "$work/vstate/github/acme" 2>/dev/null; }
no_records() { [ -z "$(records)" ]; }
jits() { st 'len(s["jit_sha256"])'; }
n_claims() { [ "$(st 'len(s["claims"])')" = "$1" ]; }
n_started() { [ "$(st 'len(s["started_t"])')" = "$1" ]; }
n_jits() { [ "$(jits)" = "$1" ]; }
n_runners() { [ "$(st 'sum(len(v) for v in s["runners"].values())')" = "$1" ]; }
job_claimed() { [ "$(st "len([c for c in s['claims'] if c['job'] == $1])")" = 1 ]; }
runner_started() { [ "$(st "'$1' in s['started_t']")" = True ]; }
in_log() { grep -q "$1" "$work/$2.log"; }
vmm_gone() { ! pgrep -f "$work/vstate/jobs" >/dev/null; }
mkdir -p "$work/vstate"
vm_t0=$SECONDS

# --- A: three jobs at once.
vcurl -X POST "$vurl/__seed" -d '{"runs": {"acme/widgets": [{"id": 9, "status": "queued", "jobs": [
	{"id": 901, "status": "queued", "labels": ["self-hosted", "kiln"]},
	{"id": 902, "status": "queued", "labels": ["kiln"]},
	{"id": 903, "status": "queued", "labels": ["self-hosted"]}]}]}}' >/dev/null
vcurl -X POST "$vurl/__config" -d '{"stub_result": "success", "stub_sleep": 2}' >/dev/null
kiln_up a 0 4 # a slot to spare: a double spawn would have one
until_ok 300 n_claims 3 || fail "A: three jobs not claimed: $(st 's["claims"]')"
until_ok 60 no_records || fail "A: records left: $(records)"
sleep 2 # two more rounds: nothing new is spawned
kiln_down a
[ "$(jits)" = 3 ] || fail "A: $(jits) JIT runners made for three jobs, not 3"
[ "$(st 'sorted(c["job"] for c in s["claims"])')" = "[901, 902, 903]" ] || fail "A: claims $(st 's["claims"]')"
[ "$(grep -c 'started in VM' "$work/a.log")" = 3 ] || fail "A: not three runner VMs"
# the three VMs were spawned in one round, before any was retired
[ "$(grep -E 'started in VM|retired' "$work/a.log" | head -3 | grep -c 'started in VM')" = 3 ] ||
	fail "A: the three runners did not run side by side"
for sha in $(st '" ".join(s["jit_sha256"].values())'); do
	grep -q "stub run.sh: user runner, jitconfig sha256 $sha" "$work/a.log" ||
		fail "A: no stub printed the blob's sha256 $sha as user runner"
done
[ "$(grep -c 'job 90[123] of acme/widgets on runner kiln-[0-9a-f]*: success' "$work/a.log")" = 3 ] ||
	fail "A: three job results (success) not logged"
[ "$(grep -c 'runner VM stopped (exit 0' "$work/a.log")" = 3 ] || fail "A: the runner VMs did not stop cleanly"
[ "$(st 'sum(len(v) for v in s["runners"].values())')" = 0 ] || fail "A: runners left on the fake"
[ $rc -eq 0 ] && echo "PASS: three jobs at once: three runner VMs, no double spawn, results from the API"

# --- B: warm pool.
vcurl -X POST "$vurl/__config" -d '{"stub_sleep": 1}' >/dev/null
j0=$(jits)
kiln_up b 1
until_ok 120 n_started $((j0 + 1)) || fail "B: no warm runner started"
sleep 2
[ "$(jits)" = $((j0 + 1)) ] || fail "B: $(($(jits) - j0)) runners for a warm pool of 1 with nothing queued"
vcurl -X POST "$vurl/__queue" -d '{"repo": "acme/widgets", "run": 10, "job": {"id": 920, "labels": ["kiln"]}}' >/dev/null
until_ok 10 job_claimed 920 || fail "B: the warm runner did not take job 920"
warm_ms=$(st '"%.1f" % (1000 * (next(c["t"] for c in s["claims"] if c["job"] == 920) - s["queued_t"]["920"]))')
until_ok 120 n_started $((j0 + 2)) || fail "B: the warm pool was not refilled"
until_ok 30 in_log 'job 920 of acme/widgets on runner kiln-[0-9a-f]*: success' b || fail "B: no result for job 920"
sleep 2
[ "$(jits)" = $((j0 + 2)) ] || fail "B: $(($(jits) - j0)) runners made, not 2 (the warm one, its refill)"
kiln_down b
[ "$(records | wc -l)" = 1 ] || fail "B: not one record (the idle warm runner) after kiln stopped: $(records)"
[ $rc -eq 0 ] && echo "PASS: warm pool: an idle runner VM takes a job in ${warm_ms} ms and is refilled"

# --- C: a job cancelled while its VM boots, then kill -9 mid-job.
vcurl -X POST "$vurl/__config" -d '{"stub_sleep": 60}' >/dev/null
j0=$(jits)
kiln_up c 0 2 10
until_ok 30 no_records || fail "C: B's record was not reaped"
sleep 1 # past the 1 s between mutations that reaping it started: the bench's cold line measures a job alone
vcurl -X POST "$vurl/__queue" -d '{"repo": "acme/widgets", "run": 11, "job": {"id": 930, "labels": ["kiln"]}}' >/dev/null
until_ok 30 n_jits $((j0 + 1)) || fail "C: no runner for job 930"
vcurl -X POST "$vurl/__cancel" -d '{"job": 930}' >/dev/null
r930=$(st '[n for n in s["jit_sha256"]][-1]')
[ "$(st "'$r930' in s['started_t']")" = False ] || fail "C: run.sh started before the cancel (not booting)"
until_ok 60 runner_started "$r930" || fail "C: the cancelled job's runner never started"
until_ok 40 in_log "runner $r930 retired (idle past idle_timeout)" c || fail "C: the idle runner was not retired"
until_ok 20 no_records || fail "C: its record stayed"
[ "$(st "len([r for v in s['runners'].values() for r in v if r['name'] == '$r930'])")" = 0 ] || fail "C: runner $r930 not deleted"
[ "$(st "len([c for c in s['claims'] if c['runner_name'] == '$r930'])")" = 0 ] || fail "C: the cancelled job was claimed"
# The bench's cold line, on the fake's clock: the job first seen queued,
# its runner's JIT config made, and (the stamps of kiln's log) the VM
# started, the agent's HELLO, and run.sh's first line (the stub's echo,
# as its output reaches kiln: the stub's own report to the fake counts
# curl's start and TLS handshake in the guest too).
at() { sed -n "s/^\([0-9.]*\) .*$r930: $1.*/\1/p" "$work/c.log" | head -1; }
t_vmm=$(at 'booting a fresh VM')
t_hello=$(at 'guest ready after')
t_run=$(at 'stub run.sh: started')
[ -n "$t_vmm" ] && [ -n "$t_hello" ] && [ -n "$t_run" ] || fail "C: no VM start, HELLO or run.sh line in the log"
read -r t_seen t_jit t_said < <(st "'%f %f %f' % (s['seen_t']['930'], s['jit_t']['$r930'], s['started_t']['$r930'])")
boot_s=$(sed -n "s/.*$r930: runner VM stopped (exit [0-9]*, prepare [0-9.]* s, boot \([0-9.]*\) s.*/\1/p" "$work/c.log")
[ -n "$boot_s" ] || boot_s=$(sed -n "s/.*$r930: guest ready after \([0-9.]*\) s.*/\1/p" "$work/c.log")
[ $rc -eq 0 ] && echo "PASS: a job cancelled while its VM boots: the idle runner deleted, its VM destroyed"

vcurl -X POST "$vurl/__queue" -d '{"repo": "acme/widgets", "run": 12, "job": {"id": 931, "labels": ["kiln"]}}' >/dev/null
until_ok 120 eval 'grep -q "\"job_id\":931" "$work"/vstate/github/acme/*.json 2>/dev/null' || fail "C: job 931 not claimed and recorded"
r931=$(st 'next(c["runner_name"] for c in s["claims"] if c["job"] == 931)')
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null
kpid=
until_ok 10 vmm_gone || fail "C: the VM outlived a SIGKILLed kiln"
sleep 4 # the fake notices the runner is gone (lost_after 3 s): its job fails, it is offline
kiln_up c
until_ok 30 no_records || fail "C: the killed kiln's record was not reaped"
until_ok 30 n_runners 0 || fail "C: runners left: $(st 's["runners"]')"
until_ok 10 in_log "job 931 of acme/widgets on runner $r931: failure" c || fail "C: no result for job 931"
kiln_down c
grep -q "removing what an interrupted kiln (pid [0-9]*) left of job" "$work/c.log" || fail "C: the job folder was not swept"

# --- R: the github-runner image (images/recipes/github-runner), built by
# `kiln images build --runner-tarball` from a tarball of the stub (GitHub's
# real one cannot be fetched here): user runner, its folder, groups and
# sudo come with the image, nothing is laid over the project folder, and
# the recipe's run.sh wrapper hands the blob on as GitHub's run.sh takes it.
tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$top_srcdir/tests/github-stub-runner" -c . |
	gzip -n >"$work/runner.tgz"
if ! KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$images \
	"$top_builddir/kiln" images build --runner-tarball "$work/runner.tgz" github-runner >"$work/r-build.log" 2>&1; then
	fail "R: kiln images build --runner-tarball github-runner: $(tail -3 "$work/r-build.log")"
else
	vcurl -X POST "$vurl/__config" -d '{"stub_result": "success", "stub_sleep": 1}' >/dev/null
	j0=$(jits)
	kiln_up r 0 2 300 github-runner
	vcurl -X POST "$vurl/__queue" -d '{"repo": "acme/widgets", "run": 13, "job": {"id": 1201, "labels": ["kiln"]}}' >/dev/null
	until_ok 300 job_claimed 1201 || fail "R: job 1201 not claimed"
	until_ok 60 no_records || fail "R: records left: $(records)"
	kiln_down r
	r1201=$(st '[n for n in s["jit_sha256"]][-1]')
	[ "$(jits)" = $((j0 + 1)) ] || fail "R: $(($(jits) - j0)) runners for one job"
	grep -q "$r1201: stub run.sh: user runner, jitconfig sha256 $(st "s['jit_sha256']['$r1201']")" "$work/r.log" ||
		fail "R: the stub did not get the blob intact as user runner"
	grep -q "$r1201: stub run.sh: in /home/runner/actions-runner, home /home/runner, groups runner.*, sudo works" "$work/r.log" ||
		fail "R: not in the image's runner folder, home and groups, or no sudo: $(grep 'stub run.sh: in' "$work/r.log")"
	in_log "job 1201 of acme/widgets on runner $r1201: success" r || fail "R: no result for job 1201"
	in_log "$r1201: runner VM stopped (exit 0" r || fail "R: the runner VM did not stop cleanly"
	[ $rc -eq 0 ] && echo "PASS: the github-runner image from a runner tarball: run.sh as its user runner in its folder, with sudo"
fi

# --- what none of them may leave
for f in a b c r; do
	grep -q "secret-key-material\|ghp_fake\|eyJ" "$work/$f.log" && fail "$f: the blob or token was logged"
done
grep -rq "secret-key-material" "$work/vstate" 2>/dev/null && fail "the blob is in a host file"
left=""
[ -z "$(records)" ] || left="$left record:$(records)"
[ -z "$(ls -A "$work/vstate/jobs" 2>/dev/null)" ] || left="$left job-folder"
pgrep -f "$work/vstate/jobs" >/dev/null && left="$left vmm-process"
# new ones only: kiln run's sweep may remove what another (dead) kiln left
new_cg=$(comm -13 <(echo "$cgroups_before") <(cgroups) | head -3 | tr '\n' ' ')
[ -z "$new_cg" ] || left="$left cgroup:$new_cg"
ip -br link 2>/dev/null | grep -q '^kt[0-9]' && left="$left tap"
[ -z "$left" ] || fail "left behind:$left"
if [ $rc -eq 0 ]; then
	echo "PASS: kiln killed mid-job: the VM died with it, the restarted kiln reaped the record and the runner, nothing left (runner VM tests: $((SECONDS - vm_t0)) s)"
	rtt=$(curl -s -o /dev/null -w '%{time_total}' --cacert "$work/vfake/ca.pem" "$vurl/__state")
	awk -v seen="$t_seen" -v jit="$t_jit" -v vmm="$t_vmm" -v hello="$t_hello" -v run="$t_run" -v said="$t_said" \
		-v b="$boot_s" -v w="$warm_ms" -v r="$rtt" 'BEGIN {
		c = (run - seen) * 1000
		printf "bench: runner VM boot (VMM start -> agent ready, this VM, image debian): %.0f ms\n", b * 1000
		printf "bench: cold: queued job seen -> run.sh started: %.0f ms (boot + %.0f ms; target boot + 300 ms)\n", c, c - b * 1000
		printf "bench: cold, of which: seen -> VM started %.0f ms (the JIT config made at %.0f ms); VM -> agent ready %.0f ms; -> run.sh started (the job script) %.0f ms\n", (vmm - seen) * 1000, (jit - seen) * 1000, (hello - vmm) * 1000, (run - hello) * 1000
		printf "bench: cold as the stub reports it to the fake (its curl and TLS in the guest too): %.0f ms\n", (said - seen) * 1000
		if (b > 0)
			printf "bench: ratio queued->run.sh / boot: %.2f\n", c / (b * 1000)
		printf "bench: warm pool: queued -> job taken by the idle runner: %s ms (the fake GitHub'"'"'s round trip: %.0f ms; target 100 ms + it)\n", w, r * 1000
		cv = (b > 0 && c <= b * 1000 + 300) ? "met" : "NOT met"
		wv = (w != "" && w <= 100 + r * 1000) ? "met" : "NOT met"
		printf "bench: verdict: cold %.0f ms vs this VM'"'"'s boot %.0f ms + 300 ms = %.0f ms: %s; warm %s ms vs 100 ms + %.0f ms: %s\n", c, b * 1000, b * 1000 + 300, cv, w, r * 1000, wv
	}'
else
	for f in a b c r; do echo "--- $f.log"; tail -40 "$work/$f.log" 2>/dev/null; done
	echo "--- vfake.log"; tail -20 "$work/vfake.log"
	vm_glitch_exit
fi
exit $rc
