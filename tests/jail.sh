#!/bin/bash
# The jail around a real job's VMM (the qemu executor, TCG here): while the
# job runs, QEMU is the slot's unprivileged uid with no capabilities,
# no_new_privs and a seccomp filter in every thread, in namespaces of its
# own, with a root that holds only the VM's files, a network namespace with
# only lo, and its cgroup; after the job nothing of it is left.
# No network (only the network helper's tests make taps).
# Exit 77 (SKIP) with the reason when images, QEMU or root are missing.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}

skip() { echo "SKIP: $*"; exit 77; }
[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for i in kernel debian; do
	[ -f "$images/$i/manifest.json" ] || skip "image $i is not built (./tools/dev images $i)"
done
[ "$(id -u)" = 0 ] || skip "needs root (namespaces, cgroups)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
# One VM test at a time (the lock): others' VMs would be counted here.
. "$top_srcdir/tests/vmtest.sh"

work=$(mktemp -d /tmp/kiln-jail-test.XXXXXX)
state=$work/state
fails=0
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$state KILN_IMAGES_DIR=$images
export KILN_CONFIG=$work/none.yml
kiln=$top_builddir/kiln
kiln_pid=""

cleanup() { [ -n "$kiln_pid" ] && kill -KILL "$kiln_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

cgroups() { ls -d /sys/fs/cgroup/kiln/*/ /sys/fs/cgroup/*/kiln/*/ 2>/dev/null | sort; }
# The cgroups of the VMs of the kiln with pid $1 (named after the job
# folder, <job>.<kiln's pid>.<random>): other tests' VMs may run meanwhile.
mine() { cgroups | grep -F ".$1."; }

"$top_srcdir/examples/make-demo-repo.sh" "$work/demo.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }
sed "s|/var/lib/kiln/examples/demo.git|$work/demo.git|; s/\"sleep 600\"/\"sleep 300\"/; s/\"timeout\": 5/\"timeout\": 600/g" \
	"$top_srcdir/examples/timeout.json" > "$work/long.json"
"$kiln" exec --executor qemu --no-network --job-file "$work/long.json" > "$work/long.log" 2>&1 &
kiln_pid=$!
for _ in $(seq 1 1800); do grep -q 'sleeping past' "$work/long.log" && break; sleep 0.1; done
grep -q 'sleeping past' "$work/long.log" || { echo "FAIL: the job did not start"; tail -5 "$work/long.log"; exit 1; }

# The VMM: the one process in the job's new cgroup.
cg=$(mine "$kiln_pid" | head -1)
mykiln=$kiln_pid
[ -n "$cg" ] && ok "the VM has its cgroup ($cg)" || bad "no cgroup for the VM"
pid=$(head -1 "${cg}cgroup.procs" 2>/dev/null)
[ -n "$pid" ] && [ "$(cat "/proc/$pid/comm")" = qemu-system-x86 ] && ok "QEMU ($pid) is in it" || bad "QEMU is not in $cg"
if [ -n "$pid" ]; then
	field() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pid/status"; }
	uid=$(field Uid)
	[ "$uid" -ge 900000 ] && [ "$(field Gid)" = "$uid" ] && ok "uid/gid $uid" || bad "uid $uid, gid $(field Gid)"
	[ "$(field CapEff)" = 0000000000000000 ] && [ "$(field CapPrm)" = 0000000000000000 ] &&
		[ "$(field CapBnd)" = 0000000000000000 ] && ok "no capabilities" || bad "capabilities: $(grep ^Cap "/proc/$pid/status" | tr '\n' ' ')"
	[ "$(field NoNewPrivs)" = 1 ] && ok "no_new_privs" || bad "NoNewPrivs $(field NoNewPrivs)"
	unfiltered=$(grep -L '^Seccomp:.2$' /proc/"$pid"/task/*/status)
	[ -z "$unfiltered" ] && ok "every thread ($(ls /proc/"$pid"/task | wc -l)) has a seccomp filter (-sandbox on)" ||
		bad "threads without a filter: $unfiltered"
	for ns in mnt pid net ipc uts; do
		[ "$(readlink "/proc/$pid/ns/$ns")" != "$(readlink "/proc/self/ns/$ns")" ] && ok "own $ns namespace" ||
			bad "shares kiln's $ns namespace"
	done
	root=$(ls "/proc/$pid/root" | tr '\n' ' ')
	for f in etc home proc sys tmp var run root boot; do
		[ ! -e "/proc/$pid/root/$f" ] || bad "the jail's root has /$f ($root)"
	done
	for f in kernel rootfs workspace console.log vm dev usr; do
		[ -e "/proc/$pid/root/$f" ] || bad "the jail's root lacks /$f ($root)"
	done
	ok "the jail's root: $root"
	[ "$(tail -n +3 "/proc/$pid/net/dev" | cut -d: -f1 | tr -d ' ')" = lo ] && ok "its network namespace has only lo" ||
		bad "network devices: $(tail -n +3 "/proc/$pid/net/dev" | cut -d: -f1 | tr '\n' ' ')"
	tr '\0' '\n' < "/proc/$pid/cmdline" | grep -qx -- '-sandbox' && ok "QEMU runs with -sandbox" || bad "no -sandbox"
	! tr '\0' '\n' < "/proc/$pid/cmdline" | grep -q "$state" && ok "its arguments name no host path of the job" ||
		bad "its arguments name $state"
fi

kill -INT "$kiln_pid"
wait "$kiln_pid"
kiln_pid=""
[ -z "$(ls -A "$state/jobs" 2>/dev/null)" ] && ok "no job folder left" || bad "job folder left: $(ls "$state/jobs")"
[ -z "$(mine "$mykiln")" ] && ok "no cgroup left" || bad "cgroups left: $(mine "$mykiln")"
[ -z "$pid" ] || [ ! -e "/proc/$pid" ] && ok "QEMU is gone" || bad "QEMU $pid outlived the job"

# SIGKILL of kiln: the jailed QEMU dies with it (the parent-death signal
# survives the uid switch); its cgroup empties (the next kiln removes it).
"$kiln" exec --executor qemu --no-network --job-file "$work/long.json" > "$work/long.log" 2>&1 &
kiln_pid=$!
mykiln=$kiln_pid
for _ in $(seq 1 1800); do grep -q 'sleeping past' "$work/long.log" && break; sleep 0.1; done
cg=$(mine "$kiln_pid" | head -1)
pid=$(head -1 "${cg}cgroup.procs" 2>/dev/null)
kill -KILL "$kiln_pid"
wait "$kiln_pid" 2>/dev/null
kiln_pid=""
for _ in $(seq 1 100); do [ -n "$pid" ] && [ ! -e "/proc/$pid" ] && break; sleep 0.1; done
[ -n "$pid" ] && [ ! -e "/proc/$pid" ] && [ -z "$(cat "${cg}cgroup.procs")" ] && ok "SIGKILL of kiln: QEMU died with it" ||
	bad "SIGKILL of kiln: QEMU ${pid:-?} outlived it"
for d in $(mine "$mykiln"); do rmdir "$d"; done

# jail: false is the only way to run unjailed, and it says so in kiln doctor.
printf 'jail: false\n' > "$work/off.yml"
KILN_CONFIG=$work/off.yml "$kiln" doctor | grep -q '^warn  jail: off' && ok "doctor: jail: false is a warning" ||
	bad "doctor does not report jail: false"

[ "$fails" = 0 ] && echo "all jail checks passed" || echo "$fails jail checks failed"
[ "$fails" = 0 ]
