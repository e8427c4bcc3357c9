#!/bin/bash
# OCI images (issue #16), side by side; not part of make check.
#   bench/oci-pull.sh [TREE]   (default: the debian recipe's debootstrap tree
#                               in /var/cache/kiln/rootfs, about 500 MB)
#
# 1. Pull and convert: TREE pushed as a 3-layer gzip image (usr/, then lib*,
#    bin, sbin, then the rest) to Debian's docker-registry on 127.0.0.1
#    (plain http), then, REPS times (default 3) after one untimed round,
#      kiln cold      `kiln images pull` into an empty store
#      kiln layers    the same with the layers already in the store
#      kiln cached    the image already built: one manifest request
#      peer           `skopeo copy` + `umoci unpack` + `mke2fs -d` of the same
#                     image into an empty folder, an ext4 image of kiln's size
#    each its own process tree from spawn to exit, kiln's and the peer's
#    rounds interleaved (ABBA: kiln first in odd rounds, the peer in even
#    ones) so that load from elsewhere falls on both; every timed run starts
#    after a `sync` (the last run's writeback is not the next one's) with the
#    registry's blobs in the page cache (the untimed round read them), and
#    its output removed before the next. Medians, each round's ratio, and
#    the load average when it ran (`uptime`), since the host is shared.
#    The ratio is median kiln cold / median peer (target <= 1.0).
# 2. Job start: `kiln exec --job-file` of a one-line job with the qemu
#    executor, from spawn to the script's first output, RUNS (default 9)
#    times each, interleaved (ABBA) (SKIP_PULL=1: only this part; SKIP_JOB=1: only part 1),
#    medians: the kiln image tiny against a cached OCI image (busybox,
#    pull_policy if-not-present); target: < 50 ms added.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:-$(ls -d /var/cache/kiln/rootfs/debian-*/ 2>/dev/null | head -1)}
runs=${RUNS:-9}
reps=${REPS:-3}
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
[ -d "$tree" ] || { echo "bench/oci-pull.sh: no tree '$tree'" >&2; exit 1; }
for t in docker-registry skopeo umoci mke2fs python3; do
	command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
	command -v "$t" >/dev/null || { echo "bench/oci-pull.sh: $t is missing" >&2; exit 1; }
done
w=$(mktemp -d /var/tmp/kiln-oci-bench.XXXXXX)
reg_pid=
trap '[ -n "$reg_pid" ] && kill $reg_pid; [ -n "${KILN_OCI_KEEP:-}" ] && echo "kept $w" || rm -rf "$w"' EXIT
cd "$w"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
reg=127.0.0.1:$port
printf 'version: 0.1\nlog: {level: error, accesslog: {disabled: true}}\nstorage: {filesystem: {rootdirectory: %s/reg}}\nhttp: {addr: %s}\n' \
	"$w" "$reg" >registry.yml
docker-registry serve registry.yml >registry.log 2>&1 &
reg_pid=$!
for _ in $(seq 100); do curl -sf "http://$reg/v2/" >/dev/null && break; sleep 0.1; done
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

export KILN_DATA_DIR=$top KILN_LIBEXEC_DIR=$top KILN_STATE_DIR=$w/state KILN_IMAGES_DIR=$images
printf 'defaults: {image: tiny}\noci:\n  allowed_pull_policies: [always, if-not-present]\n  registries:\n    - {host: "%s", insecure: true}\n' \
	"$reg" >config.yml
export KILN_CONFIG=$w/config.yml

# --- the image -------------------------------------------------------------
umoci init --layout lay >/dev/null
if [ "${SKIP_PULL:-}" != 1 ]; then
echo "building a 3-layer image from $tree ($(du -sh "$tree" | cut -f1))"
umoci new --image lay:deb >/dev/null
umoci unpack --image lay:deb b >/dev/null
cp -a "$tree/usr" b/rootfs/
umoci repack --image lay:deb b >/dev/null
for d in "$tree"/*; do case ${d##*/} in lib* | bin | sbin) cp -a "$d" b/rootfs/ ;; esac; done
umoci repack --image lay:deb b >/dev/null
for d in "$tree"/*; do case ${d##*/} in usr | lib* | bin | sbin) ;; *) cp -a "$d" b/rootfs/ ;; esac; done
umoci repack --image lay:deb b >/dev/null
rm -rf b
skopeo copy -q --dest-tls-verify=false oci:lay:deb "docker://$reg/bench/deb:1"
echo "image: $(du -sh reg | cut -f1) in the registry"

