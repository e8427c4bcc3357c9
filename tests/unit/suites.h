/* The check suites of the runner library, one function per area. */
#ifndef KILN_TEST_SUITES_H
#define KILN_TEST_SUITES_H

#include <check.h>

Suite *sha256_suite(void);
Suite *libcore_suite(void);
Suite *lib_suite(void);
Suite *config_suite(void);
Suite *manifest_suite(void);
Suite *doctor_suite(void);
Suite *agentproto_suite(void);
Suite *agentscript_suite(void);
Suite *template_suite(void);
Suite *jobnet_suite(void);
Suite *claims_suite(void);
Suite *payload_suite(void);
Suite *jobvars_suite(void);
Suite *services_suite(void);
Suite *pipeline_suite(void);
Suite *cirules_suite(void);
Suite *wsurl_suite(void);
Suite *checkout_suite(void);
Suite *ext4img_suite(void);
Suite *mirror_suite(void);
Suite *packwrite_suite(void);
Suite *glmask_suite(void);
Suite *gltrace_suite(void);
Suite *glclient_suite(void);
Suite *glregister_suite(void);
Suite *gljobrecord_suite(void);
Suite *glartifacts_suite(void);
Suite *zip_suite(void);
Suite *gzmembers_suite(void);
Suite *s3cache_suite(void);
Suite *glmetrics_suite(void);
Suite *gldaemon_suite(void);
Suite *gltransfer_suite(void);
Suite *gitstrategy_suite(void);
Suite *lfs_suite(void);
Suite *localci_suite(void);
Suite *outmux_suite(void);
Suite *artifacts_suite(void);
Suite *tarstream_suite(void);
Suite *executor_suite(void);
Suite *job_suite(void);
Suite *scheduler_suite(void);
Suite *tls_suite(void);
Suite *install_suite(void);
Suite *status_suite(void);
Suite *ociimage_suite(void);

/* Absolute path of a file under tests/fixtures (from $top_srcdir). */
const char *fixture(const char *rel);

#endif
