#!/bin/bash
# kiln as a GitLab runner, end to end: `kiln register/verify/list/unregister`
# and `kiln run` against tests/fake-gitlab.py (real HTTPS with a CA made for
# the test, git over smart HTTP), jobs in fresh VMs with the qemu executor.
# Checks the trace bytes and offsets, masking, sections, final states and
# failure reasons, 416 recovery, the 202/412 final update loop, 5xx and
# dropped-connection retries, cancel (canceling: after_script runs;
# canceled: the VM is killed), SIGKILL and restart (the job is reported
# failed), SIGTERM, SIGHUP, SIGQUIT, 403 pauses, payload records, replay,
# token renewal, Git sources (a relative submodule, LFS, a get-sources hook).
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
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed"

. "$top_srcdir/tests/vmtest.sh"
work=$(mktemp -d /tmp/kiln-gitlab-test.XXXXXX)
state=$work/state
cfg=$work/config.yml
fake=$work/fake
fails=0
fpid=
kpid=
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
export KILN_CACHE_DIR=$work/cache
kiln=$top_builddir/kiln
token=glrt-kiln-test-0123456789

cleanup() {
	[ -n "$kpid" ] && kill -KILL "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null
	[ -n "$fpid" ] && kill "$fpid" 2>/dev/null && wait "$fpid" 2>/dev/null
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

# --- the fake GitLab ------------------------------------------------------
python3 "$top_srcdir/tests/fake-gitlab.py" --dir "$fake" --runner-token "$token" >"$work/fake.log" 2>&1 &
fpid=$!
for _ in $(seq 100); do [ -f "$fake/url" ] && break; sleep 0.1; done
[ -f "$fake/url" ] || { cat "$work/fake.log"; echo "FAIL: the fake GitLab did not start"; exit 1; }
url=$(cat "$fake/url")
ca=$fake/ca.pem
sha=$("$top_srcdir/examples/make-demo-repo.sh" "$fake/repos/group/project.git") || { echo "FAIL: demo repo"; exit 1; }

ctl() { # ctl METHOD PATH [curl args]
	local m=$1 p=$2
	shift 2
	curl -sS --cacert "$ca" -X "$m" "$url$p" "$@"
}
# st EXPR: a Python expression over the fake's state s (and the job j when $J is set).
st() {
	ctl GET /__state | J=${J:-} python3 -c '
import json, os, re, sys
s = json.load(sys.stdin)
j = s["jobs"].get(os.environ["J"]) if os.environ["J"] else None
print(eval(sys.argv[1]))' "$1"
}
# wait_for EXPR SECONDS: until st EXPR prints True.
wait_for() {
	local i
	for i in $(seq $(($2 * 5))); do
		[ "$(st "$1" 2>/dev/null)" = True ] && return 0
		sleep 0.2
	done
	return 1
}
# enqueue NAME SCRIPT AFTER FAULTS [TIMEOUT [EXTRA]]: queue a job (JSON arrays
# for the scripts, a JSON object for the fake's per-job script, EXTRA a JSON
# object merged into the payload); prints its id. JOB_REPO and JOB_SHA pick
# another repository and commit.
enqueue() {
	python3 - "$sha" "$@" <<'PY' | ctl POST /__job --data-binary @- | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
import json, os, sys
sha, name, script, after, faults = sys.argv[1:6]
sha = os.environ.get("JOB_SHA") or sha
timeout = int(sys.argv[6]) if len(sys.argv) > 6 else 600
extra = json.loads(sys.argv[7]) if len(sys.argv) > 7 else {}
p = {
    "job_info": {"name": name, "stage": "test", "project_id": 1, "project_name": "project",
                 "project_full_path": "group/project", "pipeline_id": 7},
    "git_info": {"ref": "main", "sha": sha, "before_sha": "0" * 40, "ref_type": "branch",
                 "refspecs": ["+refs/heads/*:refs/remotes/origin/*"], "depth": 0},
    "runner_info": {"timeout": timeout},
    "variables": [{"key": "SECRET_VALUE", "value": "s3cr3t-value-XYZ", "masked": True, "public": False},
                  {"key": "PLAIN", "value": "hello-plain", "public": True},
                  {"key": "CONFIG_FILE", "value": "file-secret-content", "file": True}],
    "steps": [{"name": "script", "script": json.loads(script), "timeout": timeout, "when": "on_success",
               "allow_failure": False},
              {"name": "after_script", "script": json.loads(after), "timeout": 60, "when": "always",
               "allow_failure": True}],
    "image": {"name": "tiny"},
    "features": {"trace_sections": True,
                 "failure_reasons": ["script_failure", "runner_system_failure", "job_execution_timeout"],
                 "token_mask_prefixes": ["glcbt-", "mytok-"]},
}
p.update(extra)
print(json.dumps({"payload": p, "script": json.loads(faults), "repo": os.environ.get("JOB_REPO", "group/project")}))
PY
}
trace() { ctl GET "/__trace/$1"; }
start_kiln() {
	"$kiln" -c "$cfg" run >>"$work/run.log" 2>&1 &
	kpid=$!
}
stop_kiln() { # stop_kiln SIGNAL: signal kiln, wait for it; its exit status in $kst
	kill -"$1" "$kpid"
	for _ in $(seq 300); do kill -0 "$kpid" 2>/dev/null || break; sleep 0.1; done
	wait "$kpid"
	kst=$?
	kpid=
}

# --- register, list, verify ---------------------------------------------------
out=$("$kiln" -c "$cfg" register --url "$url" --token "$token" --tls-ca-file "$ca" --name main-runner --executor qemu 2>&1)
check "register: $out" grep -q "registered runner main-runner" <<<"$out"
sysid=$(cat "$work/.runner_system_id" 2>/dev/null)
check "system_id $sysid kept beside the config" grep -Eq '^[sr]_[0-9a-zA-Z]{12}$' <<<"$sysid"
check "verify carried the system_id and info" test "$(st "s['verify'][-1]['system_id'] + '/' + s['verify'][-1]['info']['name']")" = "$sysid/kiln"
check "list" grep -q "main-runner.*executor=qemu.*url=$url" <<<"$("$kiln" -c "$cfg" list)"
check "verify" grep -q "main-runner: $url: valid" <<<"$("$kiln" -c "$cfg" verify)"
out=$("$kiln" -c "$cfg" register --url "$url" --token glrt-not-known --tls-ca-file "$ca" --name bad 2>&1)
check "register with a refused token fails: $out" grep -q "refused (403" <<<"$out"
mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >>"$cfg" <<EOF
listen_address: 127.0.0.1:$mport
concurrent: 2
check_interval: 1
shutdown_timeout: 3
defaults:
  network: false
  image: tiny
  executor: qemu
EOF

# --- a job with every transport fault -------------------------------------------
ctl POST /__faults -d '{"request": [503, {"drop": true}]}' >/dev/null
a=$(enqueue hello \
	'["echo plain=$PLAIN", "printf \"s3cr3t-\"; sleep 0.5; printf \"value-XYZ\\n\"", "echo var=$SECRET_VALUE", "echo pat=glpat-abcDEF123 job=mytok-zz9", "echo file=$(cat $CONFIG_FILE)", "sleep 2", "echo done-A"]' \
	'["echo after_script ran: $CI_JOB_STATUS"]' \
	'{"ack": [502, {"status": 200, "delay": 1.5}], "patch": [500, {"discard": true}], "final": [202, 412, 200]}')
start_kiln
J=$a
if wait_for "j['final'] is not None" 180; then
	ok "job A ($a): final update received"
else
	bad "job A: no final update"; tail -20 "$work/run.log"
fi
check "job A: success" test "$(J=$a st "j['status'] + '/' + j['final']['state']")" = success/success
check "job A: checksum and size match the bytes GitLab holds" test "$(J=$a st "j['final']['checksum_ok'] and j['final']['bytesize_ok']")" = True
tr=$(trace "$a")
check "job A: log has the job's output" grep -q "plain=hello-plain" <<<"$tr"
check "job A: log has after_script" grep -q "after_script ran: success" <<<"$tr"
check "job A: a secret split across two writes is masked" grep -qx '\[MASKED\]' <<<"$tr"
check "job A: masked variable masked" grep -q 'var=\[MASKED\]' <<<"$tr"
check "job A: token prefixes masked" grep -q 'pat=glpat-\[MASKED\] job=mytok-\[MASKED\]' <<<"$tr"
check "job A: no secret in the log" bash -c '! grep -q "s3cr3t-value-XYZ\|abcDEF123\|zz9" <<<"$1"' _ "$tr"
check "job A: file variable's content is its own" grep -q "file=file-secret-content" <<<"$tr"
for s in get_sources prepare_executor step_script after_script; do
	check "job A: section $s" test "$(J=$a st "bool(re.search(r'\x1b\[0Ksection_start:\d+:$s\r\x1b\[0K', j['trace']) and re.search(r'\x1b\[0Ksection_end:\d+:$s\r\x1b\[0K', j['trace']))")" = True
done
check "job A: 'Job succeeded'" grep -q "Job succeeded" <<<"$tr"
check "job A: 503 and a dropped connection on /jobs/request were retried" \
	test "$(st "[r['status'] for r in s['requests'] if r['path'] == '/api/v4/jobs/request'][:3]")" = "[503, 'dropped', 201]"
check "job A: the acknowledgement retried after a 502 (then a slow reply)" test "$(J=$a st "[u['state'] for u in j['updates']][:2]")" = "['running', 'running']"
# PATCH: a 500 (retried), then a write GitLab lost: the next PATCH gets 416
# and kiln resends from the Range GitLab gave.
check "job A: 416 recovery" test "$(J=$a st "any(p['status'] == 416 and j['patches'][i + 1]['status'] == 202 and j['patches'][i + 1]['start'] == j['patches'][i - 1]['start'] for i, p in enumerate(j['patches'][:-1]))")" = True
check "job A: 202 then 412 (trace reset, sent again from 0) then 200" \
	test "$(J=$a st "[u['state'] for u in j['updates']].count('success') == 3 and j.get('trace_resets') == 1")" = True
check "job A: PATCH ranges as GitLab wants them" test "$(J=$a st "all(p['end'] == p['start'] + p['len'] - 1 for p in j['patches'])")" = True
check "job A: features advertised" test "$(st "(lambda f: f['cancel_gracefully'] and f['artifacts'] and f['services'])(s['job_requests'][-1]['info']['features'])")" = True
check "job A: last_update sent back" test "$(st "bool(s['job_requests'][-1].get('last_update'))")" = True
check "job A: User-Agent" test "$(st "s['job_requests'][-1]['user_agent']")" = "kiln $("$kiln" -V | cut -d' ' -f2)"
pl=$state/payloads/$a.json
check "job A: payload recorded" test -f "$pl"
check "job A: payload scrubbed" bash -c '! grep -q "s3cr3t-value-XYZ\|$2\|file-secret\|gitlab-ci-token:" "$1"' _ "$pl" "$(J=$a st "j['token']")"

# --- failure reasons: exit code, timeout (two at once: concurrent 2) ---------------
# Long polling as Workhorse does it: a request waits up to 3 s for a job.
ctl POST /__config -d '{"long_poll": 3}' >/dev/null
sleep 1.5
b=$(enqueue fail '["echo about to fail", "exit 3", "echo never printed"]' '["echo after: $CI_JOB_STATUS"]' '{}')
c=$(enqueue slow '["echo sleeping past the 5 s timeout", "sleep 60"]' '["echo after timeout"]' '{}' 5)
J=$b wait_for "j['final'] is not None" 180 || bad "job B: no final update"
J=$c wait_for "j['final'] is not None" 180 || bad "job C: no final update"
check "job B: failed, script_failure, exit code 3" test "$(J=$b st "'%s/%s/%s' % (j['final']['state'], j['final']['failure_reason'], j['final']['exit_code'])")" = failed/script_failure/3
check "job B: after_script sees failed" grep -q "after: failed" <<<"$(trace "$b")"
check "job B: 'ERROR: Job failed: exit code 3'" grep -q "ERROR: Job failed: exit code 3" <<<"$(trace "$b")"
check "job C: failed, job_execution_timeout" test "$(J=$c st "j['final']['state'] + '/' + j['final']['failure_reason']")" = failed/job_execution_timeout
check "job C: timeout message" grep -q "execution took longer than 5 seconds" <<<"$(trace "$c")"
ctl POST /__config -d '{"long_poll": 0}' >/dev/null

# --- transfer and trace (issue #15): a proxy's 404 to a PATCH, 5xx at the job's end,
# a payload too large ---------------------------------------------------------------
f4=$(enqueue proxy404 '["echo before-the-404", "sleep 2", "echo after-the-404"]' '[]' '{"patch": [404]}')
# The mark is stored within an interval (3 s at first); the PATCHes of the 12 s after it
# fail, and the job ends inside them: its final flush meets the 502s.
fe=$(enqueue tail '["echo mark-the-end", "sleep 5", "echo the-tail-of-the-log"]' '[]' \
	'{"patch_fail_after": {"mark": "mark-the-end", "seconds": 12, "status": 502}}')
J=$f4 wait_for "j['final'] is not None" 180 || bad "job proxy404: no final update"
J=$fe wait_for "j['final'] is not None" 180 || bad "job tail: no final update"
check "job proxy404: a PATCH answered 404 did not stop it" \
	test "$(J=$f4 st "'%s/%s/%s' % (j['patches'][0]['status'], j['final']['state'], j['final']['checksum_ok'])")" = 404/success/True
check "job proxy404: its whole log" grep -q "after-the-404" <<<"$(trace "$f4")"
check "job tail: PATCHes failed at its end" test "$(J=$fe st "sum(p['status'] == 502 for p in j['patches']) >= 5")" = True
check "job tail: no final PUT until GitLab had the tail of the log" \
	test "$(J=$fe st "'%s/%s/%s' % (j['final']['state'], j['final']['checksum_ok'], j['final']['bytesize_ok'])")" = success/True/True
check "job tail: the tail is there" grep -q "the-tail-of-the-log" <<<"$(trace "$fe")"
big=$(enqueue huge '["echo never runs"]' '[]' '{"pad_payload": 17825792}')
J=$big wait_for "j['final'] is not None" 120 || bad "job huge: no final update"
check "job huge: a 17 MiB payload is reported failed, runner_system_failure" \
	test "$(J=$big st "j['final']['state'] + '/' + j['final']['failure_reason']")" = failed/runner_system_failure
check "job huge: its log says why" grep -q "larger than 16 MiB" <<<"$(trace "$big")"

# --- cancel: canceling (after_script runs), canceled (the VM is killed) -----------------
tick='for i in $(seq 120); do echo tick $i; sleep 0.5; done'
d=$(enqueue graceful "[\"echo ready-to-cancel\", \"$tick\"]" '["echo after_script after cancel: $CI_JOB_STATUS"]' '{"cancel_on": "ready-to-cancel", "cancel_status": "canceling"}')
e=$(enqueue hard "[\"echo ready-to-kill\", \"$tick\"]" '["echo after_script after kill"]' '{"cancel_on": "ready-to-kill", "cancel_status": "canceled"}')
t0=$(date +%s)
J=$d wait_for "j['final'] is not None" 180 || bad "job D: no final update"
J=$e wait_for "j['final'] is not None" 180 || bad "job E: no final update"
t1=$(date +%s)
check "job D: canceled on GitLab, reported failed" test "$(J=$d st "j['status'] + '/' + j['final']['state']")" = canceled/failed
check "job D: after_script ran" grep -q "after_script after cancel: canceled" <<<"$(trace "$d")"
check "job D: the script stopped" bash -c '! grep -q "tick 120" <<<"$1"' _ "$(trace "$d")"
check "job E: canceled on GitLab" test "$(J=$e st "j['status']")" = canceled
check "job E: no after_script" bash -c '! grep -q "after_script after kill" <<<"$1"' _ "$(trace "$e")"
check "jobs D and E: over in $((t1 - t0)) s (the scripts would take 60)" test $((t1 - t0)) -lt 55
check "jobs D and E: no VM left" bash -c '! pgrep -f "$1/jobs" >/dev/null' _ "$state"

# --- artifacts, dependencies, cache ---------------------------------------------------
art='{"artifacts": [{"name": "build-out", "paths": ["out/"], "exclude": ["out/*.tmp"], "when": "on_success",
	"expire_in": "1 week", "artifact_type": "archive", "artifact_format": "zip"}],
	"cache": [{"key": "deps-1", "paths": ["vendor/"], "policy": "pull-push", "when": "on_success"}]}'
