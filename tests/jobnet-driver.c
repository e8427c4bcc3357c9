/* jobnet-driver: runner/jobnet's calls as commands, for tests/jobnet.sh
 * (which runs it inside tests/kvm-sandbox: it changes the network). Slots
 * are claimed in jobnet_dir() ($KILN_NET_DIR, else /run/kiln/net), like
 * kiln's, whatever $KILN_STATE_DIR says.
 *   setup JOB [+NET|-NET]...  set up JOB's network, NETs allowed (+) and
 *                 denied (-), print it as KEY=VALUE lines
 *   hold JOB [+NET|-NET]...   the same, then sleep until killed (owning
 *                 the slot)
 *   teardown JOB  tear down the network that JOB holds (none: no-op)
 *   sweep         remove what dead owners left
 * Exit status 0, 1 on failure (one line on stderr), 2 on bad usage. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "runner/jobnet.h"
#include "runner/log.h"

static void print(const struct jobnet *n)
{
	printf("SLOT=%u\nTAP=%s\nHOST_IP=%s\nGUEST_IP=%s\nPREFIX=%d\nGATEWAY=%s\nMAC=%s\nDNS=%s\n"
	       "CMDLINE='%s'\nSLOT_FILE=%s\nOWNER=%d\n",
	       n->slot, n->tap, n->host_ip, n->guest_ip, n->prefix, n->gateway, n->mac, n->dns,
	       n->cmdline, n->slot_file, (int)n->owner);
	fflush(stdout);
}

/* +NET and -NET words into allowed and denied; false (with a message) on
 * a bad one. */
static bool policy(int argc, char **argv, struct kiln_cidrs *allowed, struct kiln_cidrs *denied)
{
	int i;

	memset(allowed, 0, sizeof(*allowed));
	memset(denied, 0, sizeof(*denied));
	for (i = 0; i < argc; i++) {
		struct kiln_cidrs *list = argv[i][0] == '+' ? allowed : denied;
		const char *why = "must start with + or -";

		if ((argv[i][0] != '+' && argv[i][0] != '-') || list->n >= KILN_MAX_NETWORKS ||
		    !kiln_cidr_parse(argv[i] + 1, &list->v[list->n], &why)) {
			fprintf(stderr, "jobnet-driver: '%s': %s\n", argv[i], why);
			return false;
		}
		list->n++;
	}
	return true;
}

int main(int argc, char **argv)
{
	struct kiln_cidrs allowed, denied;
	struct kiln_err e = { 0 };
	struct jobnet n;
	const char *verb = argc > 1 ? argv[1] : "";
	enum kiln_rc rc;

	kiln_log_set_level(KILN_LOG_DEBUG);
	if ((strcmp(verb, "setup") == 0 || strcmp(verb, "hold") == 0) && argc >= 3) {
		if (!policy(argc - 3, argv + 3, &allowed, &denied))
			return 2;
		rc = jobnet_setup(argv[2], &allowed, &denied, &n, &e);
		if (rc == KILN_OK) {
			print(&n);
			while (strcmp(verb, "hold") == 0)
				pause();
		}
	} else if (strcmp(verb, "teardown") == 0 && argc == 3) {
		rc = jobnet_lookup(argv[2], &n, &e);
		if (rc == KILN_E_NOTFOUND) { /* torn down before: nothing to do */
			fprintf(stderr, "jobnet-driver: %s\n", e.msg);
			rc = KILN_OK;
		} else if (rc == KILN_OK) {
			jobnet_teardown(&n);
		}
	} else if (strcmp(verb, "sweep") == 0 && argc == 2) {
		rc = jobnet_sweep(&e);
	} else {
		fprintf(stderr, "usage: jobnet-driver setup|hold JOB [+NET|-NET]... | teardown JOB | sweep\n");
		return 2;
	}
	if (rc != KILN_OK) {
		fprintf(stderr, "jobnet-driver: %s: %s\n", verb, e.msg);
		return 1;
	}
	return 0;
}
