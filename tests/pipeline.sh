#!/bin/bash
# kiln exec [JOB...] end to end: the pipelines of examples/pipelines/, each
# committed into a throw-away repository, run with the qemu executor (TCG
# here, KVM where it works) on the tiny image. Covers artifacts between
# stages, allow_failure and exit_codes, after_script's CI_JOB_STATUS, needs
# across stages, manual jobs, rules, a matrix, a timeout, --needs, --dirty,
# --list, --variable, YAML errors, SIGINT and SIGTERM, --shell, two kiln exec
# at once, a failing after_script in the summary, and that
# nothing of a job is left behind.
# Jobs run without networking (--no-network): none needs it, and taps are
# host-wide names that tests running beside this one may hold.
# Exit 77 (SKIP) with the reason when images are missing or
# KILN_SKIP_VM_TESTS is set.
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
command -v git >/dev/null || skip "git is not installed"

. "$top_srcdir/tests/vmtest.sh"
work=$(mktemp -d /tmp/kiln-pipeline-test.XXXXXX)
state=$work/state
fails=0
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
export GIT_CONFIG_NOSYSTEM=1 HOME=$work NO_COLOR=1
kiln=$top_builddir/kiln
mode=${1:-host}
executor=qemu
[ "$mode" = sandbox ] && executor=microvm
echo "# executor: $executor"
trap 'rm -rf "$work"' EXIT

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

# repo NAME: examples/pipelines/NAME committed into $work/NAME.
repo() {
	local d=$work/$1
	rm -rf "$d"
	cp -r "$top_srcdir/examples/pipelines/$1" "$d"
	git -C "$d" init -q -b main
	git -C "$d" add -A
	git -C "$d" -c user.name=kiln -c user.email=kiln@example.invalid commit -q -m "$1: the example pipeline"
	echo "$d"
}

# run WHAT WANT_STATUS DIR ARGS...: kiln exec in DIR; $out holds what it printed.
out=
run() {
	local what=$1 want=$2 dir=$3 st
	shift 3
	out=$(cd "$dir" && "$kiln" exec --executor "$executor" --no-network "$@" 2>&1)
	st=$?
	vm_glitch_note "$out"
	[ "$st" = "$want" ] && ok "$what: exit status $st" || { bad "$what: exit status $st, want $want"; echo "$out" | tail -30; }
}

# has WHAT PATTERN...: each fixed string is (or, with a leading '!', is not) in $out.
has() {
	local what=$1 p
	shift
	for p in "$@"; do
		case "$p" in
		!*) echo "$out" | grep -qF -- "${p#!}" && { bad "$what: output has '${p#!}'"; echo "$out" | tail -30; } ||
			ok "$what: output lacks '${p#!}'" ;;
		*) echo "$out" | grep -qF -- "$p" && ok "$what: output has '$p'" ||
			{ bad "$what: output lacks '$p'"; echo "$out" | tail -30; } ;;
		esac
	done
}

# summary WHAT JOB STATE [WHY]: the summary's line of JOB.
summary() {
	local line
	line=$(echo "$out" | sed -n '/^pipeline #/,$p' | grep -E "^  [^ ]+ +$2 +$3( |$)")
	if [ -n "$line" ] && { [ -z "${4:-}" ] || echo "$line" | grep -qF -- "$4"; }; then
		ok "$1: $2 is $3${4:+ ($4)}"
	else
		bad "$1: $2 is not $3${4:+ ($4)}"; echo "$out" | sed -n '/^pipeline #/,$p'
	fi
}

leftovers() {
	local left=""
	[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] || left="$left job-folder:$(ls "$state/jobs")"
	pgrep -f "$state/jobs" >/dev/null && left="$left vmm-process"
	[ -z "$(ls -A "$state/tmp" 2>/dev/null)" ] || left="$left tmp:$(ls "$state/tmp")"
	[ -z "$left" ] && ok "$1: nothing left behind" || bad "$1: left behind:$left"
}

basic=$(repo basic)
needs=$(repo needs)
matrix=$(repo matrix)

echo "# without a VM: --list, --variable, errors"
run "list" 0 "$basic" --list
has "list" "build   build    on_success" "deploy  deploy   manual" "skipped: rules: no rule matched" \
	"allow_failure" "artifacts: dist/"
run "list --variable" 0 "$basic" --list --variable CI_PIPELINE_SOURCE=schedule
echo "$out" | grep -qE '^deploy +nightly +on_success' && ok "--variable: the rule lets nightly in" ||
	bad "--variable: nightly still left out: $out"
mkdir "$work/broken" && printf 'stages: [a]\njob:\n  stage: a\n  script: [echo hi]\n  when: sometimes\n' > "$work/broken/.gitlab-ci.yml" &&
	git -C "$work/broken" init -q -b main && git -C "$work/broken" add -A &&
	git -C "$work/broken" -c user.name=k -c user.email=k@example.invalid commit -qm broken