pj=$(enqueue producer '["mkdir -p out vendor", "echo result-from-P > out/result.txt", "echo tmp > out/skip.tmp", "echo cached-lib > vendor/lib.txt"]' 	'[]' '{"artifacts": [503], "artifacts_redirect": true}' 600 "$art")
J=$pj wait_for "j['final'] is not None" 180 || bad "job P: no final update"
check "job P: success" test "$(J=$pj st "j['final']['state']")" = success
check "job P: artifacts uploaded (zip, archive, expire_in, excludes applied) after a 503" \
	test "$(J=$pj st "(lambda a: (a['filename'], a['query'], a['names'], a['zip_ok']))(j['artifacts'][0])")" = \
	"('build-out.zip', {'artifact_format': 'zip', 'artifact_type': 'archive', 'expire_in': '1 week'}, ['out/', 'out/result.txt'], True)"
check "job P: the upload was retried" test "$(st "[r['status'] for r in s['requests'] if r['path'] == '/api/v4/jobs/$pj/artifacts']")" = "[503, 201]"
check "job P: cache saved" test -s "$KILN_CACHE_DIR/group/project/deps-1-non_protected/cache.zip"
check "job P: sections archive_cache, upload_artifacts_on_success" test "$(J=$pj st "'section_start' in j['trace'] and ':archive_cache\r' in j['trace'] and ':upload_artifacts_on_success\r' in j['trace']")" = True
# artifacts:untracked: what git does not track (ignored files too), minus
# exclude; a junit report as gzip members.
uart='{"artifacts": [{"name": "untracked", "untracked": true, "exclude": ["gen/*.tmp"], "when": "on_success",
	"artifact_type": "archive", "artifact_format": "zip"},
	{"name": "junit.xml", "paths": ["rspec.xml"], "when": "always", "artifact_type": "junit", "artifact_format": "gzip"}]}'
