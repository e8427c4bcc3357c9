/* The check suites of the VMM library (libvmm.a), one function per area. */
#ifndef KILN_VMM_SUITES_H
#define KILN_VMM_SUITES_H

#include <check.h>

Suite *guestmem_suite(void);   /* test_guestmem.c */
Suite *virtq_suite(void);      /* test_virtq.c: rings, malicious rings */
Suite *cow_suite(void);        /* test_cow.c: copy-on-write overlay */
Suite *blk_suite(void);        /* test_blk.c: virtio-blk requests */
Suite *net_suite(void);        /* test_net.c: virtio-net frames over a socketpair */
Suite *ratelimit_suite(void);  /* test_ratelimit.c: token buckets */
Suite *vsock_suite(void);      /* test_vsock.c: header and credit arithmetic */
Suite *vmconfig_suite(void);   /* test_vmconfig.c: vm.json validation */
Suite *acpi_suite(void);       /* test_acpi.c: tables, checksums, AML */
Suite *loader_suite(void);     /* test_loader.c: bzImage/ELF loading, zero page */
Suite *vmshutdown_suite(void); /* test_vmshutdown.c: vCPUs stopped before devices close */
Suite *vm_suite(void);         /* test_vm.c: exits, exit requests, RAM mapping, no KVM */
Suite *jail_suite(void);       /* test_jail.c: seccomp filters, SIGSYS */
Suite *snapshot_suite(void);   /* test_snapshot.c: state file format, device state records */

#endif
