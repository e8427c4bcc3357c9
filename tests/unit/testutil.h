/* Helpers shared by the runner's check suites. */
#ifndef KILN_TESTS_TESTUTIL_H
#define KILN_TESTS_TESTUTIL_H

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Run a shell command made with printf-style fmt (at most 8 KiB); its exit
 * status, 128 when it did not exit normally. */
int test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

struct trace;
struct ws_spec;

/* A trace that keeps the log in memory only (no client), cut at limit
 * bytes (0: the default); fails the test when it cannot start. */
struct trace *test_offline_trace(size_t limit);

/* A fresh directory /tmp/kiln-test-gl.XXXXXX; the name lives in a static
 * buffer until the next call. */
char *test_tmpdir(void);

/* Take the host-wide VM test lock (tests/vmtest.sh's), held until this
 * test's process exits: a test that makes cgroups, taps or VMs must not
 * run beside the shell tests that count what VMs leave behind. Nothing
 * when the caller already holds it (KILN_VM_LOCK_HELD) or
 * KILN_SANDBOX_NO_LOCK is set. */
void test_vm_lock(void);

/* Write n bytes of data to path and set its mode; fails the test on error. */
void test_write_file(const char *path, const void *data, size_t n, mode_t mode);

/* The first MiB of path, malloc'd (the caller frees), its length in *n. */
char *test_read_file(const char *path, size_t *n);

/* Run a shell command and keep its first line of output (trimmed) in out;
 * its exit status as test_sh. */
int test_sh_out(char *out, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The workspace fixture: a test repository made with git in /tmp
 * (ws_fixture_up, an unchecked fixture), removed by ws_fixture_down unless
 * KILN_TEST_KEEP is set. WS_GIT: git that trusts any folder's owner and
 * file:// submodules. */
#define WS_GIT "git -c safe.directory='*' -c protocol.file.allow=always"
extern char wsfx_dir[PATH_MAX];   /* the fixture root */
extern char wsfx_url[PATH_MAX];   /* file:// URL of the test repository */
extern char wsfx_sha[8][41];      /* main's commits, oldest first */
extern int wsfx_nsha;
extern char wsfx_feature[41];
extern char wsfx_sub_sha[41];     /* the submodule commit recorded in main */
void ws_fixture_up(void);
void ws_fixture_down(void);

/* Whether git and debugfs are here; if not, says so on stderr, naming the
 * suite whose tests are skipped. */
bool ws_fixture_usable(const char *suite);

/* A fresh state folder under the fixture root, named after tag. */
void ws_make_state(char *buf, size_t size, const char *tag);

/* A job's workspace spec for group/project at url and sha, its image in state. */
void ws_spec_init(struct ws_spec *s, const char *state, const char *url, const char *sha,
		  char *image, size_t image_size);

/* Dump the image's files into dir (made fresh). */
void ws_extract(const char *image, const char *dir);

/* How many files of dir match the shell glob. */
int ws_count_files(const char *dir, const char *glob);

/* The image's checkout of group/project (dumped into dir) is at sha,
 * detached, clean, without credentials in origin or alternates. */
void ws_check_checkout(const char *image, const char *dir, const char *sha);

/* A scripted HTTP server on 127.0.0.1 (a thread, one connection at a
 * time), standing in for GitLab: it records each request and answers from
 * the script; past the script a PATCH is a trace append (416 when its
 * Content-Range does not start where the stored trace ends), anything else
 * 200. */
#define SRV_MAX 64

struct srv {
	int fd, port;
	pthread_t th;
	/* Replies: "STATUS[ header lines]"; past the script, trace semantics. */
	const char *script[SRV_MAX];
	size_t n_script, next;
	/* What came. */
	char method[SRV_MAX][8], path[SRV_MAX][128], range[SRV_MAX][64];
	char *body[SRV_MAX];
	size_t body_len[SRV_MAX], n_req;
	bool job_token[SRV_MAX];  /* the request had a JOB-TOKEN header */
	char *stored;        /* the trace as a GitLab would keep it */
	size_t stored_len;
};

/* Listen on a free port (s->port) and serve; s zeroed but for the script. */
void srv_start(struct srv *s);

/* Stop serving and free what was recorded. */
void srv_stop(struct srv *s);

#endif
