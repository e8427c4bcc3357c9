#!/bin/sh
# oci.sh: oci/ (registry client, layers, image store) against a real
# registry. Automake test (plain POSIX sh); exit 77 skips, saying why, when
# a package is missing (docker-registry, skopeo, umoci, apache2-utils,
# busybox-static, e2fsprogs, openssl, python3).
#
# Starts Debian's docker-registry on 127.0.0.1 (a free port) with TLS from a
# CA made here and htpasswd basic auth, pushes images built here with umoci
# and skopeo from busybox-static:
#   test/multi:1     two layers: a hard link, then a whiteout (OCI manifest)
#   test/multi:v2s2  the same as a Docker v2 schema 2 manifest
#   test/multi:zstd  the same with zstd layers
#   test/arch:1      an OCI index: linux/arm64 first, then linux/amd64
#   test/hostile:*   a symlinked parent into the host, a '..' name
# and pulls them through tests/oci-driver, checking the ext4 images with
# debugfs; then wrong credentials, an unknown tag, concurrent pulls of one
# image, list and prune, `kiln images pull` of a docker.io image through
# registry mirrors with a docker config.json, a fake token-auth registry (tests/oci-fake-registry.py),
# a pull canceled midway through a slow blob and one waiting for another,
# and a tampered and a truncated blob (each fails and leaves nothing in the
# store). Everything it starts it stops.
set -eu

: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"

driver=$top_builddir/tests/oci-driver

skip() {
	echo "SKIP: $*"
	exit 77
}
fail() {
	echo "FAIL: $*"
	exit 1
}

for tool in docker-registry:docker-registry skopeo:skopeo umoci:umoci htpasswd:apache2-utils \
	openssl:openssl debugfs:e2fsprogs mke2fs:e2fsprogs python3:python3; do
	command -v "${tool%%:*}" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v "${tool%%:*}" >/dev/null 2>&1 || skip "${tool%%:*} is missing (apt-get install ${tool#*:})"
done
[ -x /bin/busybox ] || skip "/bin/busybox is missing (apt-get install busybox-static)"
[ -x "$driver" ] || skip "$driver is not built"
# umoci unpacks with the images' owners, and hard links need them too.
[ "$(id -u)" = 0 ] || skip "needs root (umoci unpack and repack keep the images' owners)"

