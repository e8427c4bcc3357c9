#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

#include "tests/unit/suites.h"

const char *fixture(const char *rel)
{
	static char buf[8][PATH_MAX];
	static int next;
	const char *top = getenv("top_srcdir");
	char *b = buf[next++ % 8];

	snprintf(b, PATH_MAX, "%s/tests/fixtures/%s", top ? top : ".", rel);
	return b;
}

int main(void)
{
	SRunner *sr = srunner_create(sha256_suite());
	int failed;

	srunner_add_suite(sr, libcore_suite());
	srunner_add_suite(sr, lib_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, manifest_suite());
	srunner_add_suite(sr, doctor_suite());
	srunner_add_suite(sr, agentproto_suite());
	srunner_add_suite(sr, template_suite());
	srunner_add_suite(sr, agentscript_suite());
	srunner_add_suite(sr, jobnet_suite());
	srunner_add_suite(sr, claims_suite());
	srunner_add_suite(sr, payload_suite());
	srunner_add_suite(sr, jobvars_suite());
	srunner_add_suite(sr, services_suite());
	srunner_add_suite(sr, pipeline_suite());
	srunner_add_suite(sr, executor_suite());
	srunner_add_suite(sr, job_suite());
	srunner_add_suite(sr, cirules_suite());
	srunner_add_suite(sr, wsurl_suite());
	srunner_add_suite(sr, checkout_suite());
	srunner_add_suite(sr, ext4img_suite());
	srunner_add_suite(sr, mirror_suite());
	srunner_add_suite(sr, packwrite_suite());
	srunner_add_suite(sr, glmask_suite());
	srunner_add_suite(sr, gltrace_suite());
	srunner_add_suite(sr, glclient_suite());
	srunner_add_suite(sr, glregister_suite());
	srunner_add_suite(sr, gljobrecord_suite());
	srunner_add_suite(sr, glartifacts_suite());
	srunner_add_suite(sr, zip_suite());
	srunner_add_suite(sr, gzmembers_suite());
	srunner_add_suite(sr, s3cache_suite());
	srunner_add_suite(sr, glmetrics_suite());
	srunner_add_suite(sr, gldaemon_suite());
	srunner_add_suite(sr, gltransfer_suite());
	srunner_add_suite(sr, gitstrategy_suite());
	srunner_add_suite(sr, lfs_suite());
	srunner_add_suite(sr, localci_suite());
	srunner_add_suite(sr, scheduler_suite());
	srunner_add_suite(sr, outmux_suite());
	srunner_add_suite(sr, artifacts_suite());
	srunner_add_suite(sr, tarstream_suite());
	srunner_add_suite(sr, tls_suite());
	srunner_add_suite(sr, install_suite());
	srunner_add_suite(sr, status_suite());
	srunner_add_suite(sr, ociimage_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
