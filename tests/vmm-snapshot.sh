#!/bin/sh
# vmm-snapshot.sh: kiln-vmm snapshots on real KVM.  Automake test, plain
# POSIX sh; exit 77 skips.  Like tests/vmm-boot.sh it re-runs itself inside
# tests/kvm-sandbox (which takes the host-wide VM test lock), where, with
# the test root image (busybox + tests/guest/vmm-test-init, kiln.test=count:
# a counter in memory mirrored on disk, bytes from /dev/hwrng), the minimal
# kernel's vmlinux, 2 vCPUs, a copy-on-write root, vsock and entropy, it
#   cold      boots, waits for "tick 10", sends SIGUSR2: kiln-vmm saves to
#             snapshot.save_to and exits 0 ("snapshot saved"); the guest's
#             vmgenid driver found kiln-vmm's VM generation ID device
#   restore   restores twice from that snapshot: each guest goes on from
#             the count it had (the output before the save and after it,
#             end to end, count on without a gap; memory and disk agree,
#             no FAIL), and the two read different random bytes at N+2;
#             then once more with "memory": "copy"; each logs the CRNG
#             reseed that the new VM generation ID caused ("VMFORK RESEED")
#   refuse    a changed header byte, a truncated state file, another
#             machine (vCPUs) and a truncated memory file are refused
#             with a one-line error, before the guest runs
# and reports process start -> first guest tick, restored against cold,
# with the line "ratio restored/cold (first tick): R".
#
# Environment: KILN_SKIP_VM_TESTS=1 skips; KILN_IMAGES_DIR, KILN_TEST_KERNEL_DIR
# as in tests/vmm-boot.sh; KILN_VMM_SNAPSHOT_KEEP=DIR keeps logs in DIR.
set -u

: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)

skip() {
	echo "SKIP: $*"
	exit 77
}

find_image() {
	for d in ${KILN_IMAGES_DIR:+"$KILN_IMAGES_DIR"} /var/lib/kiln/images; do
		if [ -f "$d/$1/$2" ]; then
			echo "$d/$1/$2"
			return
		fi
	done
}

###########################################################################
# Outside: check, then run this script again inside the sandbox.
###########################################################################
if [ "${KILN_VMM_SNAPSHOT_INSIDE:-}" != 1 ]; then
	[ -z "${KILN_SKIP_VM_TESTS:-}" ] || skip "KILN_SKIP_VM_TESTS is set"
	sandbox=${KILN_IMAGES_DIR:-/var/lib/kiln/images}/sandbox
	[ -f "$sandbox/vmlinuz" ] && [ -f "$sandbox/initrd.img" ] ||
		skip "no sandbox image in $sandbox (build it: kiln images build sandbox)"
	command -v "${KILN_QEMU:-qemu-system-x86_64}" >/dev/null 2>&1 || skip "qemu-system-x86_64 not found"
	for t in mke2fs timeout; do
		command -v $t >/dev/null 2>&1 || skip "$t not found"
	done
	[ -x /bin/busybox ] || skip "/bin/busybox not found (apt-get install busybox-static)"
	[ -x "$top_builddir/kiln-vmm" ] || skip "$top_builddir/kiln-vmm is not built"
	[ -x "$top_builddir/tests/guest/vmm-test-init" ] || skip "tests/guest/vmm-test-init is not built"
	if [ -n "${KILN_TEST_KERNEL_DIR:-}" ]; then
		vml=$KILN_TEST_KERNEL_DIR/vmlinux
	else
		vml=$(find_image kernel vmlinux)
	fi
	[ -n "$vml" ] && [ -f "$vml" ] || skip "no kernel image's vmlinux (kiln images build kernel)"
	# A kernel built before CONFIG_VMGENID was in kiln-guest.config cannot
	# check the VM generation ID: its config beside vmlinux says so.
	vmgenid=unknown
	if [ -f "$(dirname "$vml")/config" ]; then
		if grep -q '^CONFIG_VMGENID=y' "$(dirname "$vml")/config"; then vmgenid=1; else vmgenid=0; fi
	fi
	out_opt=''
	if [ -n "${KILN_VMM_SNAPSHOT_KEEP:-}" ]; then
		mkdir -p "$KILN_VMM_SNAPSHOT_KEEP" || exit 1
		out_opt="--out=$KILN_VMM_SNAPSHOT_KEEP"
	fi
	rc=0
	"$top_srcdir/tests/kvm-sandbox" --timeout 900 --tries 3 $out_opt \
		--env top_srcdir="$top_srcdir" --env top_builddir="$top_builddir" \
		--env KILN_VMM_SNAPSHOT_INSIDE=1 --env KILN_VMLINUX="$vml" --env KILN_VMM_VMGENID=$vmgenid --env KILN_VMM_DEBUG \
		-- sh "$top_srcdir/tests/vmm-snapshot.sh" || rc=$?
	case $rc in
	0) echo "PASS: kiln-vmm snapshots"; exit 0 ;;
	77) skip "the sandbox could not run (see above)" ;;
	124) echo "FAIL: the sandbox timed out, stalled or crashed its guest three times"; exit 1 ;;
	*) echo "FAIL: kiln-vmm snapshots (status $rc)"; exit 1 ;;
	esac