w=$(mktemp -d "${TMPDIR:-/tmp}/kiln-oci.XXXXXX")
reg_pid=
fake_pid=
slow_pid=
cleanup() {
	for p in $reg_pid $fake_pid $slow_pid; do
		kill "$p" 2>/dev/null || :
		wait "$p" 2>/dev/null || :
	done
	[ -n "${KILN_OCI_KEEP:-}" ] && echo "kept $w" || rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# --- the registry ------------------------------------------------------
cd "$w"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kiln-test-ca -keyout ca.key -out ca.crt \
	>/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext \
	-out srv.crt >/dev/null 2>&1
mkdir certs && cp ca.crt certs/ca.crt
htpasswd -Bbn tester s3cret >htpasswd 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >config.yml <<EOC
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $w/reg
http:
  addr: 127.0.0.1:$port
  tls:
    certificate: $w/srv.crt
    key: $w/srv.key
auth:
  htpasswd:
    realm: kiln-test
    path: $w/htpasswd
EOC
docker-registry serve config.yml >registry.log 2>&1 &
reg_pid=$!
reg=127.0.0.1:$port
up=
for _ in $(seq 1 100); do
	if python3 - "$port" "$w/ca.crt" <<'EOP' 2>/dev/null; then
import base64, ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
req = urllib.request.Request("https://127.0.0.1:%s/v2/" % sys.argv[1],
    headers={"Authorization": "Basic " + base64.b64encode(b"tester:s3cret").decode()})
urllib.request.urlopen(req, context=ctx, timeout=2)
EOP
		up=1
		break
	fi
	kill -0 "$reg_pid" 2>/dev/null || break
	sleep 0.1
done
[ -n "$up" ] || { cat registry.log; fail "docker-registry did not come up on $reg"; }

# --- images --------------------------------------------------------------
umoci init --layout lay >/dev/null
umoci new --image lay:multi >/dev/null
umoci unpack --image lay:multi bundle >/dev/null
r=bundle/rootfs
mkdir -p "$r/bin" "$r/etc" "$r/srv/sub"
cp /bin/busybox "$r/bin/busybox"
ln "$r/bin/busybox" "$r/bin/sh"
ln -s busybox "$r/bin/ls"
echo keep >"$r/etc/keep"
echo gone >"$r/etc/gone"
echo lower >"$r/srv/sub/lower"
chmod 4755 "$r/etc/keep"
umoci repack --image lay:multi bundle >/dev/null
rm "$r/etc/gone"
echo new >"$r/etc/new"
umoci repack --image lay:multi bundle >/dev/null

# The index: the same rootfs with a marker per platform.
for a in arm64 amd64; do
	umoci new --image "lay:$a" >/dev/null
	umoci config --image "lay:$a" --architecture "$a" --os linux >/dev/null
	rm -rf b2
	umoci unpack --image "lay:$a" b2 >/dev/null
	mkdir -p b2/rootfs/etc
	echo "$a" >b2/rootfs/etc/arch
	umoci repack --image "lay:$a" b2 >/dev/null
done
python3 - lay <<'EOP'
import hashlib, json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
by = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in idx["manifests"]}
ents = []
for a in ("arm64", "amd64"):
    m = dict(by[a]); m.pop("annotations", None)
    m["platform"] = {"os": "linux", "architecture": a}
    ents.append(m)
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": ents}).encode()
h = hashlib.sha256(body).hexdigest()
open(os.path.join(lay, "blobs", "sha256", h), "wb").write(body)
idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": "sha256:" + h,
                         "size": len(body), "annotations": {"org.opencontainers.image.ref.name": "arch"}})
json.dump(idx, open(os.path.join(lay, "index.json"), "w"))
EOP

# Hostile layers, written with Python's tarfile into a layout of their own:
# hostile:symlink  layer 1 "evil" -> this test's folder on the host,
#                  layer 2 "evil/pwned" (must land inside the image);
# hostile:dotdot   "../../escape" (must be refused).
mkdir outside
python3 - hostile "$w/outside" <<'EOP'
import gzip, hashlib, io, json, os, sys, tarfile
lay, outside = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(lay, "blobs", "sha256"))
open(os.path.join(lay, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')
def blob(data):
    h = hashlib.sha256(data).hexdigest()
    open(os.path.join(lay, "blobs", "sha256", h), "wb").write(data)
    return "sha256:" + h
def layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, arg in entries:
            ti = tarfile.TarInfo(name)
            if kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, arg
                t.addfile(ti)
            else:
                ti.size = len(arg)
                t.addfile(ti, io.BytesIO(arg))
    tar = raw.getvalue()
    gz = gzip.compress(tar)
    return {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz), "size": len(gz)}, \
        "sha256:" + hashlib.sha256(tar).hexdigest()
def image(tag, layers):
    descs, ids = zip(*[layer(l) for l in layers])
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                      "rootfs": {"type": "layers", "diff_ids": list(ids)}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg),
                                 "size": len(cfg)}, "layers": list(descs)}).encode()
    return {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(man), "size": len(man),
            "annotations": {"org.opencontainers.image.ref.name": tag}}
idx = {"schemaVersion": 2, "manifests": [
    image("symlink", [[("evil", "sym", outside)], [("evil/pwned", "file", b"pwned\n")]]),
    image("dotdot", [[("ok", "file", b"ok\n"), ("../../escape", "file", b"escaped\n")]]),
]}
json.dump(idx, open(os.path.join(lay, "index.json"), "w"))
EOP

