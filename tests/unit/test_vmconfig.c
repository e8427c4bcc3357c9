#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/unit/vmm_suites.h"
#include "vmm/vmconfig.h"

static const char *const good =
	"{ \"boot\": { \"kernel\": \"/k\", \"initrd\": \"/i\", \"cmdline\": \"console=ttyS0\" },"
	"  \"machine\": { \"vcpus\": 2, \"mem_mib\": 256 },"
	"  \"drives\": [ { \"id\": \"root\", \"path\": \"/r.ext4\", \"cow\": true,"
	"                  \"rate_limiter\": { \"bandwidth\": { \"size\": 1000, \"refill_time\": 100 } } } ],"
	"  \"net\": [ { \"id\": \"eth0\", \"tap\": \"kiln0\", \"mac\": \"06:00:ac:10:00:02\","
	"               \"tx_rate_limiter\": { \"ops\": { \"size\": 10, \"one_time_burst\": 5, \"refill_time\": 1000 } } } ],"
	"  \"vsock\": { \"guest_cid\": 3, \"uds_path\": \"/tmp/v.sock\" },"
	"  \"serial\": { \"output\": \"none\" }, \"entropy\": {} }";

START_TEST(parses_everything)
{
	struct vm_config c;
	char err[256] = "";

	ck_assert_msg(vm_config_parse(&c, "vm.json", good, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(c.kernel, "/k");
	ck_assert_str_eq(c.initrd, "/i");
	ck_assert_int_eq(c.vcpus, 2);
	ck_assert_uint_eq(c.mem_mib, 256);
	ck_assert_int_eq(c.n_drives, 1);
	ck_assert(c.drives[0].cow && !c.drives[0].read_only && c.drives[0].has_rate_limiter);
	ck_assert_uint_eq(c.drives[0].cow_limit_mib, VM_COW_LIMIT_MIB);
	ck_assert_uint_eq(c.drives[0].rate_limiter.bandwidth.size, 1000);
	ck_assert_uint_eq(c.drives[0].rate_limiter.bandwidth.refill_time_ms, 100);
	ck_assert_int_eq(c.n_nets, 1);
	ck_assert(c.nets[0].has_mac && c.nets[0].mac[5] == 2 && c.nets[0].has_tx_rate_limiter);
	ck_assert(!c.nets[0].has_tap_fd);
	ck_assert_uint_eq(c.nets[0].tx_rate_limiter.ops.one_time_burst, 5);
	ck_assert(c.vsock.present && c.vsock.guest_cid == 3);
	ck_assert_int_eq(c.serial, VM_SERIAL_NONE);
	ck_assert(c.entropy);
	vm_config_free(&c);
}
END_TEST

static const struct {
	const char *json, *error;
} bad[] = {
	{ "{}", "vm.json: boot: missing" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"colour\": 1 }", "vm.json: colour: unknown key" },
	{ "{ \"boot\": { \"kernel\": \"/k\", \"kernal\": 1 } }", "vm.json: boot.kernal: unknown key" },
	{ "{ \"boot\": { } }", "vm.json: boot.kernel: missing" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"machine\": { \"vcpus\": 33 } }",
	  "vm.json: machine.vcpus: must be an integer in 1..32" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"machine\": { \"vcpus\": \"2\" } }",
	  "vm.json: machine.vcpus: must be an integer in 1..32" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"drives\": [ { \"id\": \"a\" } ] }", "vm.json: drives[0].path: missing" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"drives\": [ { \"id\": \"a b\", \"path\": \"/x\" } ] }",
	  "vm.json: drives[0].id: must be 1-20 letters, digits, '-' or '_'" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"drives\": [ { \"id\": \"a\", \"path\": \"/x\", \"cow\": 1 } ] }",
	  "vm.json: drives[0].cow: must be true or false" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"drives\": [ { \"id\": \"a\", \"path\": \"/x\", \"cow_limit_mib\": -1 } ] }",
	  "vm.json: drives[0].cow_limit_mib: must be an integer in 0..1073741824" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"drives\": [ { \"id\": \"a\", \"path\": \"/x\","
	  " \"rate_limiter\": { \"bandwidth\": { \"size\": 1 } } } ] }",
	  "vm.json: drives[0].rate_limiter.bandwidth.refill_time: missing" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"net\": [ { \"id\": \"e\", \"tap\": \"t\", \"mac\": \"01:00:00:00:00:00\" } ] }",
	  "vm.json: net[0].mac: is a multicast address" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"net\": [ { \"id\": \"e\", \"tap\": \"t\", \"mac\": \"zz\" } ] }",
	  "vm.json: net[0].mac: must look like 06:00:ac:10:00:02" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"net\": [ { \"id\": \"e\", \"tap\": \"t\", \"tap_fd\": 2 } ] }",
	  "vm.json: net[0].tap_fd: must be an integer in 3..1023" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"vsock\": { \"guest_cid\": 2, \"uds_path\": \"/v\" } }",
	  "vm.json: vsock.guest_cid: must be an integer in 3..4294967294" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"serial\": { \"output\": 5 } }",
	  "vm.json: serial.output: must be \"stdout\", \"none\" or a file path" },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"entropy\": 7 }", "vm.json: entropy: must be true, false or {}" },
	{ "{ \"boot\": ", "vm.json:1: " },
	{ "{ \"boot\": { \"kernel\": \"/k\" }, \"boot\": {} }", "vm.json:1: duplicate object key" },
};

START_TEST(rejects_with_the_key)
{
	struct vm_config c;
	char err[256] = "";

	ck_assert_int_ne(vm_config_parse(&c, "vm.json", bad[_i].json, err, sizeof(err)), 0);
	ck_assert_msg(strncmp(err, bad[_i].error, strlen(bad[_i].error)) == 0, "case %d: got '%s', want '%s'", _i,
		      err, bad[_i].error);
}
END_TEST

/* Reading the file: -errno, and a message that names the file. */
START_TEST(load_errors_name_the_file)
{
	char path[64] = "/tmp/kiln-vmconfig-test-XXXXXX", err[256] = "", want[128];
	struct vm_config c;
	FILE *f;
	int fd;

	ck_assert_int_eq(vm_config_load(&c, "/nonexistent/vm.json", err, sizeof(err)), -ENOENT);
	ck_assert_str_eq(err, "/nonexistent/vm.json: No such file or directory");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_ptr_nonnull(f = fdopen(fd, "w"));
	ck_assert_int_eq(fseek(f, 1 << 20, SEEK_SET), 0);  /* 1 MiB + 1 byte */
	fputc(' ', f);
	fclose(f);
	ck_assert_int_eq(vm_config_load(&c, path, err, sizeof(err)), -E2BIG);
	snprintf(want, sizeof(want), "%s: larger than 1 MiB", path);
	ck_assert_str_eq(err, want);
	ck_assert_ptr_nonnull(f = fopen(path, "w"));
	fputs(good, f);
	fclose(f);
	ck_assert_msg(vm_config_load(&c, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(c.vcpus, 2);
	vm_config_free(&c);
	unlink(path);
}
END_TEST

Suite *vmconfig_suite(void)
{
	Suite *s = suite_create("vmconfig");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, parses_everything);
	tcase_add_loop_test(tc, rejects_with_the_key, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, load_errors_name_the_file);
	suite_add_tcase(s, tc);
	return s;
}
