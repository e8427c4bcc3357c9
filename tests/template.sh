#!/bin/bash
# Templates of the microvm executor, in the KVM sandbox, with the
# configuration's defaults (templates on): the first job builds its
# machine's template and restores from it, in the templates folder and not
# the state folder; four jobs at once then restore from the same
# template, each with its own random bytes and host name; a restored job
# that fills its workspace gets ENOSPC and fails cleanly; `kiln images
# warm` builds a template ahead of any job; --no-snapshot and `snapshots:
# false` boot cold; a template kiln-vmm refuses is thrown away, the job
# boots cold and later ones do too; two jobs of a machine with no
# template yet build it once.
# Needs images carrying this kiln's agent
# (KILN_IMAGES_DIR; the shared ones are rebuilt by the lead).
# Exit 77 (SKIP) with the reason when images or the sandbox are missing.
set -u
: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
mode=${1:-host}
skip() { echo "SKIP: $*"; exit 77; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
[ -f "$images/tiny/manifest.json" ] || skip "no tiny image in $images"
# Only an image built with this kiln's agent gets templates.
agent=$(sha256sum "$top_builddir/kiln-agent" | cut -d' ' -f1)
grep -q "\"file agent $agent\"" "$images/tiny/manifest.json" ||
	skip "the tiny image in $images carries another kiln-agent (rebuild it: kiln images build tiny)"

if [ "$mode" = host ]; then
	[ -f "$images/sandbox/manifest.json" ] || skip "no sandbox image in $images"
	. "$top_srcdir/tests/vmtest.sh"
	exec "$top_srcdir/tests/kvm-sandbox" --timeout 1500 --tries 2 --env top_srcdir --env top_builddir \
		--env KILN_IMAGES_DIR -- bash "$top_srcdir/tests/template.sh" sandbox
fi

kiln=$top_builddir/kiln
work=$(mktemp -d)
state=$work/state
fails=0
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
export KILN_TEMPLATES_DIR=$work/templates
trap 'rm -rf "$work"' EXIT
# The defaults: templates on (docs/vmm.md, "Templates (kiln's side)").
printf 'defaults: {}\n' >"$work/config.yml"
export KILN_CONFIG=$work/config.yml
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$top_srcdir/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }
# The tiny job, printing 16 random bytes and the host name.
sed -e "s|/var/lib/kiln/examples/demo.git|$work/demo.git|" \
	-e 's|"uname -a",|"echo RND $(od -An -tx1 -N16 /dev/urandom \| tr -d \\" \\\\n\\")", "echo HOST $(hostname)",|' \
	"$top_srcdir/examples/tiny.json" >"$work/job.json"
grep -q 'RND' "$work/job.json" || { echo "FAIL: payload"; exit 1; }
opts="--executor microvm --image tiny --memory 256 --no-network"

t0=$(date +%s.%N)
out=$("$kiln" exec $opts --job-file "$work/job.json" 2>&1); st=$?
t1=$(date +%s.%N)
echo "$out" | grep -E 'boot:|RND|HOST|job (succeeded|failed)'
[ "$st" = 0 ] && ok "first job: status 0 ($(awk "BEGIN{print $t1 - $t0}") s)" || bad "first job: status $st"
echo "$out" | grep -q 'boot: template .* built' && ok "first job built the template" || bad "no template built"
echo "$out" | grep -q 'boot: restored from template' && ok "first job restored" || bad "first job not restored"
echo "$out" | grep -q '^RND ' && ok "first job's output" || bad "no output from the first job"
"$kiln" images templates
[ -n "$(ls "$work/templates" 2>/dev/null)" ] && [ ! -e "$state/templates" ] &&
	ok "the template is in the templates folder, not the state folder" ||
	bad "templates: '$(ls "$work/templates" 2>/dev/null)', state: '$(ls "$state")'"

# left WHAT: nothing of the jobs remains (job folders, kiln-vmm processes).
left() {
	local l=""
	[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] || l="$l job-folder:$(ls "$state/jobs")"
	pgrep -f "$state/jobs" >/dev/null && l="$l vmm-process"
	[ -z "$l" ] && ok "$1: nothing left behind" || bad "$1: left behind:$l"
}

