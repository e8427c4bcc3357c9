#!/bin/sh
# vmm-boot.sh: acceptance test of kiln-vmm (the jailed build) booting real
# guests on real KVM.  Automake test, plain POSIX sh; exit 77 skips.
#
# Outside the KVM sandbox it checks what it needs and re-runs itself inside
# tests/kvm-sandbox (this host's /dev/kvm may be one that cannot boot stock
# kernels, and the test creates a tap: only ever inside the sandbox VM),
# one sandbox per case; a sandbox that times out (the emulated machine
# stopped) is run again (four runs at most), a case that fails is not.
# Inside, with a test root ext4 (busybox + tests/guest/vmm-test-init as
# init=, a pattern file /ref.bin) attached copy-on-write, a tap with a tx
# rate limiter, vsock and entropy, it boots
#   bzimage  the minimal kernel's bzImage (64-bit Linux boot protocol)
#   pvh      the minimal kernel's vmlinux (PVH entry)
#   debian   Debian's cloud kernel + its initramfs (devices found via ACPI)
# and asserts for each: "SUCCESS" on the serial console (the guest checked
# its disk, both vsock directions, ping, a TCP stream), kiln-vmm exit
# status 0, the root image's sha256 unchanged, the guest's TCP rate within
# 10 % of the limiter's, no socket file and no overlay file left behind.
# Then the ends of a VM whose guest sleeps (kiln.test=sleep):
#   sigkill  SIGKILL: no overlay file is left (it is unlinked at creation);
#            the socket file stays (a killed process cannot unlink: the
#            runner removes it) and the next kiln-vmm on that path starts
#   sigterm  SIGTERM, minimal kernel (no keyboard driver, so the guest
#            cannot see Ctrl-Alt-Del): exit 1 at the 5 s grace period
#   sigterm-debian  SIGTERM, cloud kernel: the guest gets Ctrl-Alt-Del and
#            reboots, exit 0 well before the grace period
#   (both: no socket file left)
# And a guest that attacks the devices (kiln.test=hostile, minimal kernel,
# tests/guest/hostile.c):
#   hostile  every virtio device but the root disk (entropy, net, vsock and a
#            scratch drive) unbound from its driver and driven by hand: rings
#            outside RAM, descriptor loops, over-long chains, buffers outside
#            or straddling the end of RAM, reset with a request in flight,
#            queues rewritten after DRIVER_OK, every register and config
#            offset read and written at widths 1, 2, 4 and 8.  Asserts
#            "SUCCESS" (the root disk still reads /ref.bin right afterwards),
#            exit status 0, no crash on kiln-vmm's stderr, NEEDS_RESET logged,
#            neither image changed, nothing left behind.  What each device
#            answered is printed ("hostile:" lines); an unexpected answer is
#            reported, not failed.
#
# Environment:
#   KILN_SKIP_VM_TESTS=1      skip
#   KILN_IMAGES_DIR           where built images live (also the sandbox's)
#   KILN_TEST_KERNEL_DIR      a folder with the minimal kernel's bzImage and
#                             vmlinux (default: the `kernel` image)
#   KILN_TEST_DEBIAN_DIR      a folder with vmlinuz and initrd.img (default:
#                             the `debian-kernel` image)
#   KILN_VMM_BOOT_CASES       the cases to run (default: all that have images)
#   KILN_VMM_BOOT_KEEP=DIR    keep logs, configs and results in DIR
#   KILN_VMM_TEST_VERBOSE=1   full kernel messages on the console (slower)
#   KILN_VMM_HOSTILE_TIMEOUT=S  how long the hostile case may run (default 540)
#   KILN_VMM_HOSTILE_QUIET=S    its guest silent that long with every vCPU
#                               halted in KVM: a stalled sandbox, run again (120)
#   KILN_VMM_TEST_RATE=B      the tx limit in bytes/s (default 128000: low enough that a
#                             TCG guest on a loaded 2-core host still exceeds it)
set -u

: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"
top_srcdir=$(cd "$top_srcdir" && pwd)
top_builddir=$(cd "$top_builddir" && pwd)

ALL_CASES="bzimage pvh debian sigkill sigterm sigterm-debian hostile"

skip() {
	echo "SKIP: $*"
	exit 77
}

