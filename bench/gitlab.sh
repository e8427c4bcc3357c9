#!/bin/bash
# bench/gitlab.sh: `kiln run` as a GitLab runner against tests/fake-gitlab.py
# (real HTTPS on loopback, git over smart HTTP), as the GitLab runner issue
# asks:
#   1. JOBS trivial jobs (default 20) queued back to back, `concurrent: 2`:
#      jobs per minute, first request to last final update;
#   2. the trace delay: every job line carries the guest's wall clock when
#      it was written (kiln-agent sets the guest's clock from the host's),
#      and the fake GitLab notes when each PATCH arrives; the delay of a
#      line is the arrival of the PATCH holding it minus that stamp.  Measured
#      on the trivial jobs and on one job that writes a line every 0.5 s for
#      STREAM_S seconds (default 15) with the server asking for
#      X-GitLab-Trace-Update-Interval: INTERVAL (default 3, GitLab's);
#   3. the idle daemon over IDLE_S seconds (default 60) after the jobs: CPU
#      (utime + stime) and RSS from /proc.
# Targets from the issue: trace delay <= interval + 200 ms; idle CPU < 0.5 %;
# RSS < 16 MiB.  No peer runs here: gitlab-runner is not a Debian package and
# nothing is downloaded, so each number is printed beside its target.
#
# Usage: bench/gitlab.sh [--jobs N] [--idle S] [--interval S] [--stream S]
# The executor is `auto` (kiln-vmm where the host can boot stock guests,
# QEMU otherwise) with the `tiny` image; both must be built.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
build=${KILN_BUILD_DIR:-$top}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
jobs=20 idle=60 interval=3 stream=15

usage() { echo "usage: bench/gitlab.sh [--jobs N] [--idle S] [--interval S] [--stream S]" >&2; exit 2; }
while (($#)); do
	case $1 in
	--jobs | --idle | --interval | --stream)
		(($# >= 2)) && [[ $2 =~ ^[1-9][0-9]{0,4}$ ]] || { echo "gitlab.sh: $1 needs a positive number" >&2; usage; }
		printf -v "${1#--}" %s "$2"
		shift 2
		;;
	-h | --help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "gitlab.sh: unknown argument: $1" >&2; usage ;;
	esac
done
die() { echo "gitlab.sh: $*" >&2; exit 1; }
[ -x "$build/kiln" ] || die "$build/kiln is not built (make)"
for i in kernel tiny; do
	[ -f "$images/$i/manifest.json" ] || die "image $i is not built (./tools/dev images $i)"
done
for t in python3 openssl git curl; do command -v $t >/dev/null || die "$t is not installed"; done

work=$(mktemp -d /tmp/kiln-bench-gitlab.XXXXXX) || die "mktemp failed"
fake=$work/fake
fpid='' kpid=''
cleanup() {
	[ -z "$kpid" ] || { kill -TERM "$kpid" 2>/dev/null; wait "$kpid" 2>/dev/null; }
	[ -z "$fpid" ] || { kill "$fpid" 2>/dev/null; wait "$fpid" 2>/dev/null; }
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export KILN_DATA_DIR=$top KILN_LIBEXEC_DIR=$build KILN_STATE_DIR=$work/state KILN_IMAGES_DIR=$images
export KILN_CACHE_DIR=$work/cache
token=glrt-kiln-bench-0123456789

python3 "$top/tests/fake-gitlab.py" --dir "$fake" --runner-token "$token" >"$work/fake.log" 2>&1 &
fpid=$!
for _ in $(seq 100); do [ -f "$fake/url" ] && break; sleep 0.1; done
[ -f "$fake/url" ] || { cat "$work/fake.log"; die "the fake GitLab did not start"; }
url=$(cat "$fake/url")
sha=$("$top/examples/make-demo-repo.sh" "$fake/repos/group/project.git") || die "making the demo repository failed"
ctl() { local m=$1 p=$2; shift 2; curl -sS --cacert "$fake/ca.pem" -X "$m" "$url$p" "$@"; }

# The guest's wall clock in microseconds, with busybox only (its date has no
# %N; adjtimex without arguments only reads).
stamp='now() { busybox adjtimex | awk '"'"'/tv_sec/ { s = $2 } /tv_usec/ { u = $2 } END { printf "%d.%06d", s, u }'"'"'; }'
# enqueue NAME SCRIPT_JSON INTERVAL
enqueue() {
	python3 - "$sha" "$@" <<'PY' | ctl POST /__job --data-binary @- >/dev/null
import json, sys
sha, name, script, interval = sys.argv[1:5]
p = {
    "job_info": {"name": name, "stage": "test", "project_id": 1, "project_name": "project",
                 "project_full_path": "group/project", "pipeline_id": 1},
    "git_info": {"ref": "main", "sha": sha, "before_sha": "0" * 40, "ref_type": "branch",
                 "refspecs": ["+refs/heads/*:refs/remotes/origin/*"], "depth": 0},
    "runner_info": {"timeout": 600},
    "variables": [],
    "steps": [{"name": "script", "script": json.loads(script), "timeout": 600, "when": "on_success",
               "allow_failure": False}],
    "image": {"name": "tiny"},
    "features": {"trace_sections": True, "failure_reasons": ["script_failure", "runner_system_failure"]},
}
print(json.dumps({"payload": p, "script": {"interval": int(interval)}}))
PY
}
trivial=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1], "echo \"kiln-bench-line $(now)\""]))' "$stamp")
streamer=$(python3 -c 'import json,sys; print(json.dumps([sys.argv[1], "i=0; while [ $i -lt %d ]; do echo \"kiln-bench-line $(now)\"; sleep 0.5; i=$((i + 1)); done" % (2 * int(sys.argv[2]))]))' "$stamp" "$stream")