push() {
	skopeo copy -q --dest-creds tester:s3cret --dest-cert-dir "$w/certs" "$@" >/dev/null 2>>skopeo.log ||
		{ cat skopeo.log; fail "skopeo copy $*"; }
}
push "oci:lay:multi" "docker://$reg/test/multi:1"
push --format v2s2 "oci:lay:multi" "docker://$reg/test/multi:v2s2"
push --all "oci:lay:arch" "docker://$reg/test/arch:1"
push "oci:lay:amd64" "docker://$reg/test/tamper:1"
push "oci:hostile:symlink" "docker://$reg/test/hostile:symlink"
push "oci:hostile:dotdot" "docker://$reg/test/hostile:dotdot"
skopeo copy -q --dest-compress --dest-compress-format zstd oci:lay:multi oci:layz:multi >/dev/null 2>>skopeo.log ||
	{ cat skopeo.log; fail "skopeo copy to zstd"; }
push "oci:layz:multi" "docker://$reg/test/multi:zstd"
# Docker Hub's name for it, as a mirror serves it.
push "oci:lay:multi" "docker://$reg/library/kilnbox:1"

# --- pulls ---------------------------------------------------------------
creds="-u tester -p s3cret -c $w/ca.crt"
st=$w/state
pull() {
	# shellcheck disable=SC2086
	"$driver" pull "$@" $creds
}
rootfs_of() { sed -n 's/^rootfs //p' "$1"; }
in_img() { debugfs -R "$2" "$1" 2>/dev/null; }

pull "$st" "$reg/test/multi:1" >p1.out 2>p1.err || { cat p1.err; fail "pull test/multi:1"; }
img=$(rootfs_of p1.out)
[ -f "$img" ] || fail "pull test/multi:1 gave no rootfs ($(cat p1.out))"
in_img "$img" 'cat /etc/keep' | grep -qx keep || fail "multi:1: /etc/keep is missing"
in_img "$img" 'cat /etc/new' | grep -qx new || fail "multi:1: /etc/new is missing"
in_img "$img" 'ls /etc' | grep -q gone && fail "multi:1: the whiteout left /etc/gone"
in_img "$img" 'stat /bin/sh' | grep -q 'Links: 2' || fail "multi:1: /bin/sh is not a hard link to busybox"
in_img "$img" 'stat /bin/ls' | grep -q 'Type: symlink' || fail "multi:1: /bin/ls is not a symlink"
in_img "$img" 'stat /etc/keep' | grep -q 'Mode:  04755' || fail "multi:1: /etc/keep lost its mode"
cmp -s /bin/busybox "$w/bb" 2>/dev/null || in_img "$img" "dump /bin/busybox $w/bb"
cmp -s /bin/busybox "$w/bb" || fail "multi:1: /bin/busybox differs from the one pushed"
"$driver" find "$st" "$reg/test/multi:1" >f1.out 2>f1.err || fail "find test/multi:1: $(cat f1.err)"
cmp -s p1.out f1.out || fail "find test/multi:1: $(cat f1.out), not $(cat p1.out)"
"$driver" find "$st" "$reg/test/multi:1" -a arm64 >/dev/null 2>f2.err && fail "find multi:1 for arm64 found it"
grep -q "image $reg/test/multi:1 (linux/arm64) is not in the store" f2.err || fail "find arm64: $(cat f2.err)"
echo "ok: multi:1 (OCI, 2 layers, whiteout, hard link), found in the store"

pull "$st" "$reg/test/multi:v2s2" >p2.out 2>p2.err || { cat p2.err; fail "pull test/multi:v2s2"; }
in_img "$(rootfs_of p2.out)" 'cat /etc/new' | grep -qx new || fail "multi:v2s2: /etc/new is missing"
echo "ok: multi:v2s2 (Docker schema 2)"

pull "$st" "$reg/test/multi:zstd" >pz.out 2>pz.err || { cat pz.err; fail "pull test/multi:zstd"; }
grep -q 'tar+zstd' "$(dirname "$(rootfs_of pz.out)")/manifest.json" || fail "multi:zstd: the layers are not zstd"
in_img "$(rootfs_of pz.out)" 'cat /etc/new' | grep -qx new || fail "multi:zstd: /etc/new is missing"
echo "ok: multi:zstd (zstd layers)"

