/* ws-bench: run ws_prepare() once and print its timings, for
 * bench/workspace.sh (not installed, not part of make check).
 *
 *   ws-bench --state DIR --url URL --sha SHA --image PATH [--project P]
 *            [--depth N] [--submodules] [--dirty DIR] [--ref REF]
 *
 * Prints one line: total_ms=.. lock_ms=.. mirror_ms=.. checkout_ms=..
 * image_ms=.. cloned=0|1 content_bytes=.. image_bytes=..; exit 1 on error. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lib/clock.h"
#include "workspace/workspace.h"

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' }, { "url", required_argument, NULL, 'u' },
		{ "sha", required_argument, NULL, 'c' },   { "image", required_argument, NULL, 'i' },
		{ "project", required_argument, NULL, 'p' }, { "depth", required_argument, NULL, 'd' },
		{ "submodules", no_argument, NULL, 'm' },  { "dirty", required_argument, NULL, 'y' },
		{ "ref", required_argument, NULL, 'r' },   { "fresh", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	struct ws_spec spec = { .project_path = "bench/project" };
	struct ws_result res;
	struct kiln_err e = { 0 };
	long t0;
	int c;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': spec.state_dir = optarg; break;
		case 'u': spec.url = optarg; break;
		case 'c': spec.sha = optarg; break;
		case 'i': spec.image_path = optarg; break;
		case 'p': spec.project_path = optarg; break;
		case 'd': spec.depth = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'm': spec.submodules = true; break;
		case 'y': spec.dirty_dir = optarg; break;
		case 'r': spec.ref = optarg; break;
		case 'f': spec.fresh_checkout = true; break;
		default:
			fprintf(stderr, "usage: ws-bench --state DIR --url URL --sha SHA --image PATH "
					"[--project P] [--depth N] [--submodules] [--dirty DIR] [--ref REF] [--fresh]\n");
			return 2;
		}
	}
	t0 = mono_ms();
	if (ws_prepare(&spec, &res, &e) != KILN_OK) {
		fprintf(stderr, "ws-bench: %s\n", e.msg);
		return 1;
	}
	printf("total_ms=%ld lock_ms=%ld mirror_ms=%ld checkout_ms=%ld image_ms=%ld cloned=%d reused=%d "
	       "content_bytes=%llu image_bytes=%llu\n",
	       mono_ms() - t0, res.lock_wait_ms, res.mirror_ms, res.checkout_ms, res.image_ms,
	       res.mirror_cloned, res.tree_reused, (unsigned long long)res.content_bytes,
	       (unsigned long long)res.image_bytes);
	return 0;
}
