#!/bin/bash
# A whole pipeline locally: examples/pipelines/NAME (default basic) through
# `kiln exec` (every job in a fresh VM, here the qemu executor: TCG unless
# the host's KVM works) and through gitlab-ci-local 4.73.0 in its shell
# mode (--force-shell-executor --shell-isolation: every job a shell on
# this host, in a copy of the repository's tracked files). Same repository,
# same jobs, concurrency 1, one warm-up run each (kiln's mirror, npm's
# cache), then RUNS timed runs; prints the medians, the ratio, and the cost
# per job of kiln over gitlab-ci-local.
#
# kiln isolates every job in its own VM (own kernel, filesystem, network);
# gitlab-ci-local's shell mode runs jobs as processes on the host with the
# host's tools and the user's rights: the difference is the price of that
# isolation, not the same work done slower.
#
#   bench/pipeline.sh [RUNS] [NAME]      (default 5 basic)
# gitlab-ci-local is installed once with npm under /var/cache/kiln/npm.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=${top_builddir:-$top}
runs=${1:-5}
name=${2:-basic}
gcl_version=4.73.0
npm_dir=/var/cache/kiln/npm
gcl=$npm_dir/node_modules/.bin/gitlab-ci-local

die() { echo "bench: $*" >&2; exit 1; }
[ -f "$top/examples/pipelines/$name/.gitlab-ci.yml" ] || die "no pipeline examples/pipelines/$name"
command -v git >/dev/null || die "git is needed"
command -v rsync >/dev/null || die "rsync is needed by gitlab-ci-local's --shell-isolation (apt-get install rsync)"
if [ ! -x "$gcl" ] || [ "$("$gcl" --version 2>/dev/null)" != "$gcl_version" ]; then
	command -v npm >/dev/null || die "npm is needed to install gitlab-ci-local (apt-get install npm)"
	echo "bench: installing gitlab-ci-local $gcl_version into $npm_dir" >&2
	mkdir -p "$npm_dir"
	npm install --prefix "$npm_dir" --cache "$npm_dir/cache" --no-audit --no-fund "gitlab-ci-local@$gcl_version" >/dev/null
fi

work=$(mktemp -d /tmp/kiln-bench-pipeline.XXXXXX)
trap 'rm -rf "$work"' EXIT
export KILN_DATA_DIR=${KILN_DATA_DIR:-$top} KILN_LIBEXEC_DIR=${KILN_LIBEXEC_DIR:-$build}
export KILN_STATE_DIR=$work/state KILN_IMAGES_DIR=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
export GIT_CONFIG_NOSYSTEM=1 NO_COLOR=1

# One repository per tool, the same commit contents.
for t in kiln gcl; do
	cp -r "$top/examples/pipelines/$name" "$work/$t"
	git -C "$work/$t" init -q -b main
	git -C "$work/$t" add -A
	git -C "$work/$t" -c user.name=bench -c user.email=bench@example.invalid commit -q -m "bench: $name"
done

now() { date +%s%N; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

run_kiln() { (cd "$work/kiln" && "$build/kiln" exec --executor "${KILN_EXECUTOR:-qemu}") > "$work/kiln.log" 2>&1 || true; }
run_gcl() {
	(cd "$work/gcl" && rm -rf .gitlab-ci-local &&
		"$gcl" --force-shell-executor --shell-isolation --concurrency 1 --no-color) > "$work/gcl.log" 2>&1 || true
}

run_kiln
run_gcl
for i in $(seq 1 "$runs"); do
	t0=$(now); run_kiln; t1=$(now)
	echo $(( (t1 - t0) / 1000000 )) >> "$work/kiln.ms"
	t0=$(now); run_gcl; t1=$(now)
	echo $(( (t1 - t0) / 1000000 )) >> "$work/gcl.ms"
done

# Jobs that ran, and how they ended, from each tool's own summary.
kiln_jobs=$(sed -n '/^pipeline #/,$p' "$work/kiln.log" | grep -cE '^  [^ ]+ +.+ +(PASS|WARN|FAIL) ' || true)
kiln_res=$(sed -n "/^pipeline #/p" "$work/kiln.log" | sed "s/.*): //; s/, in [0-9.a-z]*$//")
gcl_pass=$(grep -cE '^ PASS ' "$work/gcl.log" || true)
gcl_warn=$(grep -cE '^ WARN ' "$work/gcl.log" || true)
gcl_fail=$(grep -cE '^ FAIL ' "$work/gcl.log" || true)
gcl_jobs=$((gcl_pass + gcl_warn + gcl_fail))
k=$(median < "$work/kiln.ms")
g=$(median < "$work/gcl.ms")
executor=$(grep -m1 -o 'executor: .*' "$work/kiln.log" || echo "executor: ?")

echo "pipeline examples/pipelines/$name, concurrency 1, $runs runs each, medians (wall time of the whole command)"
printf '%-34s %10s   %s\n' "tool" "wall (s)" "jobs"
printf '%-34s %10.2f   %s (%s)\n' "kiln exec" "$(echo "$k" | awk '{print $1/1000}')" "$kiln_jobs" "$kiln_res"
printf '%-34s %10.2f   %s (%s passed, %s allowed to fail, %s failed)\n' "gitlab-ci-local $gcl_version (shell)" \
	"$(echo "$g" | awk '{print $1/1000}')" "$gcl_jobs" "$gcl_pass" "$gcl_warn" "$gcl_fail"
awk -v k="$k" -v g="$g" -v n="$kiln_jobs" 'BEGIN {
	printf "ratio kiln / gitlab-ci-local: %.1fx\n", k / g
	if (n > 0) printf "cost of kiln per job over gitlab-ci-local: %.2f s (%d jobs)\n", (k - g) / 1000 / n, n
}'
echo "kiln $executor; every kiln job gets a fresh VM (own kernel, root filesystem, workspace image, network),"
echo "gitlab-ci-local's shell mode runs each job as a process on this host: no isolation."
[ "$gcl_fail" = 0 ] || echo "note: gitlab-ci-local failed $gcl_fail job(s) that kiln ran as written (see below); timings still compare the same scripts."
[ "$gcl_fail" = 0 ] || sed -n '/^ PASS \|^ WARN \|^ FAIL /,$p' "$work/gcl.log" | sed 's/^/  gcl| /' | head -20