uj=$(enqueue untracked '["mkdir -p gen", "echo g > gen/out.bin", "echo t > gen/skip.tmp", "echo u > notes.txt", "echo \"<testsuite/>\" > rspec.xml"]' '[]' '{}' 600 "$uart")
J=$uj wait_for "j['final'] is not None" 180 || bad "job U: no final update"
check "job U: artifacts:untracked uploads the files git does not track" \
	test "$(J=$uj st "j['final']['state'] + ' ' + str(j['artifacts'][0].get('names') if j.get('artifacts') else None)")" = \
	"success ['gen/', 'gen/out.bin', 'notes.txt', 'rspec.xml']"
check "job U: the junit report went up as gzip members" \
	test "$(J=$uj st "(lambda a: (a['filename'], a['query']['artifact_type'], a['query']['artifact_format'], a['members']))(j['artifacts'][1])")" = \
	"('junit.xml.gz', 'junit', 'gzip', [['rspec.xml', '<testsuite/>\\n']])"
ptok=$(J=$pj st "j['token']")
dep="{\"dependencies\": [{\"id\": $pj, \"name\": \"producer\", \"token\": \"$ptok\", \"artifacts_file\": {\"filename\": \"build-out.zip\", \"size\": 100}}],
	\"cache\": [{\"key\": \"deps-1\", \"paths\": [\"vendor/\"], \"policy\": \"pull\"}]}"