# find_image NAME FILE: the path of FILE of a built image, or nothing.
find_image() {
	for d in ${KILN_IMAGES_DIR:+"$KILN_IMAGES_DIR"} /var/lib/kiln/images; do
		if [ -f "$d/$1/$2" ]; then
			echo "$d/$1/$2"
			return
		fi
	done
	p=$("$top_builddir/kiln" images path "$1" "$2" 2>/dev/null) && [ -f "$p" ] && echo "$p"
}

###########################################################################
# Outside: check, then run this script again inside the sandbox.
###########################################################################
if [ "${KILN_VMM_BOOT_INSIDE:-}" != 1 ]; then
	[ -z "${KILN_SKIP_VM_TESTS:-}" ] || skip "KILN_SKIP_VM_TESTS is set"
	sandbox=${KILN_IMAGES_DIR:-/var/lib/kiln/images}/sandbox
	[ -f "$sandbox/vmlinuz" ] && [ -f "$sandbox/initrd.img" ] ||
		skip "no sandbox image in $sandbox (build it: kiln images build sandbox)"
	command -v "${KILN_QEMU:-qemu-system-x86_64}" >/dev/null 2>&1 || skip "qemu-system-x86_64 not found"
	for t in mke2fs python3 ip sha256sum timeout; do
		command -v $t >/dev/null 2>&1 || skip "$t not found"
	done
	[ -x /bin/busybox ] || skip "/bin/busybox not found (apt-get install busybox-static)"
	[ -x "$top_builddir/kiln-vmm" ] || skip "$top_builddir/kiln-vmm is not built"
	[ -x "$top_builddir/tests/guest/vmm-test-init" ] || skip "tests/guest/vmm-test-init is not built (make check builds it)"

	if [ -n "${KILN_TEST_KERNEL_DIR:-}" ]; then
		bz=$KILN_TEST_KERNEL_DIR/bzImage vml=$KILN_TEST_KERNEL_DIR/vmlinux
	else
		bz=$(find_image kernel bzImage) vml=$(find_image kernel vmlinux)
	fi
	if [ -n "${KILN_TEST_DEBIAN_DIR:-}" ]; then
		dvm=$KILN_TEST_DEBIAN_DIR/vmlinuz drd=$KILN_TEST_DEBIAN_DIR/initrd.img
	else
		dvm=$(find_image debian-kernel vmlinuz) drd=$(find_image debian-kernel initrd.img)
	fi
	cases='' missing=''
	for c in ${KILN_VMM_BOOT_CASES:-$ALL_CASES}; do
		case $c in
		bzimage) need="$bz" what="the kernel image's bzImage" ;;
		pvh | sigkill | sigterm | hostile) need="$vml" what="the kernel image's vmlinux" ;;
		debian | sigterm-debian) need="$dvm" what="the debian-kernel image" ;;
		*) echo "FAIL: unknown case '$c' in KILN_VMM_BOOT_CASES (cases: $ALL_CASES)"; exit 1 ;;
		esac
		[ "$c" = debian ] || [ "$c" = sigterm-debian ] && { [ -f "$drd" ] || need=''; }
		if [ -n "$need" ] && [ -f "$need" ]; then
			cases="$cases $c"
		else
			missing="$missing $c"
			echo "note: case $c needs $what (kiln images build kernel debian-kernel, or KILN_TEST_KERNEL_DIR / KILN_TEST_DEBIAN_DIR)"
		fi
	done
	[ -n "$cases" ] || skip "no kernel image for any case:$missing"

	# One sandbox per case: the emulated machine (TCG emulating SVM) now
	# and then stops altogether under load, and a case whose sandbox timed
	# out or stalled, or whose guest crashed before its init ran (exit 75),
	# is run again in a fresh one (kvm-sandbox --tries), reported
	# as such.  A case that fails inside the sandbox is never retried.
	# sigterm starts over the socket file sigkill leaves: one sandbox.
	units=$(echo $cases | sed 's/sigkill sigterm\( \|$\)/sigkill+sigterm\1/')
	passed='' failed=''
	for unit in $units; do
		c=$(echo "$unit" | tr + ' ')
		out_opt=''
		if [ -n "${KILN_VMM_BOOT_KEEP:-}" ]; then
			mkdir -p "$KILN_VMM_BOOT_KEEP/$unit" || exit 1
			out_opt="--out=$KILN_VMM_BOOT_KEEP/$unit"
		fi
		rc=0
		"$top_srcdir/tests/kvm-sandbox" --timeout 720 --tries 4 $out_opt \
			--env top_srcdir="$top_srcdir" --env top_builddir="$top_builddir" \
			--env KILN_VMM_BOOT_INSIDE=1 --env KILN_VMM_BOOT_CASES="$c" \
			--env KILN_BZIMAGE="$bz" --env KILN_VMLINUX="$vml" \
			--env KILN_DEBIAN_VMLINUZ="$dvm" --env KILN_DEBIAN_INITRD="$drd" \
			--env KILN_VMM_TEST_VERBOSE --env KILN_VMM_TEST_RATE --env KILN_VMM_DEBUG --env KILN_VMM_HOSTILE_TIMEOUT --env KILN_VMM_HOSTILE_QUIET \
			-- sh "$top_srcdir/tests/vmm-boot.sh" || rc=$?
		case $rc in
		0) passed="$passed $unit" ;;
		77) skip "the sandbox could not run (see above)" ;;
		124) echo "FAIL: $unit: the sandbox timed out, stalled or crashed its guest four times"; failed="$failed $unit" ;;
		125) echo "FAIL: $unit: the sandbox itself failed"; failed="$failed $unit" ;;
		*) echo "FAIL: $unit: kiln-vmm acceptance failed (status $rc)"; failed="$failed $unit" ;;
		esac
	done
	if [ -n "$failed" ]; then
		echo "FAIL: kiln-vmm acceptance:$failed failed${passed:+;$passed passed}"
		exit 1
	fi
	[ -z "$missing" ] || skip "ran$cases (all passed); no kernel image for$missing"
	echo "PASS: kiln-vmm acceptance:$cases"
	exit 0
