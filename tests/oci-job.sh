#!/bin/sh
# oci-job.sh: a job runs in an OCI image it names (issue #16), through
# `kiln exec --job-file` and the qemu executor (TCG on this host), pulled
# from Debian's docker-registry on 127.0.0.1 with TLS from a CA made here
# and htpasswd auth, credentials and CA from kiln's `oci: registries:`.
# The image (umoci from busybox-static): two layers with a whiteout, Env,
# User by name from its /etc/passwd. Checked: the job sees the image's
# files and not kiln's, Env under the job's variables, the User, the
# image's disk left as pulled; the image's Entrypoint runs the shell (a
# variable it exports reaches the script), image:entrypoint [""] drops it,
# one that ignores its arguments keeps the script from running; a missing
# image fails with
# image_pull_failure; pull_policy never without the image fails; `kiln
# images list` and `prune`. A service from an OCI image (Entrypoint + Cmd
# running busybox nc, ExposedPorts waited for) answers the job by its
# alias; a missing service image fails with image_pull_failure, as does
# one whose own pull_policy is never and not in the store. A job canceled
# mid-pull fails as canceled and leaves nothing half-pulled. Exit 77
# skips, saying why.
set -u

: "${top_srcdir:=$(cd "$(dirname "$0")/.." && pwd)}"
: "${top_builddir:=$top_srcdir}"
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
kiln=$top_builddir/kiln

skip() { echo "SKIP: $*"; exit 77; }
fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

[ -n "${KILN_SKIP_VM_TESTS:-}" ] && skip "KILN_SKIP_VM_TESTS is set ($KILN_SKIP_VM_TESTS)"
for tool in docker-registry skopeo umoci htpasswd openssl debugfs python3; do
	command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin
	command -v "$tool" >/dev/null 2>&1 || skip "$tool is missing"
done
[ -x /bin/busybox ] || skip "/bin/busybox is missing (apt-get install busybox-static)"
for i in kernel tiny; do
	[ -f "$images/$i/manifest.json" ] || skip "image $i is not built (./tools/dev images $i)"
done
[ "$(id -u)" = 0 ] || skip "needs root (umoci keeps owners; VMs)"
command -v nft >/dev/null 2>&1 || skip "no nft (services)"

. "$top_srcdir/tests/vmtest.sh"
w=$(mktemp -d /tmp/kiln-oci-job.XXXXXX)
# The agent that enters an OCI image is this build's: an older tiny lacks
# it, so build one of this tree's into the test's own images folder (its
# kernel linked from $images; $images itself is never written).
if ! KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$images "$kiln" images list 2>/dev/null |
	grep -q '^tiny .* current$'; then
	mkdir "$w/images" && ln -s "$images/kernel" "$w/images/kernel"
	KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_IMAGES_DIR=$w/images "$kiln" images build tiny \
		>"$w/tiny.log" 2>&1 || { rm -rf "$w"; skip "image tiny is stale and cannot be built here"; }
	images=$w/images
fi
reg_pid=
slow_pid=
cleanup() {
	[ -n "$reg_pid" ] && { kill "$reg_pid" 2>/dev/null; wait "$reg_pid" 2>/dev/null; }
	[ -n "$slow_pid" ] && { kill "$slow_pid" 2>/dev/null; wait "$slow_pid" 2>/dev/null; }
	[ -n "${KILN_OCI_KEEP:-}" ] && echo "kept $w" || rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
cd "$w" || exit 1

# --- the registry ------------------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=kiln-test-ca -keyout ca.key -out ca.crt >/dev/null 2>&1
openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout srv.key -out srv.csr >/dev/null 2>&1
printf 'subjectAltName=IP:127.0.0.1\n' >san.ext
openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile san.ext -out srv.crt \
	>/dev/null 2>&1
mkdir certs && cp ca.crt certs/ca.crt
htpasswd -Bbn tester s3cret >htpasswd 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >registry.yml <<EOC
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $w/reg}}
http: {addr: 127.0.0.1:$port, tls: {certificate: $w/srv.crt, key: $w/srv.key}}
auth: {htpasswd: {realm: kiln-test, path: $w/htpasswd}}
EOC
docker-registry serve registry.yml >registry.log 2>&1 &
reg_pid=$!
reg=127.0.0.1:$port
for _ in $(seq 1 100); do
	curl -sf --cacert ca.crt -u tester:s3cret "https://$reg/v2/" >/dev/null 2>&1 && break
	sleep 0.1
done