cat >"$work/config.yml" <<EOF
concurrent: 2
check_interval: 3
runners:
  - name: bench
    url: $url
    token: $token
    tls_ca_file: $fake/ca.pem
    executor: auto
    image: tiny
EOF
"$build/kiln" -c "$work/config.yml" config check >/dev/null || die "the benchmark's configuration is refused"

for i in $(seq "$jobs"); do enqueue "trivial-$i" "$trivial" "$interval" || die "queueing job $i failed"; done
echo "kiln run: $jobs trivial jobs queued (tiny image, concurrent: 2), trace interval $interval s"
"$build/kiln" -c "$work/config.yml" run >"$work/run.log" 2>&1 &
kpid=$!
# done_count: jobs with a final state.
done_count() { ctl GET /__state | python3 -c 'import json,sys; s=json.load(sys.stdin); print(sum(j["status"] in ("success","failed","canceled") for j in s["jobs"].values()))'; }
limit=$((jobs * 60 + 120))
SECONDS=0
while [ "$(done_count)" -lt "$jobs" ]; do
	kill -0 "$kpid" 2>/dev/null || { tail -n 20 "$work/run.log"; die "kiln run exited"; }
	[ $SECONDS -lt $limit ] || { tail -n 20 "$work/run.log"; die "the jobs did not finish within $limit s"; }
	sleep 0.5
done
echo "kiln run: one job writing a line every 0.5 s for $stream s"
enqueue streaming "$streamer" "$interval" || die "queueing the streaming job failed"
while [ "$(done_count)" -lt $((jobs + 1)) ]; do
	kill -0 "$kpid" 2>/dev/null || { tail -n 20 "$work/run.log"; die "kiln run exited"; }
	[ $SECONDS -lt $((limit + stream + 120)) ] || die "the streaming job did not finish"
	sleep 0.5
done

echo "kiln run: idle for $idle s"
read_proc() { # utime+stime ticks, RSS KiB
	awk '{ print $14 + $15 }' "/proc/$kpid/stat"
	awk '/^VmRSS:/ { print $2 }' "/proc/$kpid/status"
}
sleep 2
set -- $(read_proc)
t0_ticks=$1 rss_max=$2 rss_start=$2
t0=$(date +%s.%N)
for _ in $(seq "$idle"); do
	sleep 1
	kill -0 "$kpid" 2>/dev/null || die "kiln run exited while idle"
	r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$kpid/status")
	[ "$r" -gt "$rss_max" ] && rss_max=$r
done
set -- $(read_proc)
t1_ticks=$1 rss_end=$2
t1=$(date +%s.%N)
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$kpid/status")
anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$kpid/status")
file=$(awk '/^RssFile:/ { print $2 }' "/proc/$kpid/status")
threads=$(awk '/^Threads:/ { print $2 }' "/proc/$kpid/status")
requests_idle=$(ctl GET /__state | python3 -c 'import json,sys,time; s=json.load(sys.stdin); t0=float(sys.argv[1]); print(sum(r["path"].endswith("/jobs/request") and r["t"] >= t0 for r in s["requests"]))' "$t0")
kill -TERM "$kpid"
wait "$kpid"
krc=$?
kpid=''
[ $krc = 0 ] || echo "note: kiln run exited with status $krc after SIGTERM"