fi

###########################################################################
# Inside the sandbox.
###########################################################################
[ -n "${KILN_SANDBOX_OUT:-}" ] && grep -q 'kiln\.out=' /proc/cmdline ||
	{ echo "FAIL: KILN_VMM_SNAPSHOT_INSIDE is set outside tests/kvm-sandbox"; exit 1; }

VMM=$top_builddir/kiln-vmm
INIT=$top_builddir/tests/guest/vmm-test-init
BOOT_WAIT=300     # s for the cold boot to tick 10 (a boot takes 7 to 20 s here)
RUN_WAIT=120      # s for a restored guest to tick 5 more times
RESEED_WAIT=30    # s more for a restored guest to log its CRNG reseed
T=$(mktemp -d /tmp/vmm-snapshot.XXXXXX) || { echo "FAIL: mktemp"; exit 1; }
LOGS=$KILN_SANDBOX_OUT
vmm_pid=''
cleanup() {
	[ -z "$vmm_pid" ] || kill -KILL "$vmm_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed=''
fail() {
	echo "FAIL: $cur: $*"
	failed="$failed $cur"
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
ticks() { tr -d '\r' <"$1" | grep -a '^tick [0-9]* rng ' ; }
last_tick() { ticks "$1" | tail -n 1 | cut -d' ' -f2; }
first_tick() { ticks "$1" | head -n 1 | cut -d' ' -f2; }
rng_at() { ticks "$1" | awk -v n="$2" '$2 == n { print $4; exit }'; }

echo "building the test root image"
root=$T/rootdir
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$T/cow" "$T/snap" || exit 1
cp /bin/busybox "$root/bin/busybox" && ln -s busybox "$root/bin/sh" &&
	cp "$INIT" "$root/vmm-test-init" && "$INIT" --write-ref "$root/ref.bin" ||
	{ echo "FAIL: populating $root"; exit 1; }
IMG=$T/root.ext4
mke2fs -q -t ext4 -L kilntest -E root_owner=0:0 -d "$root" "$IMG" 32M || { echo "FAIL: mke2fs -d"; exit 1; }

# write_config NAME VCPUS SNAPSHOT_JSON: $T/NAME.json
write_config() {
	cat >"$T/$1.json" <<EOF
{
 "boot": {"kernel": "$KILN_VMLINUX",
  "cmdline": "console=ttyS0 reboot=k panic=-1 quiet root=/dev/vda rw rootfstype=ext4 init=/vmm-test-init kiln.test=count"},
 "machine": {"vcpus": $2, "mem_mib": 128},
 "drives": [{"id": "root", "path": "$IMG", "read_only": false, "cow": true}],
 "vsock": {"guest_cid": 3, "uds_path": "$T/v.sock"},
 "serial": {"output": "stdout"},
 "entropy": true,
 "snapshot": $3
}
EOF
}

# start NAME: kiln-vmm in the background (vmm_pid), t_start set.
start() {
	rm -f "$T/$1.rc"
	t_start=$(now)
	(
		KILN_VMM_TMPDIR=$T/cow KILN_VMM_TIMINGS=1 sh -c 'echo $$ >"$1"; shift; exec "$@"' _ "$T/$1.pid" \
			"$VMM" --config "$T/$1.json" >"$T/$1.serial" 2>"$T/$1.vmm"
		echo $? >"$T/$1.rc"
	) &
	i=0
	while [ ! -s "$T/$1.pid" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	vmm_pid=$(cat "$T/$1.pid")
}

# wait_tick NAME N LIMIT_S: until tick >= N (0) or the VM ended / time ran out (1).
# t_first: when the first tick line was seen.
wait_tick() {
	t_first='' deadline=$(($(date +%s) + $3))
	while :; do
		if [ -z "$t_first" ] && [ -n "$(first_tick "$T/$1.serial")" ]; then t_first=$(now); fi
		n=$(last_tick "$T/$1.serial")
		[ -n "$n" ] && [ "$n" -ge "$2" ] && return 0
		[ ! -f "$T/$1.rc" ] || return 1
		[ "$(date +%s)" -lt "$deadline" ] || return 1
		sleep 0.02
	done
}

wait_exit() { # wait_exit NAME LIMIT_S: rc set
	i=0
	while [ ! -f "$T/$1.rc" ] && [ $i -lt $(($2 * 20)) ]; do sleep 0.05; i=$((i + 1)); done
	rc=$(cat "$T/$1.rc" 2>/dev/null) || rc=''
	[ -n "$rc" ] || { kill -KILL "$vmm_pid" 2>/dev/null; rc=killed; }
	wait
	vmm_pid=''
	cp "$T/$1.serial" "$T/$1.vmm" "$T/$1.json" "$LOGS/" 2>/dev/null
}

show() { echo "---- $1 ----"; tail -n 20 "$1" | tr -d '\r'; echo "----"; }

# --- cold boot, then save -----------------------------------------------------
cur=cold
echo "== $cur"
write_config cold 2 "{\"save_to\": \"$T/snap\"}"
start cold
if ! wait_tick cold 10 $BOOT_WAIT; then
	if ! tr -d '\r' <"$T/cold.serial" | grep -q '^BOOTED'; then
		echo "GLITCH: the guest never reached its init; asking for a fresh sandbox"
		wait_exit cold 1
		exit 75
	fi
	fail "no tick 10 within $BOOT_WAIT s"
	show "$T/cold.serial"
	wait_exit cold 1
	exit 1
fi
cold_first=$(elapsed "$t_start" "$t_first")
echo "cold: first tick $cold_first s after start, then $(elapsed "$t_first" "$(now)") s to tick 10"
kill -USR2 "$vmm_pid"
wait_exit cold 120
saved=$(last_tick "$T/cold.serial")
echo "cold: first tick $cold_first s after start; saved at tick $saved; exit status $rc"
grep -h 'first KVM_RUN\|snapshot saved' "$T/cold.vmm" | sed 's/^/cold: /'
[ "$rc" = 0 ] || fail "exit status $rc after SIGUSR2, want 0: $(tail -n 2 "$T/cold.vmm")"
grep -q 'snapshot saved to' "$T/cold.vmm" || fail "no 'snapshot saved' line"
[ -f "$T/snap/state" ] && [ -f "$T/snap/memory" ] || fail "no state or memory file in $T/snap"
# The VM generation ID: unless the kernel lacks the driver (its config, or
# for a kernel without one the guest, says so), the driver bound at boot and
# nothing reseeded it before any restore.
tr -d '\r' <"$T/cold.serial" | grep -a '^vmgenid: ' | sed 's/^/cold: /'
case ${KILN_VMM_VMGENID:-unknown} in
0 | 1) want_vmgenid=$KILN_VMM_VMGENID ;;
*) if tr -d '\r' <"$T/cold.serial" | grep -aq '^vmgenid: no driver'; then want_vmgenid=0; else want_vmgenid=1; fi ;;
esac
if [ "$want_vmgenid" = 1 ]; then
	tr -d '\r' <"$T/cold.serial" | grep -aq '^vmgenid: bound ' || fail "the guest's vmgenid driver did not bind"
	tr -d '\r' <"$T/cold.serial" | grep -aq '^VMFORK RESEED' && fail "a vmfork reseed in the cold boot"
else
	echo "NOTE: the kernel has no vmgenid driver (CONFIG_VMGENID; rebuild it: kiln images build kernel): VM generation ID checks skipped"
fi
ls -ls "$T/snap" | sed 's/^/cold: /'
[ -z "$failed" ] || { show "$T/cold.vmm"; exit 1; }

# --- restores ---------------------------------------------------------------------
write_config r1 2 "{\"load\": \"$T/snap\"}"
cp "$T/r1.json" "$T/r2.json"
write_config r3 2 "{\"load\": \"$T/snap\", \"memory\": \"copy\"}"
for r in r1 r2 r3; do
	cur=$r
	echo "== $cur$([ $r = r3 ] && echo ' (memory copied, not mapped)')"
	start "$r"
	ok=0
	wait_tick "$r" $((saved + 5)) $RUN_WAIT && ok=1
	t_last=$(now)
	reseed=0
	if [ $ok = 1 ] && [ "$want_vmgenid" = 1 ]; then
		i=0
		while [ $i -lt $((RESEED_WAIT * 20)) ] && [ ! -f "$T/$r.rc" ]; do
			tr -d '\r' <"$T/$r.serial" | grep -aq '^VMFORK RESEED' && { reseed=1; break; }
			sleep 0.05
			i=$((i + 1))
		done
	fi
	kill -INT "$vmm_pid" 2>/dev/null
	wait_exit "$r" 30
	first=$(first_tick "$T/$r.serial")
	if [ $ok = 1 ]; then
		eval "${r}_first=$(elapsed "$t_start" "$t_first")"
		eval "echo \"$r: first tick \$${r}_first s after start, tick $first; then $(elapsed "$t_first" "$t_last") s to tick $((saved + 5))\""
	fi
	grep -h 'first KVM_RUN\|posted before the save' "$T/$r.vmm" | sed "s/^/$r: /"
	[ $ok = 1 ] || { fail "did not reach tick $((saved + 5)) (status $rc)"; show "$T/$r.serial"; show "$T/$r.vmm"; continue; }
	# The save may fall in the middle of a line: the cold boot's output and
	# the restored one's, end to end, must count 1, 2, 3, ... without a gap
	# or a repeat, each line whole.
	cat "$T/cold.serial" "$T/$r.serial" >"$T/$r.joined"
	# (The last line may be cut short by the SIGINT that ended the VM.)
	n_lines=$(ticks "$T/$r.joined" | wc -l)
	gap=$(ticks "$T/$r.joined" | awk -v last="$n_lines" \
		'$2 != NR || (NR < last && $4 != "none" && length($4) != 64) { print "line " NR ": " $0; exit }')
	[ -z "$gap" ] || fail "the count does not go on where it was: $gap"
	[ "$first" -le $((saved + 2)) ] || fail "first tick after restore is $first, saved at $saved"
	if tr -d '\r' <"$T/$r.serial" | grep -a '^FAIL'; then fail "the guest failed"; fi
	grep -q 'transport reset' "$T/$r.vmm" && fail "no event buffer for the vsock transport reset"
	if [ "$want_vmgenid" = 1 ]; then
		if [ $reseed = 1 ]; then
			echo "$r: the new VM generation ID reseeded the guest's CRNG (tick $(tr -d '\r' <"$T/$r.serial" |
				grep -a -B1 '^VMFORK RESEED' | head -n 1 | cut -d' ' -f2))"
		else
			fail "no 'crng reseeded due to virtual machine fork' in the guest's log"
		fi
	fi