run "YAML error" 2 "$work/broken"
[ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -qE "^kiln: error: \.gitlab-ci\.yml:5: job 'job': when: unknown value 'sometimes'" &&
	ok "YAML error: one line with file, line and key: $out" || bad "YAML error: $out"
has "YAML error" "!booting"
run "unknown job" 2 "$basic" no-such-job
has "unknown job" "no job named 'no-such-job'"
mkdir -p "$work/norepo"
run "not a repository" 2 "$work/norepo"
has "not a repository" "not in a git repository"
# None of these may have started a VM: no job folder was ever made.
[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] && ! [ -d "$state/mirrors" ] && ok "no VM and no workspace for these" ||
	bad "a job folder or mirror appeared for commands that need no VM"

echo "# basic: artifacts, allow_failure, after_script, manual, rules"
run "basic" 0 "$basic"
sha=$(git -C "$basic" rev-parse --short=8 HEAD)
has "basic" "build > booting a fresh VM" "build > guest ready after" "test  > with the artifacts of build" \
	"test  > app $sha (main, pipeline 1)" "after_script of build sees CI_JOB_STATUS=success" \
	"after_script of lint sees CI_JOB_STATUS=failed" "lint  > lint found 2 problems" "first run here" \
	"the checkout holds .git .gitlab-ci.yml " "!scratch.tmp: No such" "!nightly job"
summary "basic" build PASS
summary "basic" test PASS
summary "basic" lint WARN "exit code 1, allowed to fail"
summary "basic" deploy skip "manual job"
summary "basic" nightly skip "rules: no rule matched"
[ -f "$basic/.kiln/artifacts/build/dist/app.txt" ] && [ ! -e "$basic/.kiln/artifacts/build/dist/scratch.tmp" ] &&
	ok "basic: .kiln/artifacts/build/ holds dist/app.txt, not the excluded dist/scratch.tmp" ||
	bad "basic: artifacts: $(find "$basic/.kiln" | tr '\n' ' ')"
[ -z "$(git -C "$basic" status --porcelain)" ] && ok "basic: git sees no change (.kiln is ignored)" ||
	bad "basic: git status: $(git -C "$basic" status --porcelain)"
leftovers "basic"
# Templates are on by default: under kiln-vmm the first job builds its
# machine's and the jobs restore it; a refused template would boot cold.
if [ "$mode" = sandbox ]; then
	echo "$out" | grep -F '> boot: '
	has "basic" "> boot: restored from template" "!failed to restore"
fi

# In the sandbox (nested virtualisation: slow, and every VM there risks
# the emulation's crashes) the microvm executor runs only what depends on
# the executor: the basic pipeline and two VMs at once. Manual jobs,
# --dirty and --needs are the same whatever runs the VM: the host covers them.
if [ "$mode" = host ]; then
run "a manual job named" 0 "$basic" deploy
has "a manual job named" "deploy > with the artifacts of build (from an earlier run)" "deploying app $sha (main, pipeline 1)" \
	"pipeline #2 " "!first run here"
summary "a manual job named" deploy PASS

echo "untracked" > "$basic/local-notes.txt"
run "--dirty" 0 "$basic" --dirty build
has "--dirty" "the checkout holds .git .gitlab-ci.yml local-notes.txt " "with the working tree's 1 change"
run "without --dirty" 0 "$basic" build
has "without --dirty" "1 uncommitted change or untracked file left out" "!local-notes.txt "
rm -f "$basic/local-notes.txt"
fi

echo "# needs across stages, --concurrency 2"
run "needs" 0 "$needs" --concurrency 2
has "needs" "test-fast  > fast" "deploy     > slow" "deploy     > with the artifacts of build-slow"
# Two at once, the template basic built there: both restore it.
[ "$mode" = sandbox ] && { echo "$out" | grep -F '> boot: '; has "needs" "!failed to restore" "!> boot: cold ("; }
a=$(echo "$out" | grep -n '^test-fast  > passed' | cut -d: -f1)
b=$(echo "$out" | grep -n '^build-slow > passed' | cut -d: -f1)
[ -n "$a" ] && [ -n "$b" ] && [ "$a" -lt "$b" ] && ok "needs: test-fast ended while build-slow (its stage's predecessor) still ran" ||
	bad "needs: test-fast did not overtake build-slow (lines $a, $b)"

# What follows is scheduling logic the host run covers.
if [ "$mode" = host ]; then
run "--needs" 0 "$needs" --needs test-fast
has "--needs" ": 2 jobs, 1 at a time" "test-fast  > fast" "!deploy"

echo "# two kiln exec at once (one state folder, as beside a kiln run); a failing after_script"
mkdir "$work/two" && printf 'image: tiny\nfirst:\n  script: [echo first, sleep 15]\n  after_script: [exit 3]\n' \
	> "$work/two/.gitlab-ci.yml" && git -C "$work/two" init -q -b main && git -C "$work/two" add -A &&
	git -C "$work/two" -c user.name=k -c user.email=k@example.invalid commit -qm two
(cd "$work/two" && exec "$kiln" exec --executor "$executor" --no-network) > "$work/two.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '\$ sleep 15' "$work/two.log" && break; sleep 0.1; done
# The second one sweeps at start and runs its job while the first one's runs.
run "beside another kiln exec" 0 "$basic" build
summary "beside another kiln exec" build PASS
wait $pid; st=$?
out=$(cat "$work/two.log")
[ "$st" = 0 ] && ok "the first kiln exec: status $st" || { bad "the first kiln exec: status $st"; echo "$out" | tail -20; }
summary "after_script" first PASS "after_script failed (exit 3)"
leftovers "two kiln exec"

echo "# matrix, exit_codes, timeout, on_failure, always"
t0=$(date +%s)
run "matrix" 1 "$matrix" --concurrency 2
t1=$(date +%s)
has "matrix" "suite fast on node 1 of 2" "suite slow on node 2 of 2" \
	"ERROR: Job failed: execution took longer than 10 seconds" "an earlier job failed" "cleanup runs whatever happened" \
	"!not printed"
summary "matrix" "unit: \[fast\]" PASS
summary "matrix" "unit: \[slow\]" PASS
summary "matrix" flaky WARN "an allowed exit code"
summary "matrix" broken FAIL "exit code 4"
summary "matrix" slow FAIL "timed out"
summary "matrix" on-failure PASS
summary "matrix" cleanup PASS
summary "matrix" report skip "failed"
echo "$out" | sed -n '/^pipeline #/,$p' | grep -qF '| a real failure' && ok "matrix: the summary shows broken's last lines" ||
	bad "matrix: no last lines of broken"
[ $((t1 - t0)) -lt 120 ] && ok "matrix: $((t1 - t0)) s" || bad "matrix: took $((t1 - t0)) s"
leftovers "matrix"

echo "# signals"
(cd "$needs" && exec "$kiln" exec --executor "$executor" --no-network --concurrency 2) > "$work/int.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q '\$ sleep 12' "$work/int.log" && break; sleep 0.1; done
kill -INT $pid
t0=$(date +%s%N)
wait $pid; st=$?
t1=$(date +%s%N)
out=$(cat "$work/int.log")
[ "$st" = 1 ] && [ $(( (t1 - t0) / 1000000 )) -lt 5000 ] && ok "SIGINT: status $st after $(( (t1 - t0) / 1000000 )) ms" ||
	bad "SIGINT: status $st after $(( (t1 - t0) / 1000000 )) ms"
has "SIGINT" "kiln: interrupted: canceling the running jobs" "build-slow > canceled: stopping the VM"
summary "SIGINT" build-slow FAIL canceled
summary "SIGINT" deploy skip canceled
leftovers "SIGINT"

(cd "$matrix" && exec "$kiln" exec --executor "$executor" --no-network slow) > "$work/term.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do grep -q 'sleeping past the timeout' "$work/term.log" && break; sleep 0.1; done
kill -TERM $pid
wait $pid; st=$?
out=$(cat "$work/term.log")
[ "$st" = 1 ] && ok "SIGTERM: status $st" || bad "SIGTERM: status $st"
has "SIGTERM" "after_script still runs" "after_script of slow sees CI_JOB_STATUS=canceled"
summary "SIGTERM" slow FAIL canceled
leftovers "SIGTERM"

echo "# --shell: a shell in the failed job's VM (typed from a pipe here)"
out=$(cd "$matrix" && printf 'echo "inside $CI_JOB_NAME with status $CI_JOB_STATUS in $(pwd)"\nexit 7\n' |
	timeout 120 "$kiln" exec --executor "$executor" --no-network --shell broken 2>&1)
st=$?
if echo "$out" | grep -qF "cannot hold a job"; then
	echo "skip: --shell: the tiny image's kiln-agent predates the shell (./tools/dev images tiny)"
else
	[ "$st" = 1 ] && ok "--shell: exit status $st" || { bad "--shell: exit status $st"; echo "$out" | tail -20; }
	has "--shell" "job 'broken' failed: a shell in its VM" "inside broken with status failed in /builds/matrix" \
		"the shell ended (exit status 7)"
	summary "--shell" broken FAIL "exit code 4"
	leftovers "--shell"
fi

fi

if [ "$mode" = host ] && [ -f "$images/sandbox/manifest.json" ]; then
	echo "# the microvm executor, in the KVM sandbox"
	"$top_srcdir/tests/kvm-sandbox" --timeout 1500 --tries 4 --env top_srcdir --env top_builddir --env KILN_IMAGES_DIR -- \
		bash "$top_srcdir/tests/pipeline.sh" sandbox
	st=$?
	[ "$st" = 0 ] && ok "sandbox run" || bad "sandbox run: status $st"
fi
echo "$fails failed"
[ "$fails" = 0 ] || vm_glitch_exit
[ "$fails" = 0 ]
