#!/bin/bash
# services: (issue #16) end to end through `kiln exec --job-file`: a job
# whose service (the tiny image running busybox nc) boots in a VM of its
# own beside the job's, reached by its aliases and port; two services that
# reach each other by alias; the runner's own services, allowed_services
# and name expansion; a missing service
# image fails the job cleanly; nothing is left behind (job folders, VMM
# processes, cgroups, taps, nft elements, network slots).
# Exit 77 (SKIP) with the reason when images or root are missing.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}

skip() { echo "SKIP: $*"; exit 77; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for i in kernel tiny; do
	[ -f "$images/$i/manifest.json" ] || skip "image $i is not built (./tools/dev images $i)"
done
[ "$(id -u)" = 0 ] || skip "needs root (taps, nftables)"
command -v nft >/dev/null || skip "no nft"

. "$top_srcdir/tests/vmtest.sh"
work=$(mktemp -d /tmp/kiln-services-test.XXXXXX)
state=$work/state
fails=0
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
kiln=$top_builddir/kiln
executor=${KILN_TEST_EXECUTOR:-qemu}

cleanup() { [ -n "${KILN_TEST_KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$top_srcdir/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }

# This test's VM cgroups (named after its jobs' id: other kilns on the
# host come and go meanwhile).
jobid=716016
cgroups() { ls -d /sys/fs/cgroup/kiln/$jobid.*/ /sys/fs/cgroup/*/kiln/$jobid.*/ 2>/dev/null | sort; }
cgroups_before=$(cgroups)
slots_before=$(ls /run/kiln/net 2>/dev/null | grep -c '^slot-')

leftovers() {
	local what=$1 left=""
	[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] || left="$left job-folder:$(ls "$state/jobs")"
	pgrep -f "$state/jobs" >/dev/null && left="$left vmm-process"
	[ "$(cgroups)" = "$cgroups_before" ] || left="$left cgroup:$(comm -13 <(echo "$cgroups_before") <(cgroups) | tr "\n" " ")"
	ip -br link 2>/dev/null | grep -q '^kt[0-9]' && left="$left tap:$(ip -br link | grep -o '^kt[0-9]*' | tr '\n' ' ')"
	nft list set inet kiln job_ifs 2>/dev/null | grep -q 'elements' && left="$left nft-elements"
	nft list set inet kiln job_peers 2>/dev/null | grep -q 'elements' && left="$left nft-peers"
	[ "$(ls /run/kiln/net 2>/dev/null | grep -c '^slot-')" = "$slots_before" ] || left="$left net-slot"
	[ -z "$left" ] && ok "$what: nothing left behind" || bad "$what: left behind:$left"
}

# payload NAME SERVICES_JSON SCRIPT_JSON [VARIABLES_JSON]
payload() {
	python3 - "$top_srcdir/examples/tiny.json" "$work/$1.json" "$work/demo.git" "$2" "$3" "${4:-[]}" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["git_info"]["repo_url"] = sys.argv[3]
d["id"] = d["job_info"]["id"] = 716016
d["services"] = json.loads(sys.argv[4])
d["steps"][0]["script"] = json.loads(sys.argv[5])
d["variables"] += json.loads(sys.argv[6])
d["runner_info"]["timeout"] = 300
json.dump(d, open(sys.argv[2], "w"))
PY
}

# run NAME WANT_STATUS PATTERN...
run() {
	local name=$1 want=$2 out st
	shift 2
	out=$("$kiln" exec --executor "$executor" --network --job-file "$work/$name.json" 2>&1)
	st=$?
	vm_glitch_note "$out"
	echo "$out" >"$work/$name.out"
	[ "$st" = "$want" ] && ok "$name: exit status $st" || { bad "$name: exit status $st, want $want"; echo "$out" | tail -25; }
	for p in "$@"; do
		case "$p" in
		!*) echo "$out" | grep -qF -- "${p#!}" && bad "$name: log has '${p#!}'" || ok "$name: log lacks '${p#!}'" ;;
		*) echo "$out" | grep -qF -- "$p" && ok "$name: log has '$p'" || { bad "$name: log lacks '$p'"; echo "$out" | tail -25; } ;;
		esac
	done
	leftovers "$name"
}

# The service answers on 5432 under its name and its aliases; the job
# waits for it (HEALTHCHECK_TCP_PORT), CI_DEBUG_SERVICES shows its log.
payload reach '[{"name": "tiny:latest", "alias": "db, pg.local",
  "command": ["sh", "-c", "echo service-up $SVC_GREETING; exec nc -ll -p 5432 -e echo hello-from-service"],
  "variables": [{"key": "SVC_GREETING", "value": "hi-$CI_PIPELINE_ID"}, {"key": "HEALTHCHECK_TCP_PORT", "value": "5432"}]}]' \
	'["cat /etc/hosts", "nc db 5432 </dev/null", "nc tiny 5432 </dev/null", "nc pg.local 5432 </dev/null"]' \
	'[{"key": "CI_DEBUG_SERVICES", "value": "true", "public": true}]'
run reach 0 'service tiny:latest: booting' 'waiting for services to be up and running' \
	'db pg.local' 'hello-from-service' '[service:tiny-db-pg.local]' 'service-up hi-1' '!probably didn'"'"'t start properly'