# --- the image: two layers, a whiteout, Env and User -----------------------
umoci init --layout lay >/dev/null && umoci new --image lay:bb >/dev/null && umoci unpack --image lay:bb b >/dev/null ||
	{ echo "FAIL: umoci"; exit 1; }
r=b/rootfs
mkdir -p "$r/bin" "$r/etc" "$r/tmp"
chmod 1777 "$r/tmp"
cp /bin/busybox "$r/bin/busybox"
ln -s busybox "$r/bin/sh"
ln -s busybox "$r/bin/echo"
echo "root:x:0:0:root:/root:/bin/sh" >"$r/etc/passwd"
echo "runner:x:1234:4321:runner:/home/runner:/bin/sh" >>"$r/etc/passwd"
echo "root:x:0:" >"$r/etc/group"
echo gone >"$r/etc/gone"
echo v1 >"$r/etc/marker"
umoci repack --image lay:bb b >/dev/null
rm "$r/etc/gone"
echo v2 >"$r/etc/marker"
# An entrypoint as official images write them: set up, then exec "$@".
printf '#!/bin/sh\nexport FROM_ENTRY=set\necho "entrypoint: $# arguments"\nexec "$@"\n' >"$r/bin/entry.sh"
chmod 755 "$r/bin/entry.sh"
umoci repack --image lay:bb b >/dev/null
umoci config --image lay:bb --config.env "PATH=/bin" --config.env "FROM_IMAGE=image" \
	--config.env "BOTH=image" --config.user runner >/dev/null
# A service image (a redis stand-in): Entrypoint + Cmd and ExposedPorts.
umoci config --image lay:bb --tag svc --config.entrypoint /bin/busybox --config.entrypoint nc \
	--config.cmd -ll --config.cmd -p --config.cmd 6379 --config.cmd -e --config.cmd /bin/echo \
	--config.cmd PONG --config.exposedports 6379/tcp >/dev/null
# The job image with that entrypoint.
umoci config --image lay:bb --tag ep --config.entrypoint /bin/entry.sh >/dev/null
# An image without a shell, with an entrypoint.
umoci new --image lay:noshell >/dev/null && umoci unpack --image lay:noshell ns >/dev/null
mkdir -p ns/rootfs/etc && echo none >ns/rootfs/etc/marker
umoci repack --image lay:noshell ns >/dev/null
umoci config --image lay:noshell --config.entrypoint /entry >/dev/null
for t in bb ep noshell svc; do
	skopeo copy -q --dest-creds tester:s3cret --dest-cert-dir "$w/certs" "oci:lay:$t" "docker://$reg/test/$t:1" \
		>/dev/null 2>skopeo.log || { cat skopeo.log; echo "FAIL: push"; exit 1; }
done
skopeo copy -q --dest-creds tester:s3cret --dest-cert-dir "$w/certs" "oci:lay:svc" "docker://$reg/test/svc:never" \
	>/dev/null 2>skopeo.log || { cat skopeo.log; echo "FAIL: push"; exit 1; }

# --- kiln -------------------------------------------------------------------
export KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$w/state KILN_IMAGES_DIR=$images
cat >config.yml <<EOC
defaults:
  image: tiny
oci:
  max_size_mib: 1
  allowed_pull_policies: [always, if-not-present, never]
  registries:
    - host: $reg
      username: tester
      password: s3cret
      tls_ca_file: $w/ca.crt
EOC
export KILN_CONFIG=$w/config.yml
"$top_srcdir/examples/make-demo-repo.sh" "$w/demo.git" >/dev/null || { echo "FAIL: demo repo"; exit 1; }

# job NAME IMAGE SCRIPT [PULL_POLICY [SERVICES_JSON [ENTRYPOINT_JSON]]]: a
# payload from examples/hello.json.
job() {
	python3 - "$top_srcdir/examples/hello.json" "$w/demo.git" "$2" "$3" "${4:-}" "${5:-}" "${6:-}" \
		>"$w/$1.json" <<'EOP'
import json, sys
p = json.load(open(sys.argv[1]))
p["git_info"]["repo_url"] = sys.argv[2]
p["image"] = {"name": sys.argv[3]}
if sys.argv[7]:
    p["image"]["entrypoint"] = json.loads(sys.argv[7])
if sys.argv[5]:
    p["image"]["pull_policy"] = [sys.argv[5]]
if sys.argv[6]:
    p["services"] = json.loads(sys.argv[6])
p["variables"].append({"key": "BOTH", "value": "job", "public": True})
p["steps"] = [{"name": "script", "script": sys.argv[4].split("\n"), "timeout": 600, "when": "on_success",
               "allow_failure": False}]
json.dump(p, sys.stdout)
EOP
	[ -z "${payload_only:-}" ] || return 0
	"$kiln" exec --executor qemu ${5:+--network} --job-file "$w/$1.json" >"$w/$1.log" 2>&1
}

