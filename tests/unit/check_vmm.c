#include <stdlib.h>

#include "tests/unit/vmm_suites.h"

int main(void)
{
	Suite *(*const suites[])(void) = {
		guestmem_suite, virtq_suite, cow_suite, blk_suite, net_suite, ratelimit_suite,
		vsock_suite, vmconfig_suite, acpi_suite, loader_suite, vmshutdown_suite, vm_suite,
		jail_suite, snapshot_suite,
	};
	SRunner *sr = srunner_create(NULL);
	size_t i;
	int failed;

	for (i = 0; i < sizeof(suites) / sizeof(suites[0]); i++)
		srunner_add_suite(sr, suites[i]());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
