/* Templates for the microvm executor: one VM per (image, kernel, vCPUs,
 * memory) booted until its agent says HELLO and saved by kiln-vmm
 * (SIGUSR2, docs/vmm.md "Snapshots"), which each job then restores instead
 * of booting. A template lives in TEMPLATES/KEY16/ (the templates_dir of
 * the configuration, STATE/templates unless set) with kiln-vmm's `state`
 * and `memory` and kiln's `template.json`; KEY is the sha256 of every
 * input, so a changed input names another template, and the one it
 * replaces is pruned (template_prune). */
#ifndef KILN_TEMPLATE_H
#define KILN_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/result.h"

#define TEMPLATE_KEY_HEX 65
#define TEMPLATE_META "template.json"
#define TEMPLATE_META_MAX (16u << 10)

/* What a template is a function of. Each string is a digest or version,
 * not a path: moving a file does not change a template. */
struct template_inputs {
	const char *image;    /* the image's manifest digest (sha256:...) */
	const char *kernel;   /* sha256 of the kernel file */
	const char *initrd;   /* sha256 of the initrd, or NULL for none */
	const char *vmm;      /* kiln-vmm's version (its snapshot_version follows it) */
	const char *agent;    /* sha256 or version of the agent the image carries; NULL: in image */
	int vcpus;
	int memory_mib;
	bool net;             /* a network interface in the machine */
	const char *cmdline;  /* the kernel command line the template boots with */
};

/* The sha256 (hex) of the inputs in a canonical, versioned text form.
 * KILN_E_INVALID naming the field when one is missing or out of range. */
enum kiln_rc template_key(const struct template_inputs *in, char key[TEMPLATE_KEY_HEX], struct kiln_err *e);

/* ROOT/KEY16 into buf, ROOT the templates' folder (the key's first 16 hex
 * digits: 64 bits tell templates apart; template.json holds the whole
 * key). */
enum kiln_rc template_dir(const char *root, const char *key, char *buf, size_t size, struct kiln_err *e);

/* Whether dir holds a ready template for key. true, or false with why in
 * reason ("none yet", "inputs changed", "incomplete: ...", "broken: ...",
 * "failed: ..." for a build that failed),
 * which a job's log quotes after "boot: cold (". */
bool template_usable(const char *dir, const char *key, char *reason, size_t size);

/* After kiln-vmm saved into dir (as a jail slot's uid, its files 0600):
 * make dir and its files kiln's, readable by every slot's kiln-vmm that
 * restores from it (a template holds a booted guest before any job). */
enum kiln_rc template_seal(const char *dir, struct kiln_err *e);

/* Record dir as a ready template of key (atomically, after kiln-vmm's
 * state and memory are in place): its inputs, and the names of its image
 * and kernel, for `kiln images templates` and template_prune. */
enum kiln_rc template_mark_ready(const char *dir, const char *key, const struct template_inputs *in,
				 const char *image_name, const char *kernel_name, struct kiln_err *e);

/* Record that building key's template in dir failed (why): it is not
 * built again, nor restored, until an input changes. */
enum kiln_rc template_mark_failed(const char *dir, const char *key, const char *why, struct kiln_err *e);

/* Take dir's build lock (DIR.lock beside it, made with its folder)
 * without waiting: *fd holds it (close to let go), or -1 when another
 * process builds dir now. Two builds of one template would each replace
 * the other's, under a job that has started restoring it. */
enum kiln_rc template_build_lock(const char *dir, int *fd, struct kiln_err *e);

/* Throw a template away (a restore from it failed): gone, so the next job
 * builds a new one instead of failing on it again. */
enum kiln_rc template_discard(const char *dir, struct kiln_err *e);

/* The new identity a restored VM gets in the RESTORED frame
 * (agent/restore.h): entropy and machine-id from getrandom(), hostname
 * "kiln-" and the job's name (cut to a DNS label), and the job's network
 * when ip is not NULL. A malloc'd JSON text, or NULL with e set. */
char *template_restored_json(const char *job_name, const char *mac, const char *ip, const char *gw,
			     const char *dns, struct kiln_err *e);

/* One line per template under root: key, state, image, vcpus, memory,
 * network, size on disk. No folder or no templates is not an error. */
enum kiln_rc template_list(const char *root, FILE *out, struct kiln_err *e);

/* After key's template of in was made ready: remove every other template
 * under root of the same image and kernel names and machine (in's vcpus,
 * memory, network) with their build locks, and what a build that died left
 * (KEY16.new.PID.TID of a process that is gone). Their inputs changed, so
 * no job restores them again: kept, they would only fill the disk. A job
 * that planned to restore one just now fails to and boots cold. The
 * number removed into *removed (may be NULL). */
enum kiln_rc template_prune(const char *root, const char *key, const struct template_inputs *in,
			    const char *image_name, const char *kernel_name, int *removed, struct kiln_err *e);

#endif
