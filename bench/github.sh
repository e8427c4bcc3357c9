#!/bin/bash
# bench/github.sh: the GitHub side's API budget (issue #17): 10 idle
# repositories, a reconciler round each (runs queued and in progress, the
# runner list) per 10 s poll, against tests/fake-github.py, whose
# x-ratelimit budget counts what GitHub counts (a 304 costs nothing).
# Target: at most 10% of the requests counted.
#
# And, as root with the kernel and debian images (tests/github.sh's
# runner VM part), queued job seen -> runner VM up with run.sh started:
# cold, beside that VM's own boot time (target: boot + 300 ms), and with
# the warm pool (target: 100 ms + the fake GitHub's own latency).
#
# Usage: bench/github.sh (from a built tree; needs python3 and openssl)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out=$(top_srcdir=$top top_builddir=$top CK_VERBOSITY=silent bash "$top/tests/github.sh" 2>&1) || {
	echo "$out" | grep '^FAIL'
	echo "$out" | tail -20
	exit 1
}
echo "$out" | grep '^bench:' | sed 's/^bench: //'
