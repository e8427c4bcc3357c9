/* The seccomp jail: installed by each thread on itself after every fd is
 * open and guest memory is mapped, before the first KVM_RUN. The default
 * action kills the process; vCPU threads get a tighter list than the
 * device thread. */
#ifndef VMM_JAIL_H
#define VMM_JAIL_H

enum jail_kind { JAIL_VMM, JAIL_VCPU };

/* Install the filter of kind on the calling thread (NO_NEW_PRIVS first).
 * The device thread may unlink only the path in the buffer unlink_path
 * (compared by address; NULL: no unlink at all). A forbidden system call
 * kills the process (SIGSYS). 0 or -errno. */
int jail_enter(enum jail_kind kind, const char *unlink_path);

/* Let a later JAIL_VMM filter save snapshots into the directory open on
 * dirfd (-1: no snapshots): files made and renamed there only (by the
 * dirfd, compared by value), and the KVM ioctls that read VM state. */
void jail_allow_snapshots(int dirfd);

#endif