ctl GET /__state >"$work/state.json" || die "reading the fake's state failed"
mkdir -p "$work/traces"
for id in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["jobs"]))' "$work/state.json"); do
	ctl GET "/__trace/$id" >"$work/traces/$id"
done
python3 - "$work" "$jobs" "$interval" "$idle" "$t0" "$t1" "$t0_ticks" "$t1_ticks" "$(getconf CLK_TCK)" \
	"$rss_start" "$rss_max" "$rss_end" "$hwm" "$threads" "$requests_idle" "$anon" "$file" <<'PY'
import json, os, re, statistics, sys
work, jobs, interval, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
t0, t1, k0, k1, hz = float(sys.argv[5]), float(sys.argv[6]), int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
rss_start, rss_max, rss_end, hwm, threads, reqs, anon, filebacked = (int(x) for x in sys.argv[10:18])
s = json.load(open(os.path.join(work, "state.json")))
line = re.compile(rb"kiln-bench-line (\d+\.\d+)")

def delays(job):
    t = open(os.path.join(work, "traces", str(job["id"])), "rb").read()
    ok = [p for p in job["patches"] if p["status"] == 202]
    out = []
    for m in line.finditer(t):
        # the PATCH whose range holds the line's last byte
        end = m.end() - 1
        got = [p["t"] for p in ok if p["start"] <= end <= p["end"]]
        if got:
            out.append(min(got) - float(m.group(1)))
    return out

trivial = [j for j in s["jobs"].values() if j["payload"]["job_info"]["name"].startswith("trivial-")]
stream = [j for j in s["jobs"].values() if j["payload"]["job_info"]["name"] == "streaming"]
bad = [j["id"] for j in s["jobs"].values() if j["status"] != "success"]
first = min(r["t"] for r in s["requests"] if r["path"].endswith("/jobs/request"))
# a job's final update is the last PUT on its path
ids = {"/api/v4/jobs/%s" % j["id"] for j in trivial}
last_trivial = max(r["t"] for r in s["requests"] if r["method"] == "PUT" and r["path"] in ids)
span = last_trivial - first
d_triv = [d for j in trivial for d in delays(j)]
d_stream = [d for j in stream for d in delays(j)]
cpu = (k1 - k0) / hz / (t1 - t0) * 100
target_delay = interval + 0.2

def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")

print()
print("%-44s %12s %12s %8s" % ("kiln run against the fake GitLab", "measured", "target", "ratio"))
print("%-44s %12s" % ("jobs (%d trivial, concurrent 2)" % jobs, "%d ok" % sum(j["status"] == "success" for j in trivial)))
print("%-44s %11.1f  %12s %8s" % ("jobs per minute (first request..last final)", jobs / span * 60, "-", ""))
print("%-44s %11.2fs %12s %8s" % ("  seconds per job per slot", span * 2 / jobs, "", ""))
for name, d in (("trace delay, trivial jobs: median", d_triv), ("trace delay, streaming job: median", d_stream)):
    if d:
        med = statistics.median(d)
        print("%-44s %11.3fs %11.3fs %8.2f" % (name, med, target_delay, med / target_delay))
        print("%-44s %11.3fs %12s %8s" % ("  p90 (%d lines)" % len(d), pct(d, 0.9), "", ""))
    else:
        print("%-44s %12s" % (name, "no lines"))
print("%-44s %11.3f%% %11.1f%% %8.2f" % ("idle CPU over %d s" % idle, cpu, 0.5, cpu / 0.5))
print("%-44s %9.1fMiB %9.1fMiB %8.2f" % ("idle RSS (max over the window)", rss_max / 1024, 16, rss_max / 1024 / 16))
print("%-44s %12s" % ("  anonymous + file-backed (libraries) at end", "%.1f+%.1fMiB" % (anon / 1024, filebacked / 1024)))
print("%-44s %9.1fMiB %12s %8s" % ("  RSS at start / end of the window", rss_start / 1024, "%.1fMiB" % (rss_end / 1024), ""))
print("%-44s %9.1fMiB %12s %8s" % ("  peak RSS (VmHWM, while running jobs)", hwm / 1024, "", ""))
print("%-44s %12d %12s %8s" % ("  job requests while idle", reqs, "", ""))
print("%-44s %12d %12s %8s" % ("  threads while idle", threads, "", ""))
if bad:
    print("FAILED jobs: %s" % bad)
    sys.exit(1)
PY