done
cur=entropy
a=$(rng_at "$T/r1.serial" $((saved + 2))) b=$(rng_at "$T/r2.serial" $((saved + 2)))
echo "entropy: tick $((saved + 2)): r1 $a, r2 $b"
if [ -z "$a" ] || [ "$a" = none ]; then
	fail "no random bytes read (no /dev/hwrng?)"
elif [ "$a" = "$b" ]; then
	fail "two restores read the same random bytes"
fi

# --- refusals -------------------------------------------------------------------------
refuse() { # refuse CASE WANT: kiln-vmm must fail at once with WANT in one line
	cur=$1
	start "$1"
	wait_exit "$1" 60
	msg=$(cat "$T/$1.vmm")
	echo "$1: status $rc: $msg"
	[ "$rc" != 0 ] && [ "$rc" != killed ] || fail "status $rc, want a failure"
	[ "$(grep -c . "$T/$1.vmm")" = 1 ] || fail "not a one-line error"
	case $msg in *"$2"*) ;; *) fail "the error does not say '$2'" ;; esac
	[ -z "$(ticks "$T/$1.serial")" ] || fail "the guest ran"
}
mkdir -p "$T/bad" && cp "$T/snap/state" "$T/bad/state" && ln -s "$T/snap/memory" "$T/bad/memory"
printf 'X' | dd of="$T/bad/state" bs=1 seek=30 conv=notrunc 2>/dev/null
write_config changed 2 "{\"load\": \"$T/bad\"}"
refuse changed "digest mismatch"
cp "$T/snap/state" "$T/bad/state" && truncate -s -1 "$T/bad/state"
write_config truncated 2 "{\"load\": \"$T/bad\"}"
refuse truncated "truncated"
write_config machine 1 "{\"load\": \"$T/snap\"}"
refuse machine "another machine"
rm "$T/bad/memory" && cp "$T/snap/state" "$T/bad/state" && truncate -s 1M "$T/bad/memory"
write_config memory 2 "{\"load\": \"$T/bad\"}"
refuse memory "truncated?"

if [ -n "${r1_first:-}" ] && [ -n "${r2_first:-}" ]; then
	echo "process start -> first guest tick: cold boot $cold_first s, restored $r1_first s and $r2_first s (memory mapped), ${r3_first:-?} s (memory copied)"
	awk -v c="$cold_first" -v a="$r1_first" -v b="$r2_first" \
		'BEGIN { printf "ratio restored/cold (first tick): %.3f\n", (a + b) / 2 / c }'
	[ -z "${r3_first:-}" ] || awk -v c="$cold_first" -v a="$r3_first" \
		'BEGIN { printf "ratio restored (memory copied)/cold (first tick): %.3f\n", a / c }'
fi
if [ -n "$failed" ]; then
	echo "failed:$failed"
	exit 1
fi
echo "all passed"
exit 0
