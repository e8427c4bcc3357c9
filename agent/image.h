/* An OCI image job: the steps run chrooted into the image's disk, as the
 * image's user. The disk is the host's per-job copy-on-write view of the
 * image (kiln never changes the image file); the agent, PID 1 of kiln's own
 * image, mounts it read-write, binds /proc, /sys, /dev and the workspace
 * into it and enters it. See docs/images.md, "OCI images". */
#ifndef KILN_AGENT_IMAGE_H
#define KILN_AGENT_IMAGE_H

#include <stddef.h>
#include <sys/types.h>

#include "agent/jobspec.h"
#include "agent/step.h"

/* Mount the disk labelled spec->image_label on /oci with the workspace
 * (/builds) and the kernel's filesystems inside, copy kiln's resolv.conf,
 * hosts and hostname into its /etc, chroot the agent into it and make the
 * steps run as spec->image_user (resolved in the image's passwd and
 * group files). 0, or -1 with one line in err. */
int image_enter(const struct job_spec *spec, char *err, size_t size);

/* Resolve an exec step's user (spec->exec_user) in the image's /etc/passwd
 * and /etc/group into *u: uid, gid, supplementary groups and home. With
 * spec->exec_add_user, a user the image lacks is added first, as useradd
 * would (its own group, the next free id past 1000, at home in the
 * workdir, /bin/bash). No user: *u is root as the agent is (name "").
 * 0, or -1 with one line in err. */
int image_exec_user(const struct job_spec *spec, struct step_user *u, char *err, size_t size);

#endif
