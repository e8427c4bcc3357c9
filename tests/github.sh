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
	curl -sf --cacert "$work/fake/ca.pem" -X POST "$url/__seed" -d '{"runs": {}}' >/dev/null
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

# A real runner VM, end to end (qemu executor, as tests/exec.sh on this
# host): a queued job on the fake -> kiln run makes a JIT runner and boots
# image debian with tests/github-stub-runner laid over its project folder
# (KILN_GITHUB_RUNNER_DIR) -> the stub prints the blob's sha256 and claims
# the job from the fake -> the VM stops, the runner is deleted, nothing is
# left. The guest never reaches the host: the fake lives in a namespace
# behind a veth ("outside", 198.18.7.2), which kiln reaches too.
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
vcurl -X POST "$vurl/__seed" -d '{"runs": {"acme/widgets": [{"id": 9, "status": "queued", "jobs":
	[{"id": 901, "status": "queued", "labels": ["self-hosted", "kiln"]}]}]}}' >/dev/null
vcurl -X POST "$vurl/__config" -d '{"stub_result": "success"}' >/dev/null
mkdir -p "$work/vstate"
cat >"$work/vm.yml" <<EOC
state_dir: $work/vstate
concurrent: 1
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
    image: debian
EOC
KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$images \
	KILN_GITHUB_RUNNER_DIR=$top_srcdir/tests/github-stub-runner \
	"$top_builddir/kiln" -c "$work/vm.yml" run >"$work/vm.log" 2>&1 &
kpid=$!
# The claim (the VM booted, the stub ran), then the reaping (the next round, <= 30 s).
st=
for _ in $(seq 900); do
	st=$(vcurl "$vurl/__state")
	case $st in *'"runner_name": "kiln-'*) break ;; esac
	kill -0 $kpid 2>/dev/null || break
	sleep 1
done
for _ in $(seq 60); do
	[ -z "$(ls -A "$work/vstate/github/acme" 2>/dev/null)" ] && break
	sleep 1
done
sleep 1
st=$(vcurl "$vurl/__state")
kill -TERM $kpid
wait $kpid || { echo "FAIL: kiln run (runner VM) exited $?"; rc=1; }
vm_glitch_note "$(cat "$work/vm.log")"
sha=$(printf '%s' "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(*s["jit_sha256"].values())')
blob_seen=$(printf '%s' "$st" | python3 -c 'import json,sys; s=json.load(sys.stdin); print(len(s["claims"]), sum(len(v) for v in s["runners"].values()))')
case $sha in *' '*|'') echo "FAIL: not one JIT runner made: '$sha'"; rc=1 ;; esac
grep -q "stub run.sh: user runner, jitconfig sha256 $sha" "$work/vm.log" ||
	{ echo "FAIL: the stub did not print the blob's sha256 ($sha) as user runner"; rc=1; }
[ "$blob_seen" = "1 0" ] || { echo "FAIL: claims and runners left on the fake: '$blob_seen', not '1 0'"; rc=1; }
grep -q "stub run.sh: claimed: .*\"result\": \"success\"" "$work/vm.log" || { echo "FAIL: no claim in the log"; rc=1; }
grep -q 'runner VM stopped (exit 0)' "$work/vm.log" || { echo "FAIL: the runner VM did not stop cleanly"; rc=1; }
grep -q "secret-key-material\|ghp_fake\|eyJ" "$work/vm.log" && { echo "FAIL: the blob or token was logged"; rc=1; }
grep -rq "secret-key-material" "$work/vstate" 2>/dev/null && { echo "FAIL: the blob is in a host file"; rc=1; }
left=""
[ -z "$(ls -A "$work/vstate/github/acme" 2>/dev/null)" ] || left="$left record:$(ls "$work/vstate/github/acme")"
[ -z "$(ls -A "$work/vstate/jobs" 2>/dev/null)" ] || left="$left job-folder"
pgrep -f "$work/vstate/jobs" >/dev/null && left="$left vmm-process"
[ "$(cgroups)" = "$cgroups_before" ] || left="$left cgroup"
ip -br link 2>/dev/null | grep -q '^kt[0-9]' && left="$left tap"
[ -z "$left" ] || { echo "FAIL: left behind:$left"; rc=1; }
if [ $rc -eq 0 ]; then
	echo "PASS: a runner VM: the blob's sha256 in the guest, the job claimed, VM and runner gone"
else
	echo "--- vm.log"; tail -60 "$work/vm.log"; echo "--- vfake.log"; tail -20 "$work/vfake.log"
	vm_glitch_exit
fi
exit $rc
