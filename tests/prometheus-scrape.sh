#!/bin/bash
# Debian's real prometheus scrapes a `kiln run` (against tests/fake-gitlab.py)
# with docs/prometheus/kiln-rules.yml loaded, and the rules evaluate as
# documented: the slot utilisation is recorded (0 of 2 slots busy, then 2
# of 2 while jobs run); two waves of two real jobs in fresh VMs (the tiny
# image, the qemu executor: one succeeds, one exits 3) give the job rules
# real series: job rates by state, the failure ratio, failures by reason,
# the p95 VM boot time and the median job duration (two waves because
# rate() sees no increase in a counter's first sample); the GitLab API
# error ratio is recorded once the fake answers 503s, and three 403s pause
# the runner so that KilnRunnerPaused is pending (it fires after its
# `for: 10m`, beyond a test's time).
# The jobs take the VM test lock (tests/vmtest.sh) while they run, about
# 20 s under TCG; with KILN_SKIP_VM_TESTS set (make distcheck from
# tools/dev), or without the kernel and tiny images or qemu, they are left
# out and the rest runs (about 20 s). Exit 77 (skip) with the reason when prometheus or
# a tool is missing.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
skip() { echo "SKIP: $*"; exit 77; }
command -v prometheus >/dev/null || skip "prometheus is not installed (apt-get install prometheus)"
for tool in python3 openssl curl; do
	command -v "$tool" >/dev/null || skip "$tool is not installed"
done
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
no_jobs=
[ -z "${KILN_SKIP_VM_TESTS:-}" ] || no_jobs="KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for i in kernel tiny; do
	[ -n "$no_jobs" ] || [ -f "$images/$i/manifest.json" ] || no_jobs="image $i is not built (./tools/dev images $i)"
done
[ -n "$no_jobs" ] || command -v qemu-system-x86_64 >/dev/null || no_jobs="qemu-system-x86_64 is not installed"
[ -n "$no_jobs" ] || export KILN_IMAGES_DIR=$images
work=$(mktemp -d /tmp/kiln-prom-test.XXXXXX)
fake=$work/fake
fpid= kpid= ppid_=
fails=0
cleanup() {
	for p in $kpid $ppid_ $fpid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
	rm -rf "$work"
}
trap cleanup EXIT
ok() { echo "ok: [${SECONDS}s] $*"; }
bad() { echo "FAIL: [${SECONDS}s] $*"; fails=$((fails + 1)); }
port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$work/state
export KILN_CACHE_DIR=$work/cache
token=glrt-kiln-prom-0123456789

python3 "$top_srcdir/tests/fake-gitlab.py" --dir "$fake" --runner-token "$token" >"$work/fake.log" 2>&1 &
fpid=$!
for _ in $(seq 100); do [ -f "$fake/url" ] && break; sleep 0.1; done
[ -f "$fake/url" ] || { cat "$work/fake.log"; echo "FAIL: the fake GitLab did not start"; exit 1; }
url=$(cat "$fake/url")
ctl() { curl -sS --cacert "$fake/ca.pem" -X "$1" "$url$2" "${@:3}"; }

mport=$(port)
pport=$(port)
cat >"$work/config.yml" <<EOF
listen_address: 127.0.0.1:$mport
concurrent: 2
check_interval: 1
shutdown_timeout: 3
runners:
  - name: main-runner
    url: $url
    token: $token
    tls_ca_file: $fake/ca.pem
defaults:
  network: false
  image: tiny
  executor: qemu
EOF
"$top_builddir/kiln" -c "$work/config.yml" run >"$work/run.log" 2>&1 &
kpid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null && break; sleep 0.1; done
curl -sf "http://127.0.0.1:$mport/metrics" >/dev/null || { tail "$work/run.log"; echo "FAIL: kiln serves no /metrics"; exit 1; }

cat >"$work/prometheus.yml" <<EOF
global: { scrape_interval: 1s, evaluation_interval: 1s }
rule_files: [ "$top_srcdir/docs/prometheus/kiln-rules.yml" ]
scrape_configs:
  - job_name: kiln
    static_configs: [ { targets: [ "127.0.0.1:$mport" ] } ]
EOF
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
	--web.listen-address="127.0.0.1:$pport" >"$work/prom.log" 2>&1 &
