#!/bin/bash
# Smoke-boot the kiln guest kernel under QEMU (TCG, no KVM needed).
# Usage: smoke-boot.sh OUTDIR   (OUTDIR from `images/recipes/kernel build`)
# Boots a busybox initramfs whose /init prints a marker, on:
#   microvm acpi=off (bzImage, virtio-mmio from the cmdline), microvm acpi=on
#   (virtio-mmio from ACPI), q35 (ACPI + virtio-pci), and microvm with the ELF
#   vmlinux (QEMU takes the PVH entry note, proving it is there).
# Exit: 0 all passed, 1 a boot failed, 77 qemu (or busybox) missing.
# Env: SMOKE_TIMEOUT seconds per boot (default 120), SMOKE_KEEP=1 keeps logs.
set -euo pipefail

out=${1:?usage: smoke-boot.sh OUTDIR}
QEMU=${QEMU:-qemu-system-x86_64}
BUSYBOX=${BUSYBOX:-/bin/busybox}
TIMEOUT=${SMOKE_TIMEOUT:-120}
MARKER=KILN-SMOKE-OK

command -v "$QEMU" >/dev/null || { echo "smoke-boot: $QEMU not found, skipping" >&2; exit 77; }
[[ -x $BUSYBOX ]] || { echo "smoke-boot: $BUSYBOX not found, skipping" >&2; exit 77; }
# the initramfs is unpacked before any userspace exists: busybox must be static
if ldd "$BUSYBOX" >/dev/null 2>&1; then
	echo "smoke-boot: $BUSYBOX is not statically linked, skipping" >&2
	exit 77
fi
for f in bzImage vmlinux; do
	[[ -r $out/$f ]] || { echo "smoke-boot: missing $out/$f" >&2; exit 1; }
done

work=$(mktemp -d /tmp/kiln-smoke.XXXXXX)
qpid=
# shellcheck disable=SC2317  # invoked via trap
cleanup() {
	if [[ -n $qpid ]]; then kill "$qpid" 2>/dev/null || true; fi
	if [[ ${SMOKE_KEEP:-0} == 1 ]]; then echo "smoke-boot: logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- initramfs -----------------------------------------------------------------
root=$work/root
mkdir -p "$root"/{bin,dev,proc,sys}
cp "$BUSYBOX" "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
cat >"$root/init" <<'EOF'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
read up _ </proc/uptime
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev 2>/dev/null   # DEVTMPFS_MOUNT may already have done it
mount -t sysfs sys /sys
echo "SMOKE uptime-at-init=${up}s"
echo "SMOKE uname=$(uname -a)"
echo "SMOKE cpus=$(grep -c ^processor /proc/cpuinfo) lm=$(grep -qw lm /proc/cpuinfo && echo yes || echo no)"
echo "SMOKE clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)"
n=$(ls /sys/bus/virtio/devices 2>/dev/null | wc -l)
echo "SMOKE virtio-devices=$n $(cat /sys/bus/virtio/devices/*/modalias 2>/dev/null | tr '\n' ' ')"
echo "SMOKE hwrng=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
# Firecracker-style boot-complete marker; must not fault even where unmapped
devmem 0xc0000000 8 123 && echo "SMOKE devmem=ok" || echo "SMOKE devmem=failed"
[ "$(uname -m)" = x86_64 ] && [ "$n" -ge "${EXPECT_VIRTIO:-0}" ] && echo KILN-SMOKE-OK
reboot -f
EOF
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.cpio.gz"

# --- boots ---------------------------------------------------------------------
# boot NAME KERNEL MACHINE EXTRA_APPEND [QEMU ARGS...]
# reboot=t: triple fault makes -no-reboot QEMU exit on every machine; reboot=k
#   falls back to a BIOS warm restart on microvm (no i8042) and boots again.
# tsc_early_khz: TCG only. Without KVM there is no kvm-clock, and on microvm
#   (no HPET, and no PIT use with hardware-reduced ACPI) the timing-based PIT
#   calibration fails now and then under TCG, after which the boot hangs.
# Runs QEMU in the background and polls the serial log so a guest that reaches
# the marker but fails to power off does not cost the whole timeout.
failed=0
boot() {
	local name=$1 kernel=$2 machine=$3 append=$4
	shift 4
	local log=$work/$name.log start now rc=
	start=$(date +%s.%N)
	"$QEMU" -M "$machine" -cpu max -smp 2 -m 256 -display none -serial stdio \
		-monitor none -no-reboot -kernel "$out/$kernel" -initrd "$work/initrd.cpio.gz" \
		-append "console=ttyS0 reboot=t panic=-1 rdinit=/init tsc_early_khz=2000000 $append" \
		"$@" </dev/null >"$log" 2>&1 &
	qpid=$!
	while :; do
		if grep -q "^$MARKER" "$log"; then rc=0; break; fi
		if ! kill -0 "$qpid" 2>/dev/null; then rc=1; break; fi
		now=$(date +%s.%N)
		if (($(echo "$now - $start > $TIMEOUT" | bc))); then rc=2; break; fi
		sleep 0.2
	done
	now=$(date +%s.%N)
	# give the guest a moment to reboot -f, then make sure QEMU is gone
	for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$qpid" 2>/dev/null || break; sleep 0.2; done
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	qpid=
	local secs
	secs=$(printf '%.1f' "$(echo "$now - $start" | bc)")
	case $rc in
	0) echo "PASS $name (${secs}s host wall to marker)" ;;
	1) echo "FAIL $name: qemu exited before the marker" ;;
	2) echo "FAIL $name: no marker within ${TIMEOUT}s" ;;
	esac
	sed -n 's/^SMOKE /    /p' "$log"
	if ((rc != 0)); then
		failed=1
		echo "    --- last lines of $name.log ---"
		tail -n 25 "$log" | sed 's/^/    /'
	fi
}

# EXPECT_VIRTIO=N is passed to /init via the kernel command line (unknown
# key=value args become init's environment).
boot microvm-bzImage bzImage microvm,accel=tcg,acpi=off EXPECT_VIRTIO=1 \
	-device virtio-rng-device
boot microvm-acpi-bzImage bzImage microvm,accel=tcg,acpi=on EXPECT_VIRTIO=1 \
	-device virtio-rng-device
boot q35-acpi-bzImage bzImage q35,accel=tcg EXPECT_VIRTIO=1 \
	-device virtio-rng-pci -nodefaults
boot microvm-pvh-vmlinux vmlinux microvm,accel=tcg,acpi=off EXPECT_VIRTIO=1 \
	-device virtio-rng-device

exit "$failed"
