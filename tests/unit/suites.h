/* The check suites of the runner library, one function per area. */
#ifndef KILN_TEST_SUITES_H
#define KILN_TEST_SUITES_H

#include <check.h>

Suite *sha256_suite(void);
Suite *config_suite(void);
Suite *manifest_suite(void);
Suite *doctor_suite(void);
Suite *agentproto_suite(void);
Suite *agentscript_suite(void);
Suite *jobnet_suite(void);
Suite *payload_suite(void);
Suite *pipeline_suite(void);
Suite *cirules_suite(void);
Suite *workspace_suite(void);
Suite *gitstrategy_suite(void);
Suite *lfs_suite(void);
Suite *gitlab_suite(void);
Suite *localci_suite(void);
Suite *outmux_suite(void);
Suite *artifacts_suite(void);
Suite *tarstream_suite(void);
Suite *executor_suite(void);
Suite *job_suite(void);
Suite *scheduler_suite(void);

/* Absolute path of a file under tests/fixtures (from $top_srcdir). */
const char *fixture(const char *rel);

#endif
