#!/bin/bash
# Templates of the microvm executor, in the KVM sandbox: the first job
# builds its machine's template and restores from it, two jobs at once
# then restore from the same template, each with its own random bytes, and
# --no-snapshot boots cold. Needs images carrying this kiln's agent
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
trap 'rm -rf "$work"' EXIT
# Templates are opt-in (docs/vmm.md, "Templates (kiln's side)").
printf 'defaults:\n  snapshots: true\n' >"$work/config.yml"
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

for i in 1 2; do
	"$kiln" exec $opts --job-file "$work/job.json" >"$work/out$i" 2>&1 &
done
wait
for i in 1 2; do
	grep -E 'boot:|RND|HOST|job (succeeded|failed)' "$work/out$i"
	grep -q 'boot: restored from template' "$work/out$i" && ok "job $i restored" || bad "job $i not restored"
done
r1=$(grep '^RND ' "$work/out1"); r2=$(grep '^RND ' "$work/out2")
[ -n "$r1" ] && [ -n "$r2" ] && [ "$r1" != "$r2" ] && ok "random bytes differ: $r1 / $r2" ||
	bad "random bytes: '$r1' '$r2'"
h1=$(grep '^HOST ' "$work/out1"); h2=$(grep '^HOST ' "$work/out2")
[ -n "$h1" ] && [ "$h1" != "$h2" ] && ok "host names differ: $h1 / $h2" || bad "host names: '$h1' '$h2'"

out=$("$kiln" exec $opts --no-snapshot --job-file "$work/job.json" 2>&1); st=$?
[ "$st" = 0 ] && echo "$out" | grep -q 'boot: cold (--no-snapshot)' && ok "--no-snapshot boots cold" ||
	bad "--no-snapshot: status $st: $(echo "$out" | grep boot:)"
[ "$fails" = 0 ] || exit 1