fi

###########################################################################
# Inside the sandbox.
###########################################################################
# Never on a real host: the tap and addresses below are the sandbox's own.
[ -n "${KILN_SANDBOX_OUT:-}" ] && grep -q 'kiln\.out=' /proc/cmdline ||
	{ echo "FAIL: KILN_VMM_BOOT_INSIDE is set outside tests/kvm-sandbox; refusing to touch this host's network"; exit 1; }

VMM=$top_builddir/kiln-vmm
INIT=$top_builddir/tests/guest/vmm-test-init
HOSTPY=$top_srcdir/tests/vmm-boot-host.py
TAP=ktest0
HOST_IP=172.31.0.1 GUEST_IP=172.31.0.2
GRACE=5 SLACK=3
# The limiter: a small bucket (0.1 s worth), so the burst at the start is
# short; the guest sends 4 s worth.
RATE=${KILN_VMM_TEST_RATE:-128000}
RL_REFILL_MS=100
RL_SIZE=$((RATE * RL_REFILL_MS / 1000))
RATE=$((RL_SIZE * 1000 / RL_REFILL_MS))
RATE_BYTES=$((RATE * 4 * 1448 / 1514))
VM_TIMEOUT=300
# Thousands of MMIO exits, each slow under nested TCG.
HOSTILE_TIMEOUT=${KILN_VMM_HOSTILE_TIMEOUT:-540}
# Its console says a line every few seconds at most.
HOSTILE_QUIET=${KILN_VMM_HOSTILE_QUIET:-120}
# A sleeper that has not said SLEEPING by then is stuck (a boot takes 7 to
# 20 s in the sandbox).
BOOT_WAIT=180

