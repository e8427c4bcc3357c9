/* `kiln status`: this host at a glance, for an operator or a script:
 * runners (the configuration's, paused or not: gitlab/jobrecord.h's pause
 * notes), jobs running (job folders a live kiln holds), VMs (kiln-vmm and
 * QEMU processes), images, the cache (local size, S3 store) and the last
 * errors (journal entries of jobs that ended badly or whose kiln died). */
#ifndef KILN_STATUS_H
#define KILN_STATUS_H

#include <jansson.h>
#include <stdio.h>

#include "runner/config.h"

/* Everything kiln status shows, as one JSON object (caller decrefs):
 * runners, jobs, vms, images, cache, errors. proc is the /proc to scan
 * for VMs (tests give a fixture; NULL: /proc). Never fails but for memory
 * (NULL): what cannot be read is left out. */
json_t *status_collect(const struct kiln_config *cfg, const char *proc);

/* Print doc as tables (one section each) or as JSON. */
void status_print(json_t *doc, bool json, FILE *out);

#endif