pull "$st" "$reg/test/arch:1" >p3.out 2>p3.err || { cat p3.err; fail "pull test/arch:1"; }
in_img "$(rootfs_of p3.out)" 'cat /etc/arch' | grep -qx amd64 || fail "arch:1: not the amd64 manifest"
"$driver" pull "$st" "$reg/test/arch:1" -a arm64 $creds >p4.out 2>p4.err || { cat p4.err; fail "pull arm64"; }
in_img "$(rootfs_of p4.out)" 'cat /etc/arch' | grep -qx arm64 || fail "arch:1 -a arm64: not the arm64 manifest"
"$driver" pull "$st" "$reg/test/arch:1" -a s390x $creds >/dev/null 2>p5.err && fail "arch:1 -a s390x pulled"
grep -q 'no linux/s390x manifest (it has: linux/arm64, linux/amd64)' p5.err || fail "s390x: $(cat p5.err)"
echo "ok: arch:1 (OCI index, linux/amd64 picked)"

pull "$st" "$reg/test/hostile:symlink" >h1.out 2>h1.err || fail "hostile:symlink: $(cat h1.err)"
[ -e "$w/outside/pwned" ] && fail "hostile:symlink wrote through a symlink onto the host"
in_img "$(rootfs_of h1.out)" "cat $w/outside/pwned" | grep -qx pwned ||
	fail "hostile:symlink: evil/pwned is not inside the image"
st4=$w/state4
pull "$st4" "$reg/test/hostile:dotdot" >/dev/null 2>h2.err && fail "hostile:dotdot pulled"
grep -q "entry '../../escape' climbs out of the root" h2.err || fail "hostile:dotdot: $(cat h2.err)"
[ ! -e "$w/escape" ] && [ ! -e "$st4/escape" ] && [ ! -e "$st4/oci/escape" ] || fail "hostile:dotdot escaped"
[ -z "$(ls -A "$st4/oci/images" "$st4/oci/tmp" | grep -v '^/\|^$')" ] || fail "hostile:dotdot left files"
echo "ok: hostile layers (a symlinked parent stays inside, '..' is refused)"

"$driver" pull "$w/st-bad" "$reg/test/multi:1" -u tester -p wrong -c "$w/ca.crt" >/dev/null 2>bad.err &&
	fail "a pull with a wrong password succeeded"
grep -q '401' bad.err || fail "wrong password: $(cat bad.err)"
"$driver" pull "$w/st-bad" "$reg/test/multi:1" >/dev/null 2>bad2.err && fail "a pull without the CA succeeded"
grep -q 'oci-driver: error: registry: GET https://' bad2.err || fail "no CA: $(cat bad2.err)"
pull "$st" "$reg/test/nothere:1" >/dev/null 2>nf.err && fail "an unknown repository pulled"
grep -q '404 \(MANIFEST\|NAME\)_UNKNOWN' nf.err || fail "unknown repository: $(cat nf.err)"
"$driver" pull "$st" "$reg/Test/x" >/dev/null 2>ref.err && fail "a bad reference pulled"
grep -q "component 'Test'" ref.err || fail "bad reference: $(cat ref.err)"
echo "ok: wrong password, no CA, unknown repository, bad reference fail with one line"

# Concurrent pulls of one image: one builds, the others wait and reuse it.
st2=$w/state2
pull "$st2" "$reg/test/multi:1" >c1.out 2>c1.err &
c1=$!
pull "$st2" "$reg/test/multi:1" >c2.out 2>c2.err &
c2=$!
pull "$st2" "$reg/test/multi:1" >c3.out 2>c3.err || fail "concurrent pull 3: $(cat c3.err)"
wait "$c1" || fail "concurrent pull 1: $(cat c1.err)"
wait "$c2" || fail "concurrent pull 2: $(cat c2.err)"
[ "$(sort -u c1.out c2.out c3.out | grep -c '^digest')" = 1 ] || fail "concurrent pulls disagree"
[ "$(ls "$st2/oci/images" | wc -l)" = 1 ] || fail "concurrent pulls built $(ls "$st2/oci/images" | wc -l) images"
[ -z "$(ls -A "$st2/oci/tmp")" ] || fail "concurrent pulls left scratch files"
echo "ok: concurrent pulls of one image"

