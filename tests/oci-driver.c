/* tests/oci.sh's handle on oci/: pull, list and prune a store.
 *
 *   oci-driver pull STATE REF [-u USER -p PASS] [-c CAFILE] [-k] [-a ARCH] [-t]
 *       prints "digest DIGEST", "rootfs PATH", "size BYTES"; with -t a
 *       SIGTERM cancels the pull as a job's cancel does
 *   oci-driver find STATE REF [-a ARCH]   the same, from the store only
 *   oci-driver list STATE        one "REF DIGEST SIZE LAST_USED" a line
 *   oci-driver prune STATE CAP   prints "freed BYTES"
 * Exit 1 with "oci-driver: error: MSG" on failure. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oci/store.h"

static volatile sig_atomic_t term;

static void on_term(int sig)
{
	(void)sig;
	term = 1;
}

static int canceled(void *arg)
{
	(void)arg;
	return term;
}

static int fail(const struct kiln_err *e)
{
	fprintf(stderr, "oci-driver: error: %s\n", e->msg);
	return 1;
}

int main(int argc, char **argv)
{
	struct oci_pull_opts o = { 0 };
	struct kiln_err e = { 0 };
	struct oci_image im, *v;
	uint64_t freed;
	size_t n, i;
	int c;

	if (argc < 3) {
		fprintf(stderr, "usage: oci-driver pull|list|prune STATE ...\n");
		return 2;
	}
	if (!strcmp(argv[1], "pull") && argc >= 4) {
		optind = 4;
		while ((c = getopt(argc, argv, "u:p:c:ka:t")) != -1) {
			switch (c) {
			case 'u': o.reg.username = optarg; break;
			case 'p': o.reg.password = optarg; break;
			case 'c': o.reg.ca_file = optarg; break;
			case 'k': o.reg.insecure = 1; break;
			case 'a': o.arch = optarg; break;
			case 't': o.canceled = canceled; signal(SIGTERM, on_term); break;
			default: return 2;
			}
		}
		if (oci_pull(argv[2], argv[3], &o, &im, &e) != KILN_OK)
			return fail(&e);
		printf("digest %s\nrootfs %s\nsize %llu\n", im.digest, im.rootfs, (unsigned long long)im.size);
		return 0;
	}
	if (!strcmp(argv[1], "find") && argc >= 4) {
		if (argc == 6 && !strcmp(argv[4], "-a"))
			o.arch = argv[5];
		if (oci_image_find(argv[2], argv[3], NULL, o.arch, &im, &e) != KILN_OK)
			return fail(&e);
		printf("digest %s\nrootfs %s\nsize %llu\n", im.digest, im.rootfs, (unsigned long long)im.size);
		return 0;
	}
	if (!strcmp(argv[1], "list")) {
		if (oci_images_list(argv[2], &v, &n, &e) != KILN_OK)
			return fail(&e);
		for (i = 0; i < n; i++)
			printf("%s %s %llu %lld\n", v[i].ref, v[i].digest, (unsigned long long)v[i].size,
			       (long long)v[i].last_used);
		free(v);
		return 0;
	}
	if (!strcmp(argv[1], "prune") && argc == 4) {
		if (oci_images_prune(argv[2], strtoull(argv[3], NULL, 10), &freed, &e) != KILN_OK)
			return fail(&e);
		printf("freed %llu\n", (unsigned long long)freed);
		return 0;
	}
	fprintf(stderr, "usage: oci-driver pull|list|prune STATE ...\n");
	return 2;
}
