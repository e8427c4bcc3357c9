/* Templates of the microvm executor (executors/template.c): the key and
 * what changes it, a template's state on disk, its build lock, the reason
 * a job boots cold (job/warmstart.c), and the RESTORED frame from the
 * host's side to the agent's parser (agent/restore.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/restore.h"
#include "executors/template.h"
#include "job/warmstart.h"
#include "lib/paths.h"
#include "lib/sha256.h"
#include "tests/unit/suites.h"
#include "tests/unit/testutil.h"

static struct template_inputs base(void)
{
	struct template_inputs in = { .image = "sha256:aaaa", .kernel = "bbbb", .vmm = "0.9",
				      .vcpus = 2, .memory_mib = 1024, .net = true,
				      .cmdline = "console=ttyS0 kiln.channel=vsock" };
	return in;
}

static void key_of(const struct template_inputs *in, char key[TEMPLATE_KEY_HEX])
{
	struct kiln_err e = { 0 };

	ck_assert_int_eq(template_key(in, key, &e), KILN_OK);
	ck_assert_uint_eq(strlen(key), 64);
}

START_TEST(key_changes_with_every_input)
{
	struct template_inputs in = base();
	char k0[TEMPLATE_KEY_HEX], k[TEMPLATE_KEY_HEX];

	key_of(&in, k0);
	key_of(&in, k);
	ck_assert_str_eq(k0, k); /* stable */
#define CHANGED(stmt)                                  \
	do {                                           \
		in = base();                           \
		stmt;                                  \
		key_of(&in, k);                        \
		ck_assert_str_ne(k0, k);               \
	} while (0)
	CHANGED(in.image = "sha256:aaab");
	CHANGED(in.kernel = "bbbc");
	CHANGED(in.initrd = "cccc");
	CHANGED(in.vmm = "0.10");
	CHANGED(in.agent = "dddd");
	CHANGED(in.vcpus = 4);
	CHANGED(in.memory_mib = 2048);
	CHANGED(in.net = false);
	CHANGED(in.cmdline = "console=ttyS0");
#undef CHANGED
}
END_TEST

START_TEST(key_refuses_bad_inputs)
{
	struct template_inputs in = base();
	char k[TEMPLATE_KEY_HEX];
	struct kiln_err e = { 0 };

	in.image = NULL;
	ck_assert_int_eq(template_key(&in, k, &e), KILN_E_INVALID);
	in = base();
	in.kernel = "two words"; /* would read like another field */
	ck_assert_int_eq(template_key(&in, k, &e), KILN_E_INVALID);
	in = base();
	in.vcpus = 0;
	ck_assert_int_eq(template_key(&in, k, &e), KILN_E_INVALID);
	in = base();
	in.cmdline = "a\nvcpus 9";
	ck_assert_int_eq(template_key(&in, k, &e), KILN_E_INVALID);
}
END_TEST