ppid_=$!
# q EXPR: prometheus's value of EXPR now (the first series), "" when none.
q() {
	curl -sf "http://127.0.0.1:$pport/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null
}
# wait_q EXPR WANT SECONDS: until q EXPR prints WANT.
wait_q() {
	local i
	for i in $(seq $(($3 * 2))); do
		[ "$(q "$1")" = "$2" ] && return 0
		sleep 0.5
	done
	return 1
}
# positive EXPR SECONDS: until q EXPR is a number above 0; its value in $v.
positive() {
	local i
	for i in $(seq $(($2 * 2))); do
		v=$(q "$1")
		[ -n "$v" ] && python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)" "$v" && return 0
		sleep 0.5
	done
	return 1
}
wait_q 'up{job="kiln"}' 1 20 && ok "prometheus scrapes kiln (up 1)" || { tail "$work/prom.log"; bad "up{job=\"kiln\"} is $(q 'up{job="kiln"}')"; }
wait_q 'fleet:kiln_slots:utilisation' 0 10 && ok "recorded: fleet:kiln_slots:utilisation 0 (0 of 2 slots)" ||
	bad "fleet:kiln_slots:utilisation is '$(q fleet:kiln_slots:utilisation)'"
wait_q 'count(instance:kiln_slots:utilisation)' 1 10 && ok "recorded: instance:kiln_slots:utilisation" ||
	bad "instance:kiln_slots:utilisation missing"
# Real jobs in VMs, two waves of two (concurrent: 2), each wave one that
# succeeds and one that fails; both sleep so that the waves fill both slots
# for a few scrapes. No Git: GIT_STRATEGY=none.
# enqueue NAME SCRIPT: queue a job (SCRIPT a JSON array); prints its id.
enqueue() {
	python3 - "$@" <<'PY' | ctl POST /__job --data-binary @- | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
import json, sys
name, script = sys.argv[1:3]
p = {
    "job_info": {"name": name, "stage": "test", "project_id": 1, "project_name": "project",
                 "project_full_path": "group/project", "pipeline_id": 7},
    "git_info": {"ref": "main", "sha": "0" * 40, "before_sha": "0" * 40, "ref_type": "branch",
                 "refspecs": [], "depth": 0},
    "runner_info": {"timeout": 300},
    "variables": [{"key": "GIT_STRATEGY", "value": "none", "public": True}],
    "steps": [{"name": "script", "script": json.loads(script), "timeout": 300, "when": "on_success",
               "allow_failure": False}],
    "image": {"name": "tiny"},
    "features": {"trace_sections": True,
                 "failure_reasons": ["script_failure", "runner_system_failure", "job_execution_timeout"]},
}
print(json.dumps({"payload": p}))
PY
}
# finals ID...: until the fake has each job's final update (3 min at most);
# prints each job's final state.
finals() {
	local i
	for i in $(seq 360); do
		ctl GET /__state | python3 -c '
import json, sys
s = json.load(sys.stdin)["jobs"]
f = [s[j]["final"] for j in sys.argv[1:]]
if all(f): print(" ".join(x["state"] for x in f))' "$@" | grep . && return 0
		sleep 0.5
	done
	return 1
}
if [ -n "$no_jobs" ]; then
	echo "note: no jobs run: $no_jobs"
