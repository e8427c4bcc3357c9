#include "vmm/vmgenid.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

int vmgenid_fresh(const struct guest_mem *m, uint8_t id[LAYOUT_VMGENID_SIZE])
{
	uint8_t fresh[LAYOUT_VMGENID_SIZE], *p = gm_ptr(m, LAYOUT_VMGENID, LAYOUT_VMGENID_SIZE);
	size_t done = 0;

	if (!p)
		return -EFAULT;
	/* Blocks only until the host's pool is first seeded, long past here. */
	while (done < sizeof(fresh)) {
		ssize_t n = getrandom(fresh + done, sizeof(fresh) - done, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		done += (size_t)n;
	}
	/* The guest reads the ID only when told (boot, Notify): a plain
	 * copy while no vCPU runs is enough. */
	memcpy(p, fresh, sizeof(fresh));
	if (id)
		memcpy(id, fresh, sizeof(fresh));
	return 0;
}