# --- pull and convert ---------------------------------------------------------
kiln_pulls() { # ROUND: cold, layers, cached into k.txt
	local t0 t1 c l
	rm -rf state; sync
	t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
	c=$(secs "$t0" "$t1")
	rm -rf state/oci/images state/oci/refs; sync
	t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
	l=$(secs "$t0" "$t1")
	t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
	size=$(du -sb state/oci/images/*/rootfs.ext4 | cut -f1)
	[ "$1" = 0 ] || echo "$1 $c $l $(secs "$t0" "$t1")" >>k.txt
}
peer_pull() { # ROUND into p.txt
	local t0 t1
	rm -rf pb peer peer.ext4; sync
	t0=$(now)
	skopeo copy -q --src-tls-verify=false "docker://$reg/bench/deb:1" oci:peer:deb
	umoci unpack --image peer:deb pb >/dev/null
	mke2fs -q -t ext4 -d pb/rootfs peer.ext4 $(( (size >> 20) + 64 ))M >/dev/null
	t1=$(now)
	rm -rf pb peer peer.ext4
	[ "$1" = 0 ] || echo "$1 $(secs "$t0" "$t1")" >>p.txt
}
rm -f k.txt p.txt
for i in $(seq 0 "$reps"); do
	if [ $((i % 2)) = 1 ] || [ "$i" = 0 ]; then kiln_pulls "$i"; peer_pull "$i"; else peer_pull "$i"; kiln_pulls "$i"; fi
	[ "$i" = 0 ] || echo "round $i: load $(cut -d' ' -f1-3 /proc/loadavg)" >>load.txt
done
printf '%-6s %8s %8s %8s %8s %7s  %s\n' round "kiln" "layers" "cached" "peer" "ratio" "load (1 5 15 min)"
paste -d' ' k.txt p.txt load.txt | while read -r r c l ca _ p _ _ _ l1 l5 l15; do
	printf '%-6s %8s %8s %8s %8s %7s  %s %s %s\n' "$r" "$c" "$l" "$ca" "$p" \
		"$(awk -v k="$c" -v p="$p" 'BEGIN { printf "%.2f", k / p }')" "$l1" "$l5" "$l15"
done
kc=$(cut -d' ' -f2 k.txt | median); kl=$(cut -d' ' -f3 k.txt | median); kca=$(cut -d' ' -f4 k.txt | median)
pp=$(cut -d' ' -f2 p.txt | median)
printf '%-6s %8s %8s %8s %8s %7s\n' median "$kc" "$kl" "$kca" "$pp" "$(awk -v k="$kc" -v p="$pp" 'BEGIN { printf "%.2f", k / p }')"
echo "ratio kiln cold / peer, medians of $reps: $(awk -v k="$kc" -v p="$pp" 'BEGIN { printf "%.2f", k / p }') (target <= 1.0)"
fi

# --- job start ----------------------------------------------------------------
[ "${SKIP_JOB:-}" = 1 ] && exit 0
umoci new --image lay:bb >/dev/null
umoci unpack --image lay:bb bb >/dev/null
mkdir -p bb/rootfs/bin && cp /bin/busybox bb/rootfs/bin/ && ln -s busybox bb/rootfs/bin/sh
umoci repack --image lay:bb bb >/dev/null
skopeo copy -q --dest-tls-verify=false oci:lay:bb "docker://$reg/bench/bb:1"
"$top/examples/make-demo-repo.sh" "$w/demo.git" >/dev/null
for v in kiln oci; do
	python3 - "$top/examples/tiny.json" "$w/demo.git" "$v" "$reg/bench/bb:1" >"$v.json" <<'EOP'
import json, sys
p = json.load(open(sys.argv[1]))
p["git_info"]["repo_url"] = sys.argv[2]
p["image"] = {"name": "tiny"} if sys.argv[3] == "kiln" else {"name": sys.argv[4], "pull_policy": "if-not-present"}
p["steps"] = [{"name": "script", "script": ["echo started"], "timeout": 600, "when": "on_success"}]
json.dump(p, sys.stdout)
EOP
	"$top/kiln" exec --executor qemu --no-network --job-file "$v.json" >/dev/null 2>&1 # warm the mirror and store
done
rm -f kiln.txt oci.txt
for i in $(seq 1 "$runs"); do # ABBA: the order alternates
	if [ $((i % 2)) = 1 ]; then order="kiln oci"; else order="oci kiln"; fi
	for v in $order; do
		python3 "$top/bench/first-byte.py" 1 'started' "$top/kiln" exec --executor qemu --no-network \
			--job-file "$v.json" >>"$v.txt"
	done
done
k=$(cut -d' ' -f1 kiln.txt | median)
o=$(cut -d' ' -f1 oci.txt | median)
printf 'job start (spawn -> first output, qemu, medians of %s): kiln image tiny %.3f s, OCI image (cached) %.3f s (load %s)\n' \
	"$(wc -l <kiln.txt)" "$k" "$o" "$(cut -d' ' -f1-3 /proc/loadavg)"
awk -v k="$k" -v o="$o" 'BEGIN { printf "added by the OCI image: %.0f ms (target < 50 ms)\n", (o - k) * 1000 }'