else
	# The VM test lock (tests/vmtest.sh) only while the jobs run, not for
	# the whole test: the jailed unit tests wait for it within their 60 s.
	lock_had=${KILN_VM_LOCK_HELD:-}
	. "$top_srcdir/tests/vmtest.sh"
	t0=$SECONDS
	for wave in 1 2; do
		a=$(enqueue "ok-$wave" '["sleep 3", "echo fine"]')
		b=$(enqueue "fail-$wave" '["sleep 3", "exit 3"]')
		st=$(finals "$a" "$b")
		[ "$st" = "success failed" ] && ok "wave $wave: jobs $a and $b ran in VMs: $st" ||
			{ bad "wave $wave: jobs $a, $b: '$st'"; break; }
		# The next wave's increase must come after a scrape of this one.
		wait_q "sum(kiln_jobs_total{job=\"kiln\"})" $((wave * 2)) 10 ||
			bad "kiln_jobs_total is '$(q "sum(kiln_jobs_total{job=\"kiln\"})")' after wave $wave"
	done
	echo "jobs: $((SECONDS - t0)) s"
	[ -n "$lock_had" ] || { exec 9>&-; unset KILN_VM_LOCK_HELD; }
	for st in success failed; do
		positive "instance_state:kiln_jobs:rate5m{state=\"$st\"}" 10 &&
			ok "recorded: instance_state:kiln_jobs:rate5m{state=\"$st\"} $v" ||
			bad "instance_state:kiln_jobs:rate5m{state=\"$st\"} is '$v'"
	done
	v=$(q 'instance:kiln_job_failures:ratio_rate1h')
	python3 -c "import sys; sys.exit(0 if 0 < float(sys.argv[1]) < 1 else 1)" "$v" 2>/dev/null &&
		ok "recorded: instance:kiln_job_failures:ratio_rate1h $v (one of two jobs fails)" ||
		bad "instance:kiln_job_failures:ratio_rate1h is '$v'"
	positive 'failure_reason:kiln_failed_jobs:rate15m{failure_reason="script_failure"}' 10 &&
		ok "recorded: failure_reason:kiln_failed_jobs:rate15m{failure_reason=\"script_failure\"} $v" ||
		bad "failure_reason:kiln_failed_jobs:rate15m for script_failure is '$v'"
	positive 'instance:kiln_vm_boot_seconds:p95_30m' 10 &&
		ok "recorded: instance:kiln_vm_boot_seconds:p95_30m $v s" || bad "instance:kiln_vm_boot_seconds:p95_30m is '$v'"
	positive 'instance:kiln_job_duration_seconds:p50_1h' 10 &&
		ok "recorded: instance:kiln_job_duration_seconds:p50_1h $v s" ||
		bad "instance:kiln_job_duration_seconds:p50_1h is '$v'"
	wait_q 'max_over_time(fleet:kiln_slots:utilisation[5m])' 1 10 &&
		ok "recorded: fleet:kiln_slots:utilisation reached 1 (2 of 2 slots)" ||
		bad "fleet:kiln_slots:utilisation never reached 1: '$(q 'max_over_time(fleet:kiln_slots:utilisation[5m])')'"
	# Two script failures in 30 min: under KilnSystemFailures' 3, and of
	# another reason.
	[ -z "$(q 'ALERTS{alertname="KilnSystemFailures"}')" ] && ok "KilnSystemFailures not raised by script failures" ||
		bad "KilnSystemFailures raised"
fi

# 503s from GitLab: kiln's API statuses count them; the error ratio is
# recorded above 0. One first, so that prometheus has the status="503"
# series before it grows: rate() sees no increase in a series' first sample.
ctl POST /__faults -d '{"request": [503]}' >/dev/null
wait_q 'count(kiln_api_request_statuses_total{job="kiln",status="503"})' 1 10 || bad "no status=\"503\" series"
sleep 2
ctl POST /__faults -d '{"request": [503, 503, 503]}' >/dev/null
positive 'instance:kiln_api_errors:ratio_rate5m' 20 &&
	ok "recorded: instance:kiln_api_errors:ratio_rate5m $v after 503s" || bad "API error ratio '$v'"
# Three 403s pause the runner: kiln_runner_paused 1 and KilnRunnerPaused pending.
ctl POST /__faults -d '{"request": [403, 403, 403]}' >/dev/null
wait_q 'max(kiln_runner_paused{job="kiln"})' 1 30 && ok "kiln_runner_paused 1 after three 403s" || bad "runner not paused"
wait_q 'count(ALERTS{alertname="KilnRunnerPaused",alertstate="pending",runner="main-runner"})' 1 10 &&
	ok "alert KilnRunnerPaused pending (fires after its for: 10m)" || bad "KilnRunnerPaused not pending"
# kiln status shows the pause that kiln run noted.
"$top_builddir/kiln" -c "$work/config.yml" status | grep -q "main-runner *paused" &&
	ok "kiln status: main-runner paused" || bad "kiln status does not show the pause"
if [ $fails -ne 0 ]; then
	echo "--- kiln run log"; tail -20 "$work/run.log"
	echo "--- prometheus log"; tail -20 "$work/prom.log"
	exit 1
fi
exit 0