static void put(const char *dir, const char *name, const char *text)
{
	char path[4200];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(usable_only_when_ready_and_whole)
{
	struct template_inputs in = base();
	char state[] = "/tmp/kiln-tmpl-XXXXXX", dir[4096], key[TEMPLATE_KEY_HEX], why[256], *list = NULL;
	struct kiln_err e = { 0 };
	size_t listlen = 0;
	FILE *out;

	ck_assert_ptr_nonnull(mkdtemp(state));
	key_of(&in, key);
	ck_assert_int_eq(template_dir(state, key, dir, sizeof(dir), &e), KILN_OK);
	ck_assert(!strncmp(dir, state, strlen(state)) && !strncmp(dir + strlen(state) + 1, key, 16));
	ck_assert(!template_usable(dir, key, why, sizeof(why)));
	ck_assert_str_eq(why, "none yet");
	ck_assert_int_eq(kiln_mkdir_p(dir), 0);
	/* Marked ready before kiln-vmm's files: not usable. */
	ck_assert_int_eq(template_mark_ready(dir, key, &in, "debian", "kernel", &e), KILN_OK);
	ck_assert(!template_usable(dir, key, why, sizeof(why)));
	ck_assert(strncmp(why, "broken: ", 8) == 0);
	put(dir, "state", "S");
	put(dir, "memory", "M");
	ck_assert_int_eq(template_seal(dir, &e), KILN_OK);
	ck_assert(template_usable(dir, key, why, sizeof(why)));
	/* Another key: the inputs changed. */
	in.vcpus = 3;
	{
		char k2[TEMPLATE_KEY_HEX];

		key_of(&in, k2);
		ck_assert(!template_usable(dir, k2, why, sizeof(why)));
		ck_assert_str_eq(why, "inputs changed");
	}
	put(dir, TEMPLATE_META, "{not json");
	ck_assert(!template_usable(dir, key, why, sizeof(why)));
	ck_assert(strncmp(why, "broken: ", 8) == 0);
	out = open_memstream(&list, &listlen);
	ck_assert_int_eq(template_list(state, out, &e), KILN_OK);
	fclose(out);
	ck_assert(strstr(list, "TEMPLATE") != NULL);
	free(list);
	/* A failed build or restore is remembered, not retried. */
	ck_assert_int_eq(template_mark_failed(dir, key, "restore failed: x", &e), KILN_OK);
	ck_assert(!template_usable(dir, key, why, sizeof(why)));
	ck_assert_str_eq(why, "failed: restore failed: x");
	ck_assert_int_eq(template_discard(dir, &e), KILN_OK);
	ck_assert(access(dir, F_OK) != 0);
	ck_assert(!template_usable(dir, key, why, sizeof(why)));
	ck_assert_str_eq(why, "none yet");
	kiln_rm_rf(state);
}
END_TEST

/* Building a template prunes the ones of the same image and machine whose
 * inputs changed, and what a dead build left; others stay. */
START_TEST(prune_replaced_templates)
{
	struct template_inputs in = base(), other = base(), old = base();
	char root[] = "/tmp/kiln-tmpl-XXXXXX", k[3][TEMPLATE_KEY_HEX], d[3][4096], dead[4200], live[4200];
	struct kiln_err e = { 0 };
	int removed = -1, i;

	ck_assert_ptr_nonnull(mkdtemp(root));
	old.image = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
	other.memory_mib = 2048;
	key_of(&in, k[0]);
	key_of(&old, k[1]);
	key_of(&other, k[2]);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(template_dir(root, k[i], d[i], sizeof(d[i]), &e), KILN_OK);
		ck_assert_int_eq(kiln_mkdir_p(d[i]), 0);
		const struct template_inputs *x = i == 0 ? &in : i == 1 ? &old : &other;

		ck_assert_int_eq(template_mark_ready(d[i], k[i], x, "debian", "kernel", &e), KILN_OK);
	}
	/* Build locks: the replaced template's goes with it. */
	for (i = 0; i < 2; i++) {
		int fd;

		ck_assert_int_eq(template_build_lock(d[i], &fd, &e), KILN_OK);
		ck_assert_int_ge(fd, 0);
		close(fd);
	}
	/* A build of a process that is gone, and one of this process. */
	snprintf(dead, sizeof(dead), "%s/%.16s.new.999999999.1", root, k[0]);
	snprintf(live, sizeof(live), "%s/%.16s.new.%d.1", root, k[0], (int)getpid());
	ck_assert_int_eq(kiln_mkdir_p(dead), 0);
	ck_assert_int_eq(kiln_mkdir_p(live), 0);
	ck_assert_int_eq(template_prune(root, k[0], &in, "debian", "kernel", &removed, &e), KILN_OK);
	ck_assert_int_eq(removed, 2);
	ck_assert(access(d[0], F_OK) == 0);
	ck_assert(access(d[1], F_OK) != 0);   /* the image changed */
	ck_assert(access(d[2], F_OK) == 0);   /* another machine */
	ck_assert(access(dead, F_OK) != 0);
	ck_assert(access(live, F_OK) == 0);
	snprintf(dead, sizeof(dead), "%s.lock", d[0]);
	ck_assert(access(dead, F_OK) == 0);
	snprintf(dead, sizeof(dead), "%s.lock", d[1]);
	ck_assert(access(dead, F_OK) != 0);
	/* Another image's or kernel's name: nothing of it. */
	ck_assert_int_eq(template_prune(root, k[1], &in, "tiny", "kernel", &removed, &e), KILN_OK);
	ck_assert_int_eq(removed, 0);
	ck_assert_int_eq(template_prune(root, k[1], &in, "debian", "debian-kernel", &removed, &e), KILN_OK);
	ck_assert_int_eq(removed, 0);
	/* No folder yet. */
	kiln_rm_rf(root);
	ck_assert_int_eq(template_prune(root, k[0], &in, "debian", "kernel", &removed, &e), KILN_OK);
	ck_assert_int_eq(removed, 0);
}
END_TEST