q=$(enqueue consumer '["cat out/result.txt", "cat vendor/lib.txt", "test ! -e out/skip.tmp"]' '[]' '{}' 600 "$dep")
nodep="{\"dependencies\": [{\"id\": $b, \"name\": \"fail\", \"token\": \"$ptok\", \"artifacts_file\": {\"filename\": \"x.zip\", \"size\": 1}}]}"
q2=$(enqueue missing '["echo never runs"]' '[]' '{}' 600 "$nodep")
J=$q wait_for "j['final'] is not None" 180 || bad "job Q: no final update"
J=$q2 wait_for "j['final'] is not None" 60 || bad "job Q2: no final update"
check "job Q: success" test "$(J=$q st "j['final']['state']")" = success
check "job Q: the dependency's artifacts are in its checkout" grep -q "result-from-P" <<<"$(trace "$q")"
check "job Q: the cache is restored" grep -q "cached-lib" <<<"$(trace "$q")"
check "job Q: sections restore_cache, download_artifacts" test "$(J=$q st "':restore_cache\r' in j['trace'] and ':download_artifacts\r' in j['trace']")" = True
check "job Q: the redirect to object storage went without the job token" \
	test "$(J=$pj st "[g['job_token_sent'] for g in j['object_gets']]")" = "[False]"
