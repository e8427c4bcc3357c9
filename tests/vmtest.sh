# tests/vmtest.sh: sourced by the tests that boot job VMs (exec, gitlab,
# pipeline, jail).
#
# The lock: on the host, such a test never runs beside another one or
# beside tests/kvm-sandbox (which takes the same lock).  Under make -j2 on
# a 2-core host a TCG guest beside the sandbox starves it, and the
# sandbox's emulated SVM misbehaves far more often when its threads are
# preempted (see tests/kvm-sandbox).  And the tests count what VMs leave
# (cgroups, taps, processes) host-wide.  KILN_VM_LOCK_HELD tells this test's
# own kvm-sandbox calls that the lock is held; KILN_SANDBOX_NO_LOCK=1 turns
# both off.  Children inherit the lock's fd: a test must stop what it starts.
if [ -z "${KILN_VM_LOCK_HELD:-}" ] && [ -z "${KILN_SANDBOX_NO_LOCK:-}" ] && [ -z "${KILN_SANDBOX_OUT:-}" ]; then
	exec 9>"${TMPDIR:-/tmp}/kiln-kvm-sandbox.lock"
	flock -w 3600 9 || { echo "FAIL: waited an hour for ${TMPDIR:-/tmp}/kiln-kvm-sandbox.lock"; exit 1; }
	KILN_VM_LOCK_HELD=1
	export KILN_VM_LOCK_HELD
fi

# Inside the sandbox a nested guest now and then crashes or spins while
# its kernel boots (emulated SVM, see tests/kvm-sandbox): its job then
# fails before the agent connects.  vm_glitch_note TEXT remembers kiln
# output that says so; vm_glitch_exit, called when checks failed, exits 75
# if one did, so that kvm-sandbox runs the test again in a fresh machine.
# A kiln that never gets its agent running fails every run, and the last.
vm_glitched=''
vm_glitch_note() {
	[ -n "${KILN_SANDBOX_OUT:-}" ] || return 0
	printf '%s\n' "$1" | grep -qE 'before its agent connected|the guest agent did not connect within' || return 0
	vm_glitched=yes
}
vm_glitch_exit() {
	[ -n "$vm_glitched" ] || return 0
	echo "GLITCH: a job's guest never got its agent running (the emulated SVM under load): asking for a fresh sandbox"
	exit 75
}