"$driver" list "$st" >list.out
# multi:1, :v2s2, :zstd, hostile:symlink; arch:1 was pulled for two platforms.
[ "$(wc -l <list.out)" = 6 ] || fail "list: $(cat list.out)"
grep -q "^$reg/test/arch:1 sha256:" list.out || fail "list: no arch:1 in $(cat list.out)"
"$driver" prune "$st" 0 >prune.out || fail "prune"
[ -z "$("$driver" list "$st")" ] || fail "prune 0 left images"
[ -z "$(ls -A "$st/oci/blobs/sha256")" ] || fail "prune 0 left blobs"
[ -z "$(ls -A "$st/oci/refs")" ] || fail "prune 0 left references"
"$driver" find "$st" "$reg/test/multi:1" >/dev/null 2>&1 && fail "find after prune found test/multi:1"
echo "ok: list and prune"

# kiln's `oci: registries:`: docker.io through mirrors (a dead one, then
# this registry), the mirror's credentials from a docker config.json.
kiln=$top_builddir/kiln
printf '{"auths": {"%s": {"auth": "%s"}}, "credHelpers": {"gcr.io": "gcloud"}}\n' "$reg" \
	"$(printf tester:s3cret | base64)" >docker-config.json
dead=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >kiln.yml <<EOC
state_dir: $w/st-mirror
oci:
  registries:
    - host: docker.io
      mirrors: ['127.0.0.1:$dead', 'https://$reg/']
    - host: $reg
      docker_config: $w/docker-config.json
      tls_ca_file: $w/ca.crt
EOC
KILN_CONFIG=$w/kiln.yml "$kiln" images pull kilnbox:1 >m.out 2>m.err || fail "pull through a mirror: $(cat m.err)"
grep -q "^docker.io/library/kilnbox:1 sha256:" m.out || fail "pull through a mirror: $(cat m.out)"
grep -q "mirror 127.0.0.1:$dead: .*; trying the next mirror" m.err || fail "the dead mirror: $(cat m.err)"
in_img "$(cut -d' ' -f3 m.out)" 'cat /etc/new' | grep -qx new || fail "pull through a mirror: /etc/new is missing"
printf '{"auths": {"%s": {}}, "credHelpers": {"%s": "secretservice"}}\n' "$reg" "$reg" >docker-config.json
KILN_CONFIG=$w/kiln.yml "$kiln" images pull kilnbox:1 >/dev/null 2>m2.err && fail "credHelpers for the host was taken"
grep -q "kiln.yml:6: oci.registries\[1\]: docker_config: $w/docker-config.json: credHelpers\[\"$reg\"\] is not supported" \
	m2.err || fail "credHelpers: $(cat m2.err)"
echo "ok: docker.io through mirrors (a dead one skipped), credentials from a docker config.json, credHelpers refused"

# Token auth as Docker Hub does it, 429 with Retry-After, blobs redirected
# to another host that must not see the token; plain http (insecure).
python3 "$top_srcdir/tests/oci-fake-registry.py" "$w/lay" "$w/fake.port" "$w/fake.log" 2>fake.err &
fake_pid=$!
for _ in $(seq 1 100); do
	[ -s fake.port ] && break
	sleep 0.1
done
[ -s fake.port ] || fail "the fake registry did not start: $(cat fake.err)"
fake=127.0.0.1:$(cat fake.port)
"$driver" pull "$w/st-fake" "$fake/test/multi:multi" -k -u tester -p s3cret >f.out 2>f.err ||
	fail "token-auth pull: $(cat f.err) (requests: $(cat fake.log))"
