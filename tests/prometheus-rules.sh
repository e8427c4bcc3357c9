#!/bin/sh
# docs/prometheus/kiln-rules.yml: valid for Debian's promtool, and its unit
# tests (kiln-rules.test.yml) pass. Skipped (77) without promtool
# (apt-get install prometheus).
set -u
src=${top_srcdir:-.}
command -v promtool >/dev/null 2>&1 || { echo "SKIP: promtool not found (apt-get install prometheus)"; exit 77; }
cd "$src/docs/prometheus" || exit 99
promtool check rules kiln-rules.yml || { echo "FAIL: promtool check rules"; exit 1; }
promtool test rules kiln-rules.test.yml || { echo "FAIL: promtool test rules"; exit 1; }
# Every kiln_ series the rules read is one kiln serves (gitlab/metrics.c).
fail=0
for s in $(grep -v '^ *#' kiln-rules.yml | grep -o '[^:a-z_]kiln_[a-z_]*' | cut -c2- | sed 's/_bucket$//' | sort -u); do
	grep -q "\"$s\"" "$src/gitlab/metrics.c" || { echo "FAIL: the rules read $s, which gitlab/metrics.c does not name"; fail=1; }
done
exit $fail