check "job Q2: a dependency without artifacts fails the job before any VM" \
	test "$(J=$q2 st "j['final']['state'] + '/' + j['final']['failure_reason'] + '/' + str(':prepare_executor' not in j['trace'])")" = failed/runner_system_failure/True

# --- sources: a relative submodule and an LFS object behind the job token, a hook ----------
(
	set -e
	export GIT_AUTHOR_NAME=kiln GIT_AUTHOR_EMAIL=kiln@test.invalid GIT_COMMITTER_NAME=kiln GIT_COMMITTER_EMAIL=kiln@test.invalid
	cd "$work"
	mkdir -p "$fake/lfs"
	git init -q -b main libw && (cd libw && echo lib-content >lib.txt && git add . && git commit -q -m lib)
	git clone -q --bare libw "$fake/repos/group/lib.git"
	head -c 20000 /dev/urandom >big
	oid=$(sha256sum big | cut -c1-64)
	cp big "$fake/lfs/$oid"
	git init -q -b main lfsw && cd lfsw
	git remote add origin "$fake/repos/group/lfsproj.git"
	echo '*.bin filter=lfs diff=lfs merge=lfs -text' >.gitattributes
	printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize 20000\n' "$oid" >big.bin
	git add . && git commit -q -m lfs
	git -c protocol.file.allow=always submodule -q add ../lib.git libs/lib && git commit -q -m sub
	git clone -q --bare . "$fake/repos/group/lfsproj.git"
	git rev-parse HEAD >../lfsproj.sha
) >"$work/lfsrepo.log" 2>&1 || { cat "$work/lfsrepo.log"; bad "the LFS test repository"; }
gsrc='{"variables": [{"key": "GIT_SUBMODULE_STRATEGY", "value": "recursive", "public": true}],
	"hooks": [{"name": "pre_get_sources_script", "script": ["echo pre-hook-ran"]}]}'