script='echo "marker=$(cat /etc/marker)"
test -e /etc/gone && echo "whiteout=kept" || echo "whiteout=gone"
test -e /sbin/kiln-agent && echo "agent=visible" || echo "agent=hidden"
echo "env=$FROM_IMAGE both=$BOTH ci=$CI"
echo "uid=$(busybox id -u) gid=$(busybox id -g)"
busybox touch /tmp/written && echo "pwd=$(pwd)"'
if job bb "$reg/test/bb:1" "$script"; then
	for want in marker=v2 whiteout=gone agent=hidden "env=image both=job ci=true" "uid=1234 gid=4321" "pwd=/builds/"; do
		grep -q "^$want" bb.log || bad "job in test/bb:1: no '$want' in its log"
	done
	grep -q "^marker=v2" bb.log && ok "a job ran in test/bb:1 (2 layers, whiteout, Env, User, its own root)"
else
	bad "job in test/bb:1 failed: $(tail -20 bb.log)"
fi
img=$(ls "$w"/state/oci/images/*/rootfs.ext4 2>/dev/null | head -1)
if [ -n "$img" ] && debugfs -R 'stat /tmp/written' "$img" 2>&1 | grep -q 'not found'; then
	ok "the job's writes went to its copy, not to the image"
else
	bad "the image in the store changed (or is missing: '$img')"
fi

if job noshell "$reg/test/noshell:1" 'echo ran'; then
	bad "a job in an image without a shell succeeded"
elif grep -q 'shell not found' noshell.log; then
	ok "an image without a shell: the job fails saying so"
else
	bad "an image without a shell: $(tail -5 noshell.log)"
fi

# The image's entrypoint runs the shell (gitlab-runner's docker executor):
# what it exports reaches the script; image:entrypoint [""] drops it; one
# that does not run its arguments ends the step with its own status.
if job ep "$reg/test/ep:1" 'echo "from_entry=${FROM_ENTRY:-unset} uid=$(busybox id -u)"'; then
	grep -q '^entrypoint: [0-9]* arguments' ep.log && grep -q '^from_entry=set uid=1234' ep.log &&
		ok "the image's entrypoint ran, exec'd the shell, its variable reached the script" ||
		bad "entrypoint: $(tail -20 ep.log)"
else
	bad "a job in test/ep:1 failed: $(tail -20 ep.log)"
fi
if job epnone "$reg/test/ep:1" 'echo "from_entry=${FROM_ENTRY:-unset}"' "" "" '[""]' &&
	grep -q '^from_entry=unset' epnone.log && ! grep -q '^entrypoint:' epnone.log; then
	ok "image:entrypoint [\"\"] runs the script without the image's entrypoint"
else
	bad "entrypoint [\"\"]: $(tail -20 epnone.log)"
fi
if job epecho "$reg/test/ep:1" 'echo script-ran' "" "" '["/bin/echo", "only-echo"]' &&
	grep -q '^only-echo /bin/sh' epecho.log && ! grep -q '^script-ran' epecho.log; then
	ok "an image:entrypoint that does not run its arguments: the script does not run (as under gitlab-runner)"
else
	bad "entrypoint that ignores its arguments: $(tail -20 epecho.log)"
fi

if job missing "$reg/test/nothere:1" 'echo ran'; then
	bad "a job in a missing image succeeded"
elif grep -q image_pull_failure missing.log && ! grep -q '^ran' missing.log; then
	ok "a missing image: image_pull_failure"
else
	bad "a missing image: $(tail -5 missing.log)"
fi
if job never "$reg/test/other:1" 'echo ran' never; then
	bad "pull_policy never with no image succeeded"
elif grep -q 'pull_policy is never' never.log; then
	ok "pull_policy never with no image fails, saying why"
else
	bad "pull_policy never: $(tail -5 never.log)"
fi
if job present "$reg/test/bb:1" 'echo ran' if-not-present && grep -q 'present (pull_policy if-not-present)' present.log; then
	ok "pull_policy if-not-present takes the stored image"
else
	bad "pull_policy if-not-present: $(tail -5 present.log)"
fi

# A service from an OCI image: its Entrypoint + Cmd run in its own VM,
# its ExposedPorts waited for, the job reaches it by alias.
if job svc "$reg/test/bb:1" 'busybox nc redis 6379 </dev/null' always \
	"[{\"name\": \"$reg/test/svc:1\", \"alias\": \"redis\"}]" &&
	grep -q '^PONG' svc.log && grep -q 'waiting for services' svc.log; then
	ok "a service in an OCI image (Entrypoint + Cmd, ExposedPorts) answered PONG by its alias"
else
	bad "a service in an OCI image: $(tail -20 svc.log)"
fi
if job svcmissing "$reg/test/bb:1" 'echo ran' always "[{\"name\": \"$reg/test/nosvc:1\"}]"; then
	bad "a job with a missing service image succeeded"
elif grep -q image_pull_failure svcmissing.log && grep -q "service $reg/test/nosvc:1:" svcmissing.log &&
	! grep -q '^ran' svcmissing.log && ! grep -q 'booting' svcmissing.log; then
	ok "a missing service image: image_pull_failure before anything boots"
else
	bad "a missing service image: $(tail -5 svcmissing.log)"
fi

# A service's own pull_policy, not the job image's (always): never, for
# an image the registry has but the store does not.
if job svcnever "$reg/test/bb:1" 'echo ran' always \
	"[{\"name\": \"$reg/test/svc:never\", \"pull_policy\": \"never\"}]"; then
	bad "a service with pull_policy never and no stored image started"
elif grep -q "service $reg/test/svc:never: image $reg/test/svc:never is not in the store and pull_policy is never" \
	svcnever.log && ! grep -q 'booting' svcnever.log; then
	ok "a service's own pull_policy (never) decides its pull, not the job image's"
else
	bad "a service's pull_policy: $(tail -5 svcnever.log)"
fi

# A job canceled while its image is pulled (SIGTERM, as `kiln run`'s
# shutdown and GitLab's cancel do): the pull stops at once, the job fails
# as canceled, no scratch tree or partial blob is left. The image comes
# from tests/oci-fake-registry.py trickling blobs, into a store of its own.
python3 "$top_srcdir/tests/oci-fake-registry.py" "$w/lay" "$w/slow.port" "$w/slow.log" slow 2>slow.err &
slow_pid=$!
for _ in $(seq 1 100); do [ -s slow.port ] && break; sleep 0.1; done
slow=127.0.0.1:$(cat slow.port 2>/dev/null)
printf 'defaults: {image: tiny}\noci:\n  registries:\n    - {host: "%s", insecure: true, username: tester, password: s3cret}\n' \
	"$slow" >slow.yml
payload_only=1
job cancel "$slow/test/multi:bb" 'echo ran'
payload_only=
KILN_CONFIG=$w/slow.yml KILN_STATE_DIR=$w/st-cancel "$kiln" exec --executor qemu --job-file cancel.json \
	>cancel.log 2>&1 &
pull_pid=$!
for _ in $(seq 1 100); do
	ls st-cancel/oci/blobs/sha256/ 2>/dev/null | grep -q '\.part\.' && break
	sleep 0.1
done
t0=$(date +%s%N)
kill -TERM "$pull_pid"
wait "$pull_pid"
t1=$(date +%s%N)
kill "$slow_pid" 2>/dev/null
wait "$slow_pid" 2>/dev/null
if grep -q 'canceled while image .* was pulled' cancel.log && grep -q 'canceled' cancel.log &&
	! grep -q image_pull_failure cancel.log && [ $(((t1 - t0) / 1000000)) -lt 3000 ] &&
	[ -z "$(find st-cancel/oci/tmp st-cancel/oci/blobs st-cancel/oci/images -mindepth 1 ! -type d)" ]; then
	ok "a job canceled mid-pull fails as canceled in $(((t1 - t0) / 1000000)) ms, nothing left in the store"
else
	bad "a job canceled mid-pull ($(((t1 - t0) / 1000000)) ms): $(tail -5 cancel.log) $(find st-cancel/oci -type f)"
fi

"$kiln" images list >list.out 2>&1 || bad "kiln images list: $(cat list.out)"
grep -q "$reg/test/bb:1" list.out && ok "kiln images list shows the OCI image" || bad "images list: $(cat list.out)"
"$kiln" images prune >prune.out 2>&1 || bad "kiln images prune: $(cat prune.out)"
ls "$w"/state/oci/images/*/rootfs.ext4 >/dev/null 2>&1 && bad "prune to 1 MiB left an image" ||
	ok "kiln images prune down to oci.max_size_mib"

[ "$fails" = 0 ] || exit 1