# Templates are on by default: under kiln-vmm the job VM (not its
# services') is restored from its machine's template, built here.
if [ "$executor" = microvm ]; then
	grep -F 'boot: ' "$work/reach.out"
	grep -q 'boot: restored from template' "$work/reach.out" && ! grep -q 'failed to restore' "$work/reach.out" &&
		ok "reach: the job VM restored from a template" || bad "reach: the job VM was not restored"
fi
n=$(grep -c '^hello-from-service' "$work/reach.out")
[ "$n" -ge 3 ] && ok "reach: three aliases answered ($n)" || bad "reach: $n of 3 aliases answered"

# Services reach each other by alias and the job as "build" (gitlab-runner's
# network per build): svc-b asks svc-a, then tells the job what it got.
payload siblings '[{"name": "tiny", "alias": "svc-a",
  "command": ["nc", "-ll", "-p", "5432", "-e", "echo", "from-a"],
  "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "5432"}]},
 {"name": "tiny:latest", "alias": "svc-b",
  "command": ["sh", "-c", "grep -q \" build$\" /etc/hosts && echo b-knows-build; i=0; while [ $i -lt 150 ]; do r=$(nc svc-a 5432 </dev/null) && [ -n \"$r\" ] && break; i=$((i + 1)); sleep 0.2; done; echo b-got:$r; exec nc -ll -p 6000 -e echo b-saw:$r"],
  "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "6000"}]}]' \
	'["nc svc-b 6000 </dev/null", "nc svc-a 5432 </dev/null"]' \
	'[{"key": "CI_DEBUG_SERVICES", "value": "true", "public": true}]'
run siblings 0 'b-saw:from-a' 'b-knows-build' 'from-a' '!probably didn'"'"'t start properly'

# A service that never listens: the warning with its log, the job goes on.
payload silent '[{"name": "tiny", "command": ["sh", "-c", "echo never-listening; sleep 600"],
  "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "6000"}]}]' '["echo job-went-on"]'
KILN_SERVICES_WAIT_S=3 run silent 0 "*** WARNING:" "Service tiny probably didn't start properly" \
	'never-listening' 'job-went-on'

# A missing service image (an OCI registry that is not there): the job
# fails before anything boots.
payload missing '[{"name": "127.0.0.1:1/no-such-image:1"}]' '["echo not-run"]'
run missing 1 'service 127.0.0.1:1/no-such-image:1: ' 'image_pull_failure' '!not-run' '!booting'

# The runner's side (oci: in the configuration): its own service starts
# before the job's, whose name and alias expand with the job's variables;
# allowed_services refuses a service no pattern takes, before anything boots
# (the job cannot run: kiln exec exits 125).
cat >"$work/runner.yml" <<'YML'
oci:
  allowed_services: ["tiny*"]
  services_limit: 2
  wait_for_services_timeout: 60
  services:
    - name: tiny
      alias: runner-db
      command: [nc, -ll, -p, "5432", -e, echo, from-runner-service]
      variables: {HEALTHCHECK_TCP_PORT: "5432"}
YML
payload runnerside '[{"name": "$SVC_IMAGE:latest", "alias": "${SVC_ALIAS}",
  "command": ["nc", "-ll", "-p", "6000", "-e", "echo", "from-job-service"],
  "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "6000"}]}]' \
	'["nc runner-db 5432 </dev/null", "nc job-db 6000 </dev/null"]' \
	'[{"key": "SVC_IMAGE", "value": "tiny", "public": true}, {"key": "SVC_ALIAS", "value": "job-db", "public": true}]'
KILN_CONFIG=$work/runner.yml run runnerside 0 'from-runner-service' 'from-job-service' \
	'waiting for services to be up and running (timeout 60 seconds)'
payload refused '[{"name": "busybox:1"}]' '["echo not-run"]'
KILN_CONFIG=$work/runner.yml run refused 125 'disallowed image: the busybox:1 is not present on list of allowed services: tiny*' \
	'!not-run' '!booting'

# SIGKILL of kiln with a service up: every VMM dies with it (the threads
# that spawned them are gone), the next kiln sweeps taps, nft elements,
# peers, slots and folders.
payload killed '[{"name": "tiny", "alias": "db", "command": ["nc", "-ll", "-p", "5432", "-e", "echo", "up"],
  "variables": [{"key": "HEALTHCHECK_TCP_PORT", "value": "5432"}]}]' '["nc db 5432 </dev/null", "echo job-sleeping", "sleep 300"]'
"$kiln" exec --executor "$executor" --network --job-file "$work/killed.json" >"$work/killed.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '^job-sleeping' "$work/killed.log" && break; sleep 0.1; done
grep -q '^up' "$work/killed.log" && ok "killed: the job reached its service" || bad "killed: the job never reached its service"
kill -KILL $pid
wait $pid 2>/dev/null
sleep 1
outlived=""
pgrep -f "$state/jobs" >/dev/null && outlived=yes
for d in $(comm -13 <(echo "$cgroups_before") <(cgroups)); do [ -n "$(cat "$d/cgroup.procs" 2>/dev/null)" ] && outlived=yes; done
[ -n "$outlived" ] && bad "killed: a VMM outlived kiln" || ok "killed: no VMM outlived kiln"
payload after '[]' '["echo after-the-crash"]'
run after 0 'after-the-crash'

[ "$fails" = 0 ] || vm_glitch_exit
echo "# $fails failure(s)"
exit $((fails > 0))