in_img "$(rootfs_of f.out)" 'cat /etc/new' | grep -qx new || fail "token-auth pull: /etc/new is missing"
grep -q '^GET /token?.* auth=Basic$' fake.log || fail "no token request with basic credentials: $(cat fake.log)"
grep -q '^GET /cdn/.* auth=-$' fake.log || fail "no blob from the redirect target: $(cat fake.log)"
grep -q 'cdn got an Authorization header' fake.log && fail "the token went to the redirect target"
[ "$(grep -c '^GET /v2/test/multi/manifests/multi auth=Bearer' fake.log)" = 2 ] ||
	fail "the 429 was not retried: $(cat fake.log)"
# Pulled again: a HEAD says the tag has not moved, no manifest GET.
"$driver" pull "$w/st-fake" "$fake/test/multi:multi" -k -u tester -p s3cret >f4.out 2>f4.err ||
	fail "token-auth pull again: $(cat f4.err)"
cmp -s f.out f4.out || fail "pulled again: $(cat f4.out), not $(cat f.out)"
grep -q '^HEAD /v2/test/multi/manifests/multi auth=Bearer$' fake.log || fail "no HEAD: $(cat fake.log)"
[ "$(grep -c '^GET /v2/test/multi/manifests/multi auth=Bearer' fake.log)" = 2 ] ||
	fail "pulled again with a manifest GET: $(cat fake.log)"
"$driver" pull "$w/st-fake2" "$fake/test/multi:multi" -k >/dev/null 2>f2.err &&
	fail "an anonymous pull from the token registry succeeded"
grep -q 'token realm http://127.0.0.1:[0-9]*/token answered 401' f2.err || fail "anonymous: $(cat f2.err)"
"$driver" pull "$w/st-fake" "$fake/test/multi:weird" -k -u tester -p s3cret >/dev/null 2>f3.err &&
	fail "a manifest of an unknown media type pulled"
grep -q "has media type 'application/vnd.example.thing+json', which kiln does not know" f3.err ||
	fail "unknown media type: $(cat f3.err)"
echo "ok: bearer token from the realm, 429 retried, redirect without the token, HEAD when pulled again, unknown media type"

# A pull canceled midway (a job's cancel): the blob trickles in, SIGTERM
# sets the driver's cancel flag, the pull ends within a second or two, not
# when the download would have, and leaves nothing in the store.
python3 "$top_srcdir/tests/oci-fake-registry.py" "$w/lay" "$w/slow.port" "$w/slow.log" slow 2>slow.err &
slow_pid=$!
for _ in $(seq 1 100); do
	[ -s slow.port ] && break
	sleep 0.1
done
[ -s slow.port ] || fail "the slow fake registry did not start: $(cat slow.err)"
stc=$w/st-cancel
"$driver" pull "$stc" "127.0.0.1:$(cat slow.port)/test/multi:multi" -k -u tester -p s3cret -t >c.out 2>c.err &
pull_pid=$!
for _ in $(seq 1 100); do
	ls "$stc/oci/blobs/sha256/" 2>/dev/null | grep -q '\.part\.' && break
	sleep 0.1
done
ls "$stc/oci/blobs/sha256/" 2>/dev/null | grep -q '\.part\.' || fail "the slow pull wrote no blob: $(cat c.err)"
sleep 0.5
t0=$(date +%s%N)
kill -TERM "$pull_pid"
rc=0
wait "$pull_pid" || rc=$?
t1=$(date +%s%N)
kill "$slow_pid" 2>/dev/null || :
wait "$slow_pid" 2>/dev/null || :
[ "$rc" = 1 ] || fail "a canceled pull: exit $rc: $(cat c.out c.err)"
grep -q 'oci-driver: error: registry: GET .*: canceled' c.err || fail "a canceled pull: $(cat c.err)"
[ $(((t1 - t0) / 1000000)) -lt 2500 ] || fail "a canceled pull took $(((t1 - t0) / 1000000)) ms to end"
[ -z "$(ls -A "$stc/oci/images" "$stc/oci/blobs/sha256" "$stc/oci/tmp" | grep -v '^/\|^$')" ] ||
	fail "a canceled pull left files: $(find "$stc/oci" -type f)"