/* One build of a template at a time, also between two threads of one
 * process (each opens the lock): the second is told, not kept waiting. */
START_TEST(build_lock_one_at_a_time)
{
	char root[] = "/tmp/kiln-tmpl-XXXXXX", dir[4200];
	struct kiln_err e = { 0 };
	int a, b;

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(dir, sizeof(dir), "%s/templates/0123456789abcdef", root);
	ck_assert_int_eq(template_build_lock(dir, &a, &e), KILN_OK); /* makes templates/ */
	ck_assert_int_ge(a, 0);
	ck_assert_int_eq(template_build_lock(dir, &b, &e), KILN_OK);
	ck_assert_int_eq(b, -1);
	close(a);
	ck_assert_int_eq(template_build_lock(dir, &b, &e), KILN_OK);
	ck_assert_int_ge(b, 0);
	close(b);
	ck_assert(access(dir, F_OK) != 0); /* the lock only, beside it */
	kiln_rm_rf(root);
}
END_TEST

/* Which boot a job gets: templates unless turned off, and the reason a
 * cold boot's log line gives. */
START_TEST(plan_says_why_cold)
{
	struct images_ctx ictx = { .images_dir = "/nonexistent/images", .agent_path = "/nonexistent/kiln-agent" };
	struct warm_want w = { .backend = "microvm", .snapshots = true, .image = "tiny", .kernel = "kernel",
			       .vcpus = 1, .memory_mib = 256, .templates_dir = "/nonexistent/templates" };
	struct warm_plan p;

	w.no_snapshot = true;
	warmstart_plan(&ictx, &w, &p);
	ck_assert(!p.restore && !p.buildable);
	ck_assert_str_eq(p.reason, "--no-snapshot");
	w.no_snapshot = false;
	w.snapshots = false;
	warmstart_plan(&ictx, &w, &p);
	ck_assert_str_eq(p.reason, "snapshots: false in the configuration");
	w.snapshots = true;
	w.backend = "qemu";
	warmstart_plan(&ictx, &w, &p);
	ck_assert(!p.restore && !p.buildable);
	ck_assert_str_eq(p.reason, "the qemu executor has no templates");
	w.backend = "microvm";
	warmstart_plan(&ictx, &w, &p);
	ck_assert(!p.restore && !p.buildable);
	ck_assert(!strncmp(p.reason, "image tiny has no manifest: ", 28));
}
END_TEST

/* The agent's hash is taken from its cache while the file is the same
 * one (a forged hash in the cache shows it is read), and computed again
 * when the file changes or the cache is garbage. */
START_TEST(agent_sha_cached_by_identity)
{
	char root[] = "/tmp/kiln-tmpl-XXXXXX", agent[4200], tdir[4200], cache[4300], hex[65], want[65];
	struct kiln_err e = { 0 };
	static const char forged[] = "0000000000000000000000000000000000000000000000000000000000000000";
	char *text;
	size_t n;

	ck_assert_ptr_nonnull(mkdtemp(root));
	snprintf(agent, sizeof(agent), "%s/kiln-agent", root);
	snprintf(tdir, sizeof(tdir), "%s/templates", root);
	snprintf(cache, sizeof(cache), "%s/agent.sha256", tdir);
	test_write_file(agent, "agent one", 9, 0755);
	sha256_buf_hex("agent one", 9, want);
	ck_assert_int_eq(warmstart_agent_sha(agent, tdir, hex, &e), KILN_OK);
	ck_assert_str_eq(hex, want);
	ck_assert_ptr_nonnull(text = test_read_file(cache, &n));
	ck_assert(!strncmp(text, want, 64));
	/* The same file: the cache's word is taken. */
	memcpy(text, forged, 64);
	test_write_file(cache, text, n, 0644);
	free(text);
	ck_assert_int_eq(warmstart_agent_sha(agent, tdir, hex, &e), KILN_OK);
	ck_assert_str_eq(hex, forged);
	/* Another file at the path (another inode, ctime, size): hashed. */
	ck_assert_int_eq(unlink(agent), 0);
	test_write_file(agent, "agent two!", 10, 0755);
	sha256_buf_hex("agent two!", 10, want);
	ck_assert_int_eq(warmstart_agent_sha(agent, tdir, hex, &e), KILN_OK);
	ck_assert_str_eq(hex, want);
	/* A garbage cache: hashed, and the cache mended. */
	test_write_file(cache, "garbage\n", 8, 0644);
	ck_assert_int_eq(warmstart_agent_sha(agent, tdir, hex, &e), KILN_OK);
	ck_assert_str_eq(hex, want);
	ck_assert_ptr_nonnull(text = test_read_file(cache, &n));
	ck_assert(!strncmp(text, want, 64));
	free(text);
	/* No cache folder given, no agent: hashed, an error. */
	ck_assert_int_eq(warmstart_agent_sha(agent, NULL, hex, &e), KILN_OK);
	ck_assert_str_eq(hex, want);
	ck_assert_int_ne(warmstart_agent_sha("/nonexistent/kiln-agent", tdir, hex, &e), KILN_OK);
	kiln_rm_rf(root);
}
END_TEST

