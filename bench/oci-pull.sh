#!/bin/bash
# OCI images (issue #16), side by side, one run each; not part of make check.
#   bench/oci-pull.sh [TREE]   (default: the debian recipe's debootstrap tree
#                               in /var/cache/kiln/rootfs, about 500 MB)
#
# 1. Pull and convert: TREE pushed as a 3-layer gzip image (usr/, then lib*,
#    bin, sbin, then the rest) to Debian's docker-registry on 127.0.0.1
#    (plain http), then
#      kiln cold      `kiln images pull` into an empty store
#      kiln layers    the same with the layers already in the store
#      kiln cached    the image already built: one manifest request
#      peer           `skopeo copy` + `umoci unpack` + `mke2fs -d` of the same image
#    and the ratio kiln cold / peer (target <= 1.0).
# 2. Job start: `kiln exec --job-file` of a one-line job with the qemu
#    executor, from spawn to the script's first output, RUNS (default 3)
#    times each (SKIP_PULL=1: only this part), medians: the kiln image tiny against a cached OCI image
#    (busybox, pull_policy if-not-present); target: < 50 ms added.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
tree=${1:-$(ls -d /var/cache/kiln/rootfs/debian-*/ 2>/dev/null | head -1)}
runs=${RUNS:-3}
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
t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
cold=$(secs "$t0" "$t1")
rm -rf state/oci/images state/oci/refs
t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
layers=$(secs "$t0" "$t1")
t0=$(now); "$top/kiln" images pull "$reg/bench/deb:1" >/dev/null; t1=$(now)
cached=$(secs "$t0" "$t1")
size=$(du -sb state/oci/images/*/rootfs.ext4 | cut -f1)
t0=$(now)
skopeo copy -q --src-tls-verify=false "docker://$reg/bench/deb:1" oci:peer:deb
umoci unpack --image peer:deb pb >/dev/null
mke2fs -q -t ext4 -d pb/rootfs peer.ext4 $(( (size >> 20) + 64 ))M
t1=$(now)
peer=$(secs "$t0" "$t1")
rm -rf pb peer peer.ext4
printf '%-14s %8s\n' "pull+convert" seconds
printf '%-14s %8s\n' "kiln cold" "$cold" "kiln layers" "$layers" "kiln cached" "$cached" "peer" "$peer"
awk -v k="$cold" -v p="$peer" 'BEGIN { printf "ratio kiln cold / peer: %.2f (target <= 1.0)\n", k / p }'
fi

# --- job start ----------------------------------------------------------------
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
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
for v in kiln oci kiln oci; do
	python3 "$top/bench/first-byte.py" 1 'started' "$top/kiln" exec --executor qemu --no-network \
		--job-file "$v.json" >>"$v.txt"
done
for _ in $(seq 3 "$runs"); do
	for v in kiln oci; do
		python3 "$top/bench/first-byte.py" 1 'started' "$top/kiln" exec --executor qemu --no-network \
			--job-file "$v.json" >>"$v.txt"
	done
done
k=$(cut -d' ' -f1 kiln.txt | median)
o=$(cut -d' ' -f1 oci.txt | median)
printf 'job start (spawn -> first output, qemu, medians of %s): kiln image tiny %.3f s, OCI image (cached) %.3f s\n' \
	"$(wc -l <kiln.txt)" "$k" "$o"
awk -v k="$k" -v o="$o" 'BEGIN { printf "added by the OCI image: %.0f ms (target < 50 ms)\n", (o - k) * 1000 }'
