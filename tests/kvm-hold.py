#!/usr/bin/env python3
"""tests/kvm-hold.py: inside tests/kvm-sandbox, hold one idle KVM VM (with an
in-kernel irqchip and one vCPU that never runs) for the sandbox's life.

Why: the sandbox's kernel flips static keys when its first VM is created
and its last one goes (preempt notifiers in __schedule, the LAPIC's
disabled-APIC keys), and each flip patches kernel text with int3 and IPIs.
TCG's emulation of that cross-CPU code patching now and then leaves both
emulated CPUs looping in the int3 handler with interrupts off: the whole
sandbox freezes. Seen as "no heartbeat" stalls, at random points, on about
one job in ten when jobs restore from templates, since each fast job
created and destroyed the only VM. With this VM held the keys stay on and
the text is never patched again after start-up.

Forks: the parent returns once the VM exists, the child holds it until the
sandbox powers off. Exits 0 without a VM when /dev/kvm cannot make one (the
command then runs as it would have; its own checks say why).
"""
import fcntl
import os
import signal
import sys

KVM_CREATE_VM = 0xAE01
KVM_CREATE_IRQCHIP = 0xAE60
KVM_CREATE_VCPU = 0xAE41


def main():
    try:
        kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        vm = fcntl.ioctl(kvm, KVM_CREATE_VM, 0)
        fcntl.ioctl(vm, KVM_CREATE_IRQCHIP, 0)
        fcntl.ioctl(vm, KVM_CREATE_VCPU, 0)
    except OSError as e:
        print(f"kvm-hold: no VM held: {e}", file=sys.stderr)
        return 0
    if os.fork():
        return 0
    os.setsid()
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