gs=$(JOB_REPO=group/lfsproj JOB_SHA=$(cat "$work/lfsproj.sha") enqueue sources \
	'["echo size=$(wc -c < big.bin | tr -d \" \") pointer=$(head -c 40 big.bin | grep -c git-lfs)", "echo sub=$(cat libs/lib/lib.txt)"]' \
	'[]' '{}' 600 "$gsrc")
J=$gs wait_for "j['final'] is not None" 180 || bad "job S: no final update"
tr=$(trace "$gs")
check "job S: success" test "$(J=$gs st "j['final']['state']")" = success
check "job S: the submodule ../lib.git came with the job token" grep -q "sub=lib-content" <<<"$tr"
check "job S: the LFS object replaced its pointer" grep -q "size=20000 pointer=0" <<<"$tr"
check "job S: LFS batch and download through the fake GitLab" \
	test "$(st "any(r.get('repo') == 'group/lfsproj' and r.get('operation') == 'download' for r in s['lfs']) and any('get' in r for r in s['lfs'])")" = True
check "job S: pre_get_sources_script ran in its section" \
	test "$(J=$gs st "'pre-hook-ran' in j['trace'] and ':step_pre_get_sources_script\r' in j['trace']")" = True

# --- /metrics and /healthz on listen_address -----------------------------------------------
m=$(curl -sS "http://127.0.0.1:$mport/metrics")
check "metrics: /healthz" test "$(curl -sS "http://127.0.0.1:$mport/healthz")" = ok
check "metrics: version" grep -q '^kiln_version_info{version="[0-9.]*"} 1$' <<<"$m"
check "metrics: successful jobs counted" grep -q '^kiln_jobs_total{runner="main-runner",state="success"} [3-9]$' <<<"$m"
check "metrics: failure reasons counted" grep -q '^kiln_failed_jobs_total{failure_reason="job_execution_timeout"} 1$' <<<"$m"
check "metrics: the 416 is in the API statuses" grep -q '^kiln_api_request_statuses_total{endpoint="/jobs/:id/trace",method="PATCH",status="416"} 1$' <<<"$m"
check "metrics: retries counted" grep -q '^kiln_api_request_retries_total{endpoint="/jobs/request"} [1-9]' <<<"$m"
check "metrics: no job running now" grep -q '^kiln_jobs{runner="main-runner"} 0$' <<<"$m"
check "metrics: job durations as a histogram" grep -q '^kiln_job_duration_seconds_bucket{le="+Inf"} [1-9]' <<<"$m"
check "metrics: VM boot durations as a histogram" grep -q '^# TYPE kiln_vm_boot_seconds histogram$' <<<"$m"

# --- job semantics: variable expansion, CI_DEBUG_TRACE, cache keys, runner_unsupported ---
vx='{"variables": [{"key": "BUILD", "value": "$CI_PROJECT_DIR/build"}, {"key": "CF", "value": "cf", "file": true},
	{"key": "CF_AT", "value": "at:$CF"}, {"key": "1DIGIT", "value": "d"}, {"key": "RAWV", "value": "$HOME", "raw": true},
	{"key": "CI_DEBUG_TRACE", "value": "true"}],
	"cache": [{"key": "deps/feature/../x", "paths": ["vendor/"], "policy": "pull-push", "when": "on_success"}]}'
v=$(enqueue semantics '["echo build=$BUILD cf=$CF_AT raw=$RAWV", "mkdir -p vendor", "echo v > vendor/v.txt"]' '[]' '{}' 600 "$vx")
sx='{"services": [{"name": "postgres:16", "executor_opts": {"docker": {"user": "1"}}}], "features": {"trace_sections": true,
	"failure_reasons": ["script_failure", "runner_system_failure", "job_execution_timeout", "runner_unsupported"]}}'
s_=$(enqueue services '["echo never runs"]' '[]' '{}' 600 "$sx")
J=$v wait_for "j['final'] is not None" 180 || bad "job V: no final update"
J=$s_ wait_for "j['final'] is not None" 60 || bad "job S: no final update"
check "job V: success" test "$(J=$v st "j['final']['state']")" = success
check "job V: values expanded as gitlab-runner does (file variable as its path, raw kept)" \
	grep -q 'build=/builds/group/project/build cf=at:/builds/group/project.tmp/CF raw=\$HOME' <<<"$(trace "$v")"
check "job V: CI_DEBUG_TRACE warns" grep -q "CI_DEBUG_TRACE is enabled" <<<"$(trace "$v")"
check "job V: its PATCHes carry debug_trace=true" \
	test "$(st "sorted(set(r['query'] for r in s['requests'] if r['method'] == 'PATCH' and r['path'] == '/api/v4/jobs/$v/trace'))")" = "['debug_trace=true']"