# Four at once from the one template, as the issue asks.
for i in 1 2 3 4; do
	"$kiln" exec $opts --job-file "$work/job.json" >"$work/out$i" 2>&1 &
	pids="${pids:-} $!"
done
for i in 1 2 3 4; do
	p=$(echo $pids | cut -d' ' -f$i)
	wait "$p"; st=$?
	grep -E 'boot:|RND|HOST|job (succeeded|failed)' "$work/out$i"
	[ "$st" = 0 ] && ok "job $i: status 0" || bad "job $i: status $st"
	grep -q 'boot: restored from template' "$work/out$i" && ok "job $i restored" || bad "job $i not restored"
done
n=$(cat "$work"/out[1-4] | grep -c '^RND ')
u=$(cat "$work"/out[1-4] | grep '^RND ' | sort -u | wc -l)
[ "$n" = 4 ] && [ "$u" = 4 ] && ok "4 jobs, 4 different random byte strings" || bad "random bytes: $n lines, $u different"
n=$(cat "$work"/out[1-4] | grep -c '^HOST ')
u=$(cat "$work"/out[1-4] | grep '^HOST ' | sort -u | wc -l)
[ "$n" = 4 ] && [ "$u" = 4 ] && ok "4 jobs, 4 different host names" || bad "host names: $n lines, $u different"
left "4 at once"

# A restored guest that fills its workspace gets ENOSPC like a cold one
# (tests/exec.sh's fill case): the job fails on it, the VM goes.
python3 - "$work/job.json" "$work/fill.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["steps"][0]["script"] = [
    "dd if=/dev/zero of=fill bs=1M 2>/tmp/dd.err || cat /tmp/dd.err; echo workspace-full",
    "exit 7",
]
json.dump(d, open(sys.argv[2], "w"))
PY
out=$("$kiln" exec $opts --job-file "$work/fill.json" 2>&1); st=$?
echo "$out" | grep -E 'boot:|dd:|workspace-full|job (succeeded|failed)|error'
echo "$out" | grep -q 'boot: restored from template' && ok "fill: restored" || bad "fill: not restored"
[ "$st" = 7 ] && echo "$out" | grep -q 'No space left on device' && echo "$out" | grep -q 'workspace-full' &&
	echo "$out" | grep -q 'job failed: script_failure, exit code 7' &&
	ok "fill: ENOSPC in the restored guest, the job fails with status 7" ||
	{ bad "fill: status $st"; echo "$out" | tail -8; }
left "fill"

# kiln images warm: a template before any job of its machine, found by a
# second call and restored by the first job; kiln images list shows both.
out=$("$kiln" images warm tiny --memory 192 --no-network 2>&1); st=$?
echo "$out" | tail -2
[ "$st" = 0 ] && echo "$out" | grep -q 'template [0-9a-f]\{16\} (image tiny, 1 vCPU, 192 MiB, network off): built' &&
	ok "images warm built a template" || bad "images warm: status $st"