T=$(mktemp -d /tmp/vmm-boot.XXXXXX) || { echo "FAIL: mktemp"; exit 1; }
LOGS=$KILN_SANDBOX_OUT
helper_pid='' vmm_pid=''
cleanup() {
	[ -z "$helper_pid" ] || kill "$helper_pid" 2>/dev/null
	[ -z "$vmm_pid" ] || kill -KILL "$vmm_pid" 2>/dev/null
	wait 2>/dev/null
	ip link del "$TAP" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

failed='' passed=''
fail() {
	echo "FAIL: $cur: $*"
	case " $failed " in *" $cur "*) ;; *) failed="$failed $cur" ;; esac
}
# glitch CASE: true (and said) when the guest never reached its init and
# kiln-vmm saw it triple-fault or it was still running: the crash or the
# page-fault livelock the emulated SVM shows under load (tests/kvm-sandbox).
# Such a case is not failed; the script exits 75 and kvm-sandbox runs it
# again in a fresh machine.  A kiln-vmm that cannot boot a kernel fails
# the same way every time, and the fourth run fails the test.
glitched=''
glitch() {
	tr -d '\r' <"$T/$1.serial" | grep -q '^BOOTED' && return 1
	if grep -q 'triple fault' "$T/$1.vmm" 2>/dev/null; then
		why="the guest kernel triple-faulted before its init ran"
	elif [ "${2:-}" = running ]; then
		why="the guest kernel stopped before its init ran (kiln-vmm still running)"
	else
		return 1
	fi
	echo "GLITCH: $1: $why: $(tr -d '\r' <"$T/$1.serial" | grep -a . | tail -n 1)"
	cp "$T/$1.serial" "$T/$1.vmm" "$LOGS/" 2>/dev/null
	glitched="$glitched $1"
	return 0
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
show_log() { # show_log FILE TITLE: the tail of a log, for a failure
	echo "---- $2 (last 40 lines of $1) ----"
	tail -n 40 "$1" | tr -d '\r'
	echo "----"
}

# --- the test root image ------------------------------------------------
echo "building the test root image"
root=$T/rootdir
mkdir -p "$root/bin" "$root/dev" "$root/proc" "$root/sys" "$root/tmp" "$T/cow" || exit 1
cp /bin/busybox "$root/bin/busybox" && ln -s busybox "$root/bin/sh" &&
	cp "$INIT" "$root/vmm-test-init" && "$INIT" --write-ref "$root/ref.bin" ||
	{ echo "FAIL: populating $root"; exit 1; }
IMG=$T/root.ext4
mke2fs -q -t ext4 -L kilntest -E root_owner=0:0 -d "$root" "$IMG" 32M ||
	{ echo "FAIL: mke2fs -d"; exit 1; }
SUM=$(sha256sum "$IMG" | cut -d' ' -f1)
echo "root image $IMG: sha256 $SUM"

# --- the tap --------------------------------------------------------------
ip tuntap add "$TAP" mode tap && ip addr add "$HOST_IP/30" dev "$TAP" && ip link set "$TAP" up ||
	{ echo "FAIL: creating tap $TAP"; exit 1; }

quiet=quiet
[ -z "${KILN_VMM_TEST_VERBOSE:-}" ] || quiet=''

# write_config NAME KERNEL INITRD MODE [WITH_NET [SCRATCH_IMAGE]]: $T/NAME.json
write_config() {
	initrd_line='' net_line='' scratch_line=''
	[ -z "$3" ] || initrd_line="\"initrd\": \"$3\","
	[ -z "${6:-}" ] || scratch_line=", {\"id\": \"scratch\", \"path\": \"$6\", \"read_only\": false, \"cow\": true}"
	if [ -n "${5:-}" ]; then
		net_line="\"net\": [{\"id\": \"eth0\", \"tap\": \"$TAP\", \"mac\": \"06:00:ac:1f:00:02\",
	  \"tx_rate_limiter\": {\"bandwidth\": {\"size\": $RL_SIZE, \"refill_time\": $RL_REFILL_MS}}}],"
	fi
	cat >"$T/$1.json" <<EOF
{
 "boot": {"kernel": "$2", $initrd_line
  "cmdline": "console=ttyS0 reboot=k panic=-1 $quiet root=/dev/vda rw rootfstype=ext4 init=/vmm-test-init kiln.test=$4 kiln.ip=$GUEST_IP/30 kiln.gw=$HOST_IP kiln.rate_bytes=$RATE_BYTES"},
 "machine": {"vcpus": 2, "mem_mib": 256},
 "drives": [{"id": "root", "path": "$IMG", "read_only": false, "cow": true}$scratch_line],
 $net_line
 "vsock": {"guest_cid": 3, "uds_path": "$T/v.sock"},
 "serial": {"output": "stdout"},
 "entropy": true
}
EOF
}

# Files kiln-vmm must not leave: its socket, guest-connect sockets, overlays.
leftovers() {
	ls -d "$T"/v.sock "$T"/v.sock_* "$T"/cow/* 2>/dev/null
}

check_clean() { # check_clean: the image, the socket, the overlay folder
	[ "$(sha256sum "$IMG" | cut -d' ' -f1)" = "$SUM" ] || fail "the root image changed (cow: true must never write it)"
	left=$(leftovers)
	[ -z "$left" ] || { fail "left behind: $(echo $left)"; rm -f $left; }
}

# --- full runs: bzimage, pvh, debian ----------------------------------------
run_full() { # run_full CASE KERNEL INITRD
	cur=$1
	echo "== $cur: $2${3:+ + $3}"
	write_config "$cur" "$2" "$3" full net
	rm -f "$T/host.json" "$T/ready"
	python3 "$HOSTPY" --uds "$T/v.sock" --addr "$HOST_IP" --port 5001 --bytes "$RATE_BYTES" \
		--burst "$RL_SIZE" --timeout "$VM_TIMEOUT" --out "$T/host.json" --ready "$T/ready" \
		2>"$T/$cur.host.log" &
	helper_pid=$!
	i=0
	while [ ! -f "$T/ready" ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
	[ -f "$T/ready" ] || { fail "the host helper did not start"; cat "$T/$cur.host.log"; return; }
	t0=$(now)
	rc=0
	KILN_VMM_TMPDIR=$T/cow KILN_VMM_TIMINGS=1 timeout -k 5 $VM_TIMEOUT "$VMM" --config "$T/$cur.json" \
		>"$T/$cur.serial" 2>"$T/$cur.vmm" || rc=$?
	t1=$(now)
	# The helper is done once the guest is; give it a moment, then stop it.
	i=0
	while kill -0 "$helper_pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	kill "$helper_pid" 2>/dev/null
	wait "$helper_pid"
	hrc=$?
	helper_pid=''
	cp "$T/$cur.serial" "$T/$cur.vmm" "$T/$cur.host.log" "$T/$cur.json" "$LOGS/" 2>/dev/null
	[ ! -f "$T/host.json" ] || cp "$T/host.json" "$LOGS/$cur.host.json"

	echo "$cur: kiln-vmm ran $(elapsed "$t0" "$t1") s, exit status $rc"
	st=''
	[ $rc != 124 ] && [ $rc != 137 ] || st=running
	if glitch "$cur" $st; then
		check_clean
		return
	fi
	grep -h 'Guest-boot-time\|first KVM_RUN' "$T/$cur.vmm" | sed "s/^/$cur: /"
	grep -a '^vmm-test-init:' "$T/$cur.serial" | tr -d '\r' | sed "s/^/$cur: guest: /"
	[ $rc = 0 ] || fail "kiln-vmm exited with status $rc: $(grep -v 'Guest-boot-time\|first KVM_RUN' "$T/$cur.vmm" | tail -n 3)"
	if tr -d '\r' <"$T/$cur.serial" | grep -qx SUCCESS; then
		:
	else
		fail "no SUCCESS on the console: $(tr -d '\r' <"$T/$cur.serial" | grep -a '^FAIL' | head -n 1)"
		show_log "$T/$cur.serial" "serial console"
	fi
	grep -q 'Guest-boot-time = ' "$T/$cur.vmm" || fail "no boot-time marker (the guest's /dev/mem write) logged"
	if [ $hrc != 0 ] || [ ! -f "$T/host.json" ]; then
		fail "the host side failed (status $hrc)"
		cat "$T/$cur.host.log"
	fi
	[ -f "$T/host.json" ] && check_rate "$T/host.json"
	check_clean
	case " $failed " in *" $cur "*) ;; *) passed="$passed $cur"; echo "ok: $cur" ;; esac
}

check_rate() { # check_rate HOST_JSON: the TCP rate against the limiter's
	msg=$(python3 - "$1" "$RATE" "$RL_SIZE" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["tcp"]
want = float(sys.argv[2])
if "frame_rate" not in r:
    print("FAIL no rate measured: %s" % r.get("error", r))
    sys.exit()
dev = r["frame_rate"] / want - 1
print("%s tx rate %.0f B/s on the wire (payload %.0f B/s over %.2f s after the initial %s-byte bucket; "
      "first-to-last byte %.0f B/s), limit %.0f B/s: %+.1f %%"
      % ("ok" if abs(dev) <= 0.10 else "FAIL", r["frame_rate"], r["payload_rate"], r["window_s"],
         sys.argv[3], r.get("payload_rate_naive", 0), want, dev * 100))
EOF
)
	echo "$cur: $msg"
	case $msg in ok*) ;; *) fail "rate: ${msg#FAIL }" ;; esac
}

# --- ends: signals while the guest sleeps -------------------------------------
# start_sleeper CASE KERNEL INITRD: kiln-vmm in the background, vmm_pid set,
# $T/CASE.rc written when it exits; waits for "SLEEPING".
start_sleeper() {
	cur=$1
	echo "== $cur: $2${3:+ + $3}"
	write_config "$cur" "$2" "$3" sleep
	rm -f "$T/$cur.pid" "$T/$cur.rc"
	(
		KILN_VMM_TMPDIR=$T/cow sh -c 'echo $$ >"$1"; shift; exec "$@"' _ "$T/$cur.pid" \
			"$VMM" --config "$T/$cur.json" >"$T/$cur.serial" 2>"$T/$cur.vmm"
		echo $? >"$T/$cur.rc"
	) &
	i=0
	while [ ! -s "$T/$cur.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	vmm_pid=$(cat "$T/$cur.pid" 2>/dev/null)
	i=0
	while ! grep -q SLEEPING "$T/$cur.serial" 2>/dev/null; do
		if [ -f "$T/$cur.rc" ] || [ $i -ge $((BOOT_WAIT * 10)) ]; then
			st=running
			[ ! -f "$T/$cur.rc" ] || st=''
			glitch "$cur" $st && return 1
			fail "the guest never printed SLEEPING"
			show_log "$T/$cur.serial" "serial console"
			cat "$T/$cur.vmm"
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
	[ -S "$T/v.sock" ] || fail "no socket file $T/v.sock while the VM runs"
	return 0
}

# wait_exit CASE LIMIT_S: wait for the rc file; sets rc and took.
wait_exit() {
	t0=$(now)
	i=0
	while [ ! -f "$T/$1.rc" ] && [ $i -lt $(($2 * 10 + 100)) ]; do sleep 0.1; i=$((i + 1)); done
	took=$(elapsed "$t0" "$(now)")
	rc=$(cat "$T/$1.rc" 2>/dev/null) || rc=''
	wait
	vmm_pid=''
	cp "$T/$1.serial" "$T/$1.vmm" "$LOGS/" 2>/dev/null
}

run_sigkill() { # run_sigkill KERNEL
	start_sleeper sigkill "$1" '' || { kill -KILL "$vmm_pid" 2>/dev/null; wait; vmm_pid=''; return; }
	kill -KILL "$vmm_pid"
	wait_exit sigkill 10
	echo "sigkill: exited in $took s (status $rc)"
	[ "$rc" = 137 ] || fail "status $rc after SIGKILL, want 137"
	# Unlinked at creation: nothing of the overlay can outlive the process.
	[ -z "$(ls "$T/cow")" ] || fail "overlay files left: $(ls "$T/cow")"
	# A killed process cannot unlink its socket: the runner removes it, and
	# kiln-vmm itself clears a stale one at start (checked by the next case).
	if [ -S "$T/v.sock" ]; then
		echo "sigkill: the socket file stays after SIGKILL, as documented (the next kiln-vmm clears it)"
	else
		echo "sigkill: note: no socket file after SIGKILL"
	fi
	[ "$(sha256sum "$IMG" | cut -d' ' -f1)" = "$SUM" ] || fail "the root image changed"
	case " $failed " in *" $cur "*) ;; *) passed="$passed $cur"; echo "ok: $cur" ;; esac
}

run_sigterm() { # run_sigterm CASE KERNEL INITRD
	stale=''
	[ ! -S "$T/v.sock" ] || stale=yes
	start_sleeper "$1" "$2" "$3" || { kill -KILL "$vmm_pid" 2>/dev/null; wait; vmm_pid=''; return; }
	[ -z "$stale" ] || echo "$cur: started over the stale socket file a killed kiln-vmm left"
	kill -TERM "$vmm_pid"
	wait_exit "$cur" $((GRACE + SLACK))
	echo "$cur: exited $took s after SIGTERM, status $rc: $(grep -v 'Guest-boot-time\|SIGTERM: asked' "$T/$cur.vmm" | tail -n 1)"
	if [ -z "$rc" ]; then
		fail "still running $took s after SIGTERM (grace period $GRACE s)"
		kill -KILL "$(cat "$T/$cur.pid")" 2>/dev/null
		wait
	elif awk -v t="$took" -v m="$((GRACE + SLACK))" 'BEGIN { exit !(t > m) }'; then
		fail "took $took s to exit after SIGTERM (grace period $GRACE s + $SLACK s slack)"
	fi
	grep -q 'SIGTERM: asked the guest to shut down' "$T/$cur.vmm" || fail "no SIGTERM log line"
	if tr -d '\r' <"$T/$cur.serial" | grep -qx CTRL-ALT-DEL; then
		echo "$cur: the guest saw Ctrl-Alt-Del and rebooted"
		[ "$rc" = 0 ] || fail "the guest rebooted after Ctrl-Alt-Del but the status is $rc, want 0"
	else
		echo "$cur: the guest did not react (no keyboard driver): stopped at the grace period"
		[ "$rc" = 1 ] || fail "status $rc, want 1 (grace period expired)"
		grep -q 'grace period' "$T/$cur.vmm" || fail "no 'grace period' reason logged"
		[ "$4" != cad ] || fail "the guest should have seen Ctrl-Alt-Del"
	fi
	check_clean
	case " $failed " in *" $cur "*) ;; *) passed="$passed $cur"; echo "ok: $cur" ;; esac
}

# --- hostile: the guest attacks its devices -------------------------------------
# all_vcpus_halted PID: every thread of kiln-vmm PID asleep, its vCPUs in
# KVM's halt (kvm_vcpu_block), its event loop in epoll_wait.
all_vcpus_halted() {
	local t w n=0
	for t in /proc/$1/task/*; do
		w=$(cat $t/wchan 2>/dev/null)
		case $w in
		kvm_vcpu_block) n=$((n + 1)) ;;
		do_epoll_wait) ;;
		*) return 1 ;;
		esac
	done
	[ $n -gt 0 ]
}
run_hostile() { # run_hostile KERNEL
	cur=hostile
	echo "== $cur: $1"
	# The scratch drive holds the /ref.bin pattern: the guest checks what
	# a well-formed read of its sector 0 returns.
	SCRATCH=$T/scratch.img
	"$INIT" --write-ref "$SCRATCH" || { fail "writing $SCRATCH"; return; }
	scratch_sum=$(sha256sum "$SCRATCH" | cut -d' ' -f1)
	write_config "$cur" "$1" '' hostile net "$SCRATCH"
	t0=$(now)
	rc=0
	# Not `timeout`: a kiln-vmm still running at the limit is looked at
	# before it is killed (where each of its threads is), so that a hang
	# can be told from the sandbox's livelock afterwards.
	KILN_VMM_TMPDIR=$T/cow "$VMM" --config "$T/$cur.json" >"$T/$cur.serial" 2>"$T/$cur.vmm" &
	vmm_pid=$!
	deadline=$(($(date +%s) + HOSTILE_TIMEOUT))
	stalled='' last_size=-1 quiet_since=$(date +%s)
	while kill -0 $vmm_pid 2>/dev/null && [ "$(date +%s)" -lt $deadline ]; do
		sleep 0.5
		size=$(stat -c %s "$T/$cur.serial" 2>/dev/null || echo 0)
		if [ "$size" != "$last_size" ]; then
			last_size=$size quiet_since=$(date +%s)
		elif [ $(($(date +%s) - quiet_since)) -ge $HOSTILE_QUIET ] && all_vcpus_halted $vmm_pid; then
			stalled=1
			break
		fi
	done
	if kill -0 $vmm_pid 2>/dev/null; then
		for t in /proc/$vmm_pid/task/*; do
			ts=$(sed "s/^.*) //" $t/stat 2>/dev/null) # past the name, which may hold blanks
			echo "thread $(cat $t/comm 2>/dev/null): state $(echo "$ts" | cut -d' ' -f1)," \
				"utime+stime $(echo "$ts" | cut -d' ' -f12,13) ticks, wchan $(cat $t/wchan 2>/dev/null)," \
				"syscall $(cut -d' ' -f1 $t/syscall 2>/dev/null)"
		done >"$T/$cur.stuck"
		kill -TERM $vmm_pid
		sleep 5
		kill -KILL $vmm_pid 2>/dev/null
	fi
	wait $vmm_pid || rc=$?
	vmm_pid=''
	[ ! -s "$T/$cur.stuck" ] || rc=124
	t1=$(now)
	cp "$T/$cur.serial" "$T/$cur.vmm" "$T/$cur.json" "$LOGS/" 2>/dev/null
	echo "$cur: kiln-vmm ran $(elapsed "$t0" "$t1") s, exit status $rc"
	st=''
	[ $rc != 124 ] && [ $rc != 137 ] || st=running
	if glitch "$cur" $st; then
		check_clean
		return
	fi
	# The guest waits for its attacks' answers with usleep: every vCPU
	# halted in KVM with the console silent this long is a guest whose
	# timer never fired, as the emulated machine's stalls go (kiln-vmm's
	# threads all asleep, none in kiln-vmm's code). A fresh sandbox.
	if [ -n "$stalled" ]; then
		echo "GLITCH: $cur: every vCPU halted in KVM, the console silent for $HOSTILE_QUIET s: $(tr -d '\r' <"$T/$cur.serial" | grep -a . | tail -n 1)"
		sed "s/^/$cur: kiln-vmm then: /" "$T/$cur.stuck"
		cp "$T/$cur.stuck" "$LOGS/" 2>/dev/null
		glitched="$glitched $cur"
		check_clean
		return
	fi
	tr -d '\r' <"$T/$cur.serial" | grep -a '^hostile: \|^vmm-test-init: hostile' | sed "s/^/$cur: guest: /"
	unexpected=$(tr -d '\r' <"$T/$cur.serial" | grep -ac '^hostile: .*(UNEXPECTED)$')
	echo "$cur: $unexpected unexpected device answers (reported, not failed)"
	case $rc in
	0) ;;
	124 | 137)
		fail "kiln-vmm still ran after $HOSTILE_TIMEOUT s (hung?): $(tail -n 3 "$T/$cur.vmm")"
		echo "$cur: the guest's last line: $(tr -d '\r' <"$T/$cur.serial" | grep -a . | tail -n 1)"
		sed "s/^/$cur: kiln-vmm at the limit: /" "$T/$cur.stuck"
		cp "$T/$cur.stuck" "$LOGS/" 2>/dev/null
		;;
	*) fail "kiln-vmm exited with status $rc: $(tail -n 3 "$T/$cur.vmm")" ;;
	esac
	if grep -aqi 'sanitizer\|runtime error\|segmentation fault\|core dumped' "$T/$cur.vmm"; then
		fail "kiln-vmm's stderr shows a crash: $(grep -ai 'sanitizer\|runtime error\|segmentation fault\|core dumped' "$T/$cur.vmm" | head -n 3)"
	fi
	grep -q 'device needs reset' "$T/$cur.vmm" || fail "kiln-vmm logged no NEEDS_RESET: the attacks did not reach the devices"
	# Entropy, net, vsock and the scratch drive: a device the guest could
	# not take from its driver is not attacked, and must not pass unseen.
	tr -d '\r' <"$T/$cur.serial" | grep -aq '^hostile: 4 devices attacked' ||
		fail "the guest did not attack all 4 devices: $(tr -d '\r' <"$T/$cur.serial" | grep -a 'devices attacked\|cannot\|sparing' | tr '\n' ' ')"
	if tr -d '\r' <"$T/$cur.serial" | grep -qx SUCCESS; then
		:
	else
		fail "no SUCCESS on the console: $(tr -d '\r' <"$T/$cur.serial" | grep -a '^FAIL' | head -n 1)"
		show_log "$T/$cur.serial" "serial console"
		show_log "$T/$cur.vmm" "kiln-vmm stderr"
	fi
	[ "$(sha256sum "$SCRATCH" | cut -d' ' -f1)" = "$scratch_sum" ] || fail "the scratch image changed (cow: true)"
	check_clean
	case " $failed " in *" $cur "*) ;; *) passed="$passed $cur"; echo "ok: $cur" ;; esac
}

for c in $KILN_VMM_BOOT_CASES; do
	case $c in
	bzimage) run_full bzimage "$KILN_BZIMAGE" '' ;;
	pvh) run_full pvh "$KILN_VMLINUX" '' ;;
	debian) run_full debian "$KILN_DEBIAN_VMLINUZ" "$KILN_DEBIAN_INITRD" ;;
	sigkill) run_sigkill "$KILN_VMLINUX" ;;
	sigterm) run_sigterm sigterm "$KILN_VMLINUX" '' grace ;;
	sigterm-debian) run_sigterm sigterm-debian "$KILN_DEBIAN_VMLINUZ" "$KILN_DEBIAN_INITRD" cad ;;
	hostile) run_hostile "$KILN_VMLINUX" ;;
	esac
done

echo "passed:${passed:- none}"
if [ -n "$failed" ]; then
	echo "failed:$failed"
	exit 1
fi
[ -z "$glitched" ] || { echo "glitched:$glitched (asking for a fresh sandbox)"; exit 75; }
exit 0