check "job V: a key with '/' and '..' is cached in one escaped folder" \
	test -s "$KILN_CACHE_DIR/group/project/deps%2Ffeature%2F..%2Fx-non_protected/cache.zip"
check "job V: nothing written outside it" test ! -e "$KILN_CACHE_DIR/group/project/deps"
check "job S: services:docker: options fail runner_unsupported before any VM, saying why" \
	test "$(J=$s_ st "j['final']['state'] + '/' + j['final']['failure_reason'] + '/' + str('this job sets services:docker:' in j['trace'] and ':prepare_executor' not in j['trace'])")" = failed/runner_unsupported/True

# --- kiln SIGKILLed mid-job, then restarted -------------------------------------------
f=$(enqueue killed '["echo F-started", "sleep 300"]' '["echo after F"]' '{}')
J=$f wait_for "'F-started' in j['trace']" 180 || bad "job F: never started"
kill -KILL "$kpid"
wait "$kpid" 2>/dev/null
kpid=
sleep 1
check "SIGKILL: no VM outlived kiln" bash -c '! pgrep -f "$1/jobs" >/dev/null' _ "$state"
check "SIGKILL: the journal has job F" test -f "$state/running/$f.json"
start_kiln
J=$f wait_for "j['final'] is not None" 60 || bad "job F: not reported after the restart"
check "job F: failed, runner_system_failure" test "$(J=$f st "j['final']['state'] + '/' + j['final']['failure_reason']")" = failed/runner_system_failure
check "job F: the log says why, checksum right" test "$(J=$f st "'kiln was interrupted' in j['trace'] and j['final']['checksum_ok']")" = True
check "job F: journal entry gone" test ! -e "$state/running/$f.json"
check "job F: job folder and scratch folder swept" test -z "$(ls -A "$state/jobs" "$state/tmp" 2>/dev/null | grep -v "^/\|^$")"

# --- replay a recorded payload ---------------------------------------------------------
ctl POST /__public -d '{"repo": "group/project"}' >/dev/null
out=$("$kiln" -c "$cfg" replay "$a" --variable SECRET_VALUE=replayed-secret-value 2>&1)
st_=$?
check "replay $a: exit status $st_" test "$st_" = 0
check "replay: the job ran again" grep -q "done-A" <<<"$out"
check "replay: the new value is masked" bash -c 'grep -q "var=\[MASKED\]" <<<"$1" && ! grep -q replayed-secret <<<"$1"' _ "$out"

# --- legacy registration, SIGHUP, unregister -----------------------------------------------
out=$("$kiln" register -c "$cfg" --url "$url" --token kiln-registration-token --tls-ca-file "$ca" --name legacy \
	--tag-list kvm,docker --locked=false --access-level ref_protected --maximum-timeout 600 --paused \
	--maintenance-note "rack 4" 2>&1)
check "legacy registration: $out" grep -q "registered runner legacy" <<<"$out"
check "legacy registration: gitlab-runner's parameters" test "$(st "json.dumps([s['registrations'][-1].get(k) for k in
	('description', 'tag_list', 'run_untagged', 'locked', 'access_level', 'maximum_timeout', 'paused',
	 'maintenance_note')])")" = '["legacy", "kvm,docker", false, false, "ref_protected", 600, true, "rack 4"]'
check "legacy registration: info has revision, config and labels" test "$(st "' '.join([
	type(s['registrations'][-1]['info'].get('revision')).__name__,
	json.dumps(s['registrations'][-1]['info'].get('config')), json.dumps(s['registrations'][-1]['info'].get('labels'))])")" \
	= 'str {"gpus": ""} {}'
kill -HUP "$kpid"
sleep 1
check "SIGHUP: configuration reloaded" grep -q "reloaded $cfg: 2 runners" "$work/run.log"
out=$("$kiln" -c "$cfg" unregister --name legacy 2>&1)
check "unregister legacy: DELETE /runners" test "$(st "s['unregistrations'][-1]['path']")" = /runners
check "unregister legacy: gone from the config" bash -c '! grep -q "name: legacy" "$1"' _ "$cfg"
kill -HUP "$kpid"

# --- SIGTERM: running jobs get shutdown_timeout, then are canceled ----------------------------
h=$(enqueue term '["echo H-started", "sleep 300"]' '["echo after H"]' '{}')
J=$h wait_for "'H-started' in j['trace']" 180 || bad "job H: never started"
stop_kiln TERM
check "SIGTERM: kiln exited 0 ($kst)" test "$kst" = 0
check "job H: failed, runner_system_failure" test "$(J=$h st "j['final']['state'] + '/' + j['final']['failure_reason']")" = failed/runner_system_failure
check "job H: the log says kiln stopped" grep -q "kiln is shutting down" <<<"$(trace "$h")"
check "SIGTERM: no VM left" bash -c '! pgrep -f "$1/jobs" >/dev/null' _ "$state"