out=$("$kiln" images warm tiny --memory 192 --no-network 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q ': current$' && ok "images warm again: current" ||
	bad "images warm again: status $st: $(echo "$out" | tail -1)"
out=$("$kiln" exec --executor microvm --image tiny --memory 192 --no-network --job-file "$work/job.json" 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q 'boot: restored from template' && ! echo "$out" | grep -q 'boot: template .* built' &&
	ok "a job restores from the warmed template" || bad "warmed: status $st: $(echo "$out" | grep boot:)"
"$kiln" images list 2>/dev/null | sed -n '/^TEMPLATE/,$p'
[ "$("$kiln" images list 2>/dev/null | sed -n '/^TEMPLATE/,$p' | grep -c ' tiny ')" = 2 ] && ok "images list: 2 templates" ||
	bad "images list: $("$kiln" images list 2>/dev/null | sed -n '/^TEMPLATE/,$p' | tr '\n' ' ')"
left "images warm"

out=$("$kiln" exec $opts --no-snapshot --job-file "$work/job.json" 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q 'boot: cold (--no-snapshot)' && ok "--no-snapshot boots cold" ||
	bad "--no-snapshot: status $st: $(echo "$out" | grep boot:)"
printf 'defaults:\n  snapshots: false\n' >"$work/off.yml"
out=$(KILN_CONFIG=$work/off.yml "$kiln" exec $opts --job-file "$work/job.json" 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q 'boot: cold (snapshots: false in the configuration)' &&
	ok "snapshots: false boots cold" || bad "snapshots: false: status $st: $(echo "$out" | grep boot:)"

# A template kiln-vmm refuses (a changed byte in its state's header) is
# thrown away: the job boots cold and succeeds, the next job boots cold
# without trying it again, and `kiln images warm` builds it anew.
t=$(ls -d "$work"/templates/*/ | while read -r d; do grep -q '"mem_mib":192' "$d/template.json" && echo "${d%/}"; done)
printf 'X' | dd of="$t/state" bs=1 seek=3 conv=notrunc 2>/dev/null
out=$("$kiln" exec --executor microvm --image tiny --memory 192 --no-network --job-file "$work/job.json" 2>&1); st=$?
echo "$out" | grep -E 'boot:|job (succeeded|failed)'
[ "$st" = 0 ] && echo "$out" | grep -q "boot: template ${t##*/} failed to restore (.*): thrown away" &&
	echo "$out" | grep -q 'boot: cold (the template failed to restore)' && echo "$out" | grep -q '^RND ' &&
	ok "a refused template: thrown away, the job booted cold" || { bad "refused template: status $st"; echo "$out" | tail -8; }
[ ! -e "$t/state" ] && grep -q '"error"' "$t/template.json" && ok "the refused template is gone, marked failed" ||
	bad "refused template: $(ls "$t") $(cat "$t/template.json")"
out=$("$kiln" exec --executor microvm --image tiny --memory 192 --no-network --job-file "$work/job.json" 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q "boot: cold (template ${t##*/}: failed: restore failed: " &&
	! echo "$out" | grep -q 'boot: template .* built' && ok "the next job boots cold, no retry" ||
	bad "after a refused template: status $st: $(echo "$out" | grep boot:)"
out=$("$kiln" images warm tiny --memory 192 --no-network 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q ': built$' && [ -s "$t/state" ] && ok "images warm builds it anew" ||
	bad "images warm after a refused template: status $st: $(echo "$out" | tail -1)"
left "refused template"

# Two jobs of a machine with no template yet, at once: one builds it, the
# other boots cold (or restores what the first built); one template.
for i in 1 2; do
	"$kiln" exec --executor microvm --image tiny --memory 224 --no-network --job-file "$work/job.json" \
		>"$work/two$i" 2>&1 &
	eval "p$i=$!"
done
wait "$p1"; s1=$?
wait "$p2"; s2=$?
grep -h 'boot:' "$work/two1" "$work/two2"
[ "$s1" = 0 ] && [ "$s2" = 0 ] && ok "two first jobs: status 0" || bad "two first jobs: status $s1 $s2"
[ "$(cat "$work/two1" "$work/two2" | grep -c 'boot: template .* built')" = 1 ] && ok "two first jobs: one build" ||
	bad "two first jobs: $(cat "$work/two1" "$work/two2" | grep -c 'boot: template .* built') builds"
! grep -q 'failed to restore\|building template .* failed' "$work/two1" "$work/two2" &&
	ok "two first jobs: no failed build or restore" || bad "two first jobs: a build or restore failed"
[ "$(grep -l '"mem_mib":224' "$work"/templates/*/template.json | wc -l)" = 1 ] &&
	grep -q '"ready":true' "$(grep -l '"mem_mib":224' "$work"/templates/*/template.json)" &&
	ok "two first jobs: one ready template" || bad "two first jobs: templates: $(ls "$work/templates")"
left "two first jobs"
[ "$fails" = 0 ] || exit 1