START_TEST(restored_frame_round_trip)
{
	struct kiln_err e = { 0 };
	struct restore_msg a, b;
	char err[256];
	char *j1 = template_restored_json("Build Job #7", "02:00:00:00:00:09", "10.0.2.15/24", "10.0.2.2",
					  "10.0.2.3", &e);
	char *j2 = template_restored_json("Build Job #7", NULL, NULL, NULL, NULL, &e);

	ck_assert_ptr_nonnull(j1);
	ck_assert_ptr_nonnull(j2);
	ck_assert_int_eq(restore_parse(j1, strlen(j1), &a, err, sizeof(err)), 0);
	ck_assert_int_eq(restore_parse(j2, strlen(j2), &b, err, sizeof(err)), 0);
	ck_assert_uint_eq(a.entropy_len, 32);
	/* Two restores of one template: different entropy, ids and names. */
	ck_assert(memcmp(a.entropy, b.entropy, 32) != 0);
	ck_assert_str_ne(a.machine_id, b.machine_id);
	ck_assert_str_ne(a.hostname, b.hostname);
	ck_assert(strncmp(a.hostname, "kiln-build-job--7-", 18) == 0);
	ck_assert_str_eq(a.mac, "02:00:00:00:00:09");
	ck_assert_str_eq(a.ip, "10.0.2.15/24");
	ck_assert_str_eq(a.gw, "10.0.2.2");
	ck_assert_str_eq(b.ip, "");
	free(j1);
	free(j2);
}
END_TEST

START_TEST(restored_frame_refused)
{
	static const char *const bad[] = {
		"",
		"[]",
		"{\"hostname\":\"h\",\"machine_id\":\"00000000000000000000000000000000\"}",
		/* entropy: too short, odd, upper case, too long */
		"{\"entropy\":\"00\",\"hostname\":\"h\",\"machine_id\":\"00000000000000000000000000000000\"}",
		"{\"entropy\":\"0000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\"}",
		"{\"entropy\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\"}",
		"{\"entropy\":\"000000000000000000000000000000000000000000000000000000000000000000000000000000000"
		"000000000000000000000000000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\"}",
		/* hostname: a slash, a leading dash, empty */
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"a/b\","
		"\"machine_id\":\"00000000000000000000000000000000\"}",
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"-a\","
		"\"machine_id\":\"00000000000000000000000000000000\"}",
		/* machine_id: short */
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"h\",\"machine_id\":\"00\"}",
		/* net: not an object, no ip, a bad ip, a bad mac */
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\",\"net\":1}",
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\",\"net\":{}}",
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\",\"net\":{\"ip\":\"10.0.0.1/33\"}}",
		"{\"entropy\":\"00000000000000000000000000000000\",\"hostname\":\"h\","
		"\"machine_id\":\"00000000000000000000000000000000\",\"net\":{\"ip\":\"10.0.0.1/8\",\"mac\":\"0:1\"}}",
	};
	struct restore_msg m;
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(restore_parse(bad[i], strlen(bad[i]), &m, err, sizeof(err)) < 0, "accepted #%zu", i);
		ck_assert_msg(err[0], "no message for #%zu", i);
	}
}
END_TEST

Suite *template_suite(void)
{
	Suite *s = suite_create("template");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, key_changes_with_every_input);
	tcase_add_test(tc, key_refuses_bad_inputs);
	tcase_add_test(tc, usable_only_when_ready_and_whole);
	tcase_add_test(tc, prune_replaced_templates);
	tcase_add_test(tc, build_lock_one_at_a_time);
	tcase_add_test(tc, plan_says_why_cold);
	tcase_add_test(tc, agent_sha_cached_by_identity);
	tcase_add_test(tc, restored_frame_round_trip);
	tcase_add_test(tc, restored_frame_refused);
	suite_add_tcase(s, tc);
	return s;
}