echo "ok: a pull canceled mid-blob ends in $(((t1 - t0) / 1000000)) ms and leaves nothing"

# A pull waiting for another one that builds the same image (its lock
# held here) is canceled too, without waiting for it.
stl=$w/st-lock
hex=$(sed -n 's/^digest sha256://p' f.out)
mkdir -p "$stl/oci/locks"
flock "$stl/oci/locks/$hex.lock" sleep 60 &
hold_pid=$!
sleep 0.3
"$driver" pull "$stl" "$fake/test/multi:multi" -k -u tester -p s3cret -t >l.out 2>l.err &
pull_pid=$!
sleep 1.5
kill -TERM "$pull_pid"
rc=0
wait "$pull_pid" || rc=$?
kill "$hold_pid" 2>/dev/null || :
wait "$hold_pid" 2>/dev/null || :
[ "$rc" = 1 ] && grep -q "canceled while another pull built sha256:$hex" l.err ||
	fail "a pull canceled while it waits for another: exit $rc: $(cat l.err)"
echo "ok: a pull waiting for another pull of its image is canceled"

# A tampered blob: same size, one byte changed, in the registry's storage.
man=$(python3 - lay <<'EOP'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
m = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "amd64"][0]
mf = json.load(open(os.path.join(lay, "blobs", "sha256", m["digest"][7:])))
print(mf["layers"][-1]["digest"][7:])
EOP
)
data=$w/reg/docker/registry/v2/blobs/sha256/$(printf %s "$man" | cut -c1-2)/$man/data
[ -f "$data" ] || fail "no blob $data in the registry's storage"
python3 - "$data" <<'EOP'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
b[len(b) // 2] ^= 0xff
open(p, "wb").write(b)
EOP
st3=$w/state3
pull "$st3" "$reg/test/tamper:1" >/dev/null 2>t.err && fail "a tampered blob was accepted"
grep -q "blob sha256:$man arrived with digest sha256:" t.err || fail "tamper: $(cat t.err)"
[ -z "$(ls -A "$st3/oci/images" "$st3/oci/blobs/sha256" "$st3/oci/tmp" | grep -v '^/\|^$')" ] ||
	fail "a failed pull left files: $(find "$st3/oci" -type f)"
echo "ok: a tampered blob fails and leaves nothing"

# A truncated blob: the registry serves fewer bytes than the manifest says.
man=$(python3 - lay <<'EOP'
import json, os, sys
lay = sys.argv[1]
idx = json.load(open(os.path.join(lay, "index.json")))
m = [m for m in idx["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "arm64"][0]
mf = json.load(open(os.path.join(lay, "blobs", "sha256", m["digest"][7:])))
print(mf["layers"][-1]["digest"][7:])
EOP
)
data=$w/reg/docker/registry/v2/blobs/sha256/$(printf %s "$man" | cut -c1-2)/$man/data
[ -f "$data" ] || fail "no blob $data in the registry's storage"
size=$(stat -c %s "$data")
truncate -s $((size / 2)) "$data"
st5=$w/state5
pull "$st5" "$reg/test/arch:1" -a arm64 >/dev/null 2>tr.err && fail "a truncated blob was accepted"
grep -q "blob sha256:$man is truncated: $((size / 2)) of $size bytes" tr.err || fail "truncated: $(cat tr.err)"
[ -z "$(ls -A "$st5/oci/images" "$st5/oci/blobs/sha256" "$st5/oci/tmp" | grep -v '^/\|^$')" ] ||
	fail "a failed pull left files: $(find "$st5/oci" -type f)"
echo "ok: a truncated blob fails and leaves nothing"
exit 0