# --- 403 three times pauses the runner; SIGQUIT drains -----------------------------------------
ctl POST /__faults -d '{"request": [403, 403, 403]}' >/dev/null
start_kiln
for _ in $(seq 100); do grep -q "pausing it" "$work/run.log" && break; sleep 0.2; done
check "three 403s pause the runner" grep -q "3 job requests in a row were refused (403): pausing it" "$work/run.log"
req="len([r for r in s['requests'] if r['path'] == '/api/v4/jobs/request'])"
n=$(st "$req")
sleep 3
check "paused: no more job requests" test "$(st "$req")" = "$n"
stop_kiln QUIT
check "SIGQUIT: kiln exited 0 ($kst)" test "$kst" = 0

# --- token renewal: past 75 % of its lifetime, kiln run gets a new token ----------------------
ctl POST /__config -d '{"token_lifetime": 3600}' >/dev/null
now=$(date +%s)
python3 - "$cfg" "$token" "$((now - 1000))" "$((now + 100))" <<'PY'
import re, sys
path, token, got, exp = sys.argv[1:5]
text = re.sub(r"^ *token_(obtained|expires)_at: .*\n", "", open(path).read(), flags=re.M)
m = re.search(r"^( *)token: %s$" % re.escape(token), text, re.M)
text = text[:m.end()] + "\n%stoken_obtained_at: %s\n%stoken_expires_at: %s\n%soutput_limit: 2" % (
    m.group(1), got, m.group(1), exp, m.group(1)) + text[m.end():]
open(path, "w").write(text)
PY
start_kiln
wait_for "len(s['token_resets']) > 0" 30 || bad "no token renewal"
newtok=$(st "s['token_resets'][0].get('new', '')")
check "token renewal: reset_authentication_token with the old token" test "$(st "s['token_resets'][0]['ok'] and s['token_resets'][0]['old'] == '$token'")" = True
for _ in $(seq 50); do grep -q "token: $newtok" "$cfg" && break; sleep 0.1; done
check "token renewal: the new token and its expiry are in the config" \
	python3 -c 'import re, sys, time; t = open(sys.argv[1]).read(); e = int(re.search(r"token_expires_at: (\d+)", t).group(1)); sys.exit(not (sys.argv[2] in t and sys.argv[3] not in t and abs(e - time.time() - 3600) < 120))' "$cfg" "$newtok" "$token"
rn=$(enqueue renewed '["echo after-renewal", "head -c 4000 /dev/zero | tr \"\\\\0\" x"]' '[]' '{}')
J=$rn wait_for "j['final'] is not None" 180 || bad "job R: no final update"
check "token renewal: jobs are taken with the new token" test "$(J=$rn st "j['final']['state']")" = success
check "output_limit: 2 KiB of log kept, then GitLab's notice" \
	test "$(J=$rn st "(j['trace_len'] < 2048 + 200, 'exceeded limit of 2048 bytes' in j['trace'], 'x' * 4000 in j['trace'])")" = "(True, True, False)"
check "token renewal: logged" grep -q "runner main-runner: token renewed; the new one expires in" "$work/run.log"
check "token renewal: the token is not in the log" bash -c '! grep -q "$1" "$2"' _ "$newtok" "$work/run.log"
stop_kiln QUIT

# --- unregister --all ------------------------------------------------------------------------
out=$("$kiln" -c "$cfg" unregister --all 2>&1)
check "unregister --all: DELETE /runners/managers with the system_id" \
	test "$(st "s['unregistrations'][-1]['path'] + ' ' + s['unregistrations'][-1]['system_id']")" = "/runners/managers $sysid"
check "unregister --all: no runners left" grep -q ": 0 runners" <<<"$("$kiln" -c "$cfg" list)"

check "never more job requests at once than request_concurrency (1)" test "$(st "s['max_inflight']['$token']")" = 1
check "nothing left: job folders, scratch folders, VMs, journal" \
	bash -c 'test -z "$(ls -A "$1/jobs" "$1/tmp" "$1/running" 2>/dev/null | grep -v "^/\|^$")" && ! pgrep -f "$1/jobs" >/dev/null' _ "$state"
if [ "$fails" -gt 0 ]; then
	echo "--- kiln run log"; tail -40 "$work/run.log"
	echo "--- fake GitLab log"; tail -20 "$work/fake.log"
fi
echo "# $fails failure(s)"
[ "$fails" = 0 ]
