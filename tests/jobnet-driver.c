/* jobnet-driver: runner/jobnet's calls as commands, for tests/jobnet.sh
 * (which runs it inside tests/kvm-sandbox: it changes the network). Slots
 * are claimed in jobnet_dir() ($KILN_NET_DIR, else /run/kiln/net), like
 * kiln's, whatever $KILN_STATE_DIR says.
 *   setup JOB [WORD]...  set up JOB's network with a policy of WORDs:
 *                 +NET allowed, -NET denied, rx=N and tx=N bytes/s limits;
 *                 print it as KEY=VALUE lines
 *   hold JOB [WORD]...   the same, then sleep until killed (owning the
 *                 slot)
 *   hold-service JOB INDEX  a service network of the job JOB holds
 *                 (jobnet_setup_service), printed, then sleep until killed
 *   link ID...    let the service networks ID... (of one job) reach each
 *                 other (jobnet_link_siblings)
 *   teardown JOB  tear down the network that JOB holds (none: no-op)
 *   sweep         remove what dead owners left
 * Exit status 0, 1 on failure (one line on stderr), 2 on bad usage. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "executors/jobnet.h"
#include "lib/log.h"

static void print(const struct jobnet *n)
{
	printf("SLOT=%u\nTAP=%s\nHOST_IP=%s\nGUEST_IP=%s\nPREFIX=%d\nGATEWAY=%s\nMAC=%s\nDNS=%s\n"
	       "CMDLINE='%s'\nSLOT_FILE=%s\nOWNER=%d\n",
	       n->slot, n->tap, n->host_ip, n->guest_ip, n->prefix, n->gateway, n->mac, n->dns,
	       n->cmdline, n->slot_file, (int)n->owner);
	fflush(stdout);
}

/* +NET, -NET, rx=BYTES/S and tx=BYTES/S words into p; false (with a
 * message) on a bad one. */
static bool policy(int argc, char **argv, struct jobnet_policy *p)
{
	int i;

	memset(p, 0, sizeof(*p));
	for (i = 0; i < argc; i++) {
		struct kiln_cidrs *list = argv[i][0] == '+' ? &p->allowed : &p->denied;
		const char *why = "must be +NET, -NET, rx=N or tx=N";
		char *end;

		if (!strncmp(argv[i], "rx=", 3) || !strncmp(argv[i], "tx=", 3)) {
			long v = strtol(argv[i] + 3, &end, 10);

			if (v > 0 && !*end) {
				*(argv[i][0] == 'r' ? &p->rx_rate : &p->tx_rate) = v;
				continue;
			}
		} else if ((argv[i][0] == '+' || argv[i][0] == '-') && list->n < KILN_MAX_NETWORKS &&
			   kiln_cidr_parse(argv[i] + 1, &list->v[list->n], &why)) {
			list->n++;
			continue;
		}
		fprintf(stderr, "jobnet-driver: '%s': %s\n", argv[i], why);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	struct jobnet_policy p;
	struct kiln_err e = { 0 };
	struct jobnet n;
	const char *verb = argc > 1 ? argv[1] : "";
	enum kiln_rc rc;

	kiln_log_set_level(KILN_LOG_DEBUG);
	if ((strcmp(verb, "setup") == 0 || strcmp(verb, "hold") == 0) && argc >= 3) {
		if (!policy(argc - 3, argv + 3, &p))
			return 2;
		rc = jobnet_setup(argv[2], &p, &n, &e);
		if (rc == KILN_OK) {
			print(&n);
			while (strcmp(verb, "hold") == 0)
				pause();
		}
	} else if (strcmp(verb, "hold-service") == 0 && argc == 4) {
		struct jobnet job;

		if (!(rc = jobnet_lookup(argv[2], &job, &e)) &&
		    !(rc = jobnet_setup_service(&job, (unsigned)atoi(argv[3]), NULL, &n, &e))) {
			print(&n);
			for (;;)
				pause();
		}
	} else if (strcmp(verb, "link") == 0 && argc >= 3 && argc - 2 <= JOBNET_SIBLINGS_MAX) {
		struct jobnet nets[JOBNET_SIBLINGS_MAX];
		const struct jobnet *ptrs[JOBNET_SIBLINGS_MAX];
		int i;

		for (i = 2, rc = KILN_OK; i < argc && !rc; i++) {
			rc = jobnet_lookup(argv[i], &nets[i - 2], &e);
			ptrs[i - 2] = &nets[i - 2];
		}
		if (!rc)
			rc = jobnet_link_siblings(ptrs, (size_t)(argc - 2), &e);
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
		fprintf(stderr, "usage: jobnet-driver setup|hold JOB [+NET|-NET|rx=N|tx=N]... | hold-service JOB INDEX | "
				"link ID... | teardown JOB | sweep\n");
		return 2;
	}
	if (rc != KILN_OK) {
		fprintf(stderr, "jobnet-driver: %s: %s\n", verb, e.msg);
		return 1;
	}
	return 0;
}
