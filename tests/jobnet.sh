#!/bin/sh
# jobnet.sh: executors/jobnet end to end, inside tests/kvm-sandbox (it changes
# the network: taps, nftables, forwarding, namespaces).  Automake test (run
# with $SHELL, plain POSIX sh); exit 77 skips when KILN_SKIP_VM_TESTS is set
# or the sandbox image, qemu or tests/jobnet-driver is missing.
#
# In the sandbox, with KILN_JOBNET_TEST_VETH=1 (a job's "tap" is a veth whose
# far end is eth0 in a namespace named after the job: a stand-in guest):
#   outside   namespace behind veth kx-out (198.18.0.0/24, the sandbox's
#             default route) with a TCP service
#   ctl       namespace behind veth kx-ctl (192.168.77.0/24), not a kiln
#             interface: the control that shows the host services answer
#   job-1/2   two jobs from `jobnet-driver hold`; two services of job-1
#             (`jobnet-driver hold-service`, linked as siblings)
# and checks NAT to the outside, no way from a job to any host address
# (the tap's, another job's, the outside veth's, one on lo, 127.0.0.1,
# DNAT to a "published" port), no way to the other job, no spoofed source;
# then teardown, and sweep after kill -9 (sparing a live job); and two
# "kiln processes" with their own state folders claiming at the same moment
# (issue 13, finding 7: both got kt0); and the egress policy against a
# "LAN" namespace and the tap's rate limits (issue 13, finding 3); with
# KILN_JOBNET_NETNS=1 also a real job VM (qemu executor) probing them.
#
# KILN_JOBNET_NETNS=1 runs the same checks in new network and mount
# namespaces of this host (unshare -n -m, /run a private tmpfs) instead of
# the sandbox: seconds instead of minutes, root needed, and nothing made or
# sent is visible outside them.
set -eu

: "${top_srcdir:?top_srcdir is not set (run from make check)}"
: "${top_builddir:?top_builddir is not set (run from make check)}"

driver=$top_builddir/tests/jobnet-driver

skip() {
	echo "SKIP: $*"
	exit 77
}

if [ "${1:-}" = --netns ]; then
	# Here the network namespace is new; so must /run be (ip netns, claims).
	mount -t tmpfs -o mode=0755 kiln-jobnet /run || { echo "FAIL: cannot mount a tmpfs on /run"; exit 1; }
	private=netns
	set -- --inside
elif [ "${1:-}" != --inside ] && [ -n "${KILN_JOBNET_NETNS:-}" ]; then
	[ "$(id -u)" = 0 ] || skip "KILN_JOBNET_NETNS=1 needs root"
	command -v unshare >/dev/null 2>&1 || skip "unshare (util-linux) not found"
	[ -x "$driver" ] || skip "$driver is not built"
	exec unshare -n -m --propagation private /bin/sh "$top_srcdir/tests/jobnet.sh" --netns
fi

if [ "${1:-}" != --inside ]; then
	[ -z "${KILN_SKIP_VM_TESTS:-}" ] || skip "KILN_SKIP_VM_TESTS is set"
	images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}/sandbox
	if [ ! -f "$images/vmlinuz" ] || [ ! -f "$images/initrd.img" ]; then
		skip "no sandbox image in $images (build it: kiln images build sandbox)"
	fi
	command -v "${KILN_QEMU:-qemu-system-x86_64}" >/dev/null 2>&1 ||
		skip "${KILN_QEMU:-qemu-system-x86_64} not found"
	[ -x "$driver" ] || skip "$driver is not built"
	log=$(mktemp) || { echo "FAIL: cannot create a temporary file"; exit 1; }
	trap 'rm -f "$log"' EXIT
	rc=0
	"$top_srcdir/tests/kvm-sandbox" --timeout 600 --tries 4 --env top_srcdir --env top_builddir -- \
		/bin/sh "$top_srcdir/tests/jobnet.sh" --inside >"$log" 2>&1 || rc=$?
	cat "$log"
	case $rc in
	0) echo "PASS: jobnet end to end in the sandbox" ;;
	77) skip "kvm-sandbox could not run (see above)" ;;
	124) echo "FAIL: the sandbox timed out or stalled four times"; exit 1 ;;
	*) echo "FAIL: jobnet.sh --inside exited with $rc"; exit 1 ;;
	esac
	exit 0
fi

# --- inside the sandbox (or the private namespaces) -----------------------
[ "$(id -u)" = 0 ] || { echo "FAIL: not root inside the sandbox"; exit 1; }
[ -n "${private:-${KILN_SANDBOX_OUT:-}}" ] || { echo "FAIL: --inside outside tests/kvm-sandbox"; exit 1; }

S=$(mktemp -d /tmp/jobnet.XXXXXX)
# The host's claim folder, the default (the sandbox's /run starts empty).
N=/run/kiln/net
unset KILN_NET_DIR
export KILN_JOBNET_TEST_VETH=1
fails=0
pids=''
nserved=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
# shellcheck disable=SC2317 # called from the trap
finish() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	rm -rf "$S"
}
trap finish EXIT

# A TCP service answering "TAG PEER-ADDRESS" or a UDP sink logging "PEER
# TEXT" lines to TAG (a file); touches READY once bound.
cat >"$S/srv.py" <<'EOF'
import socket, sys
kind, addr, port, tag, ready = sys.argv[1:6]
if kind == "bulk":  # 1 MiB to each client
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    open(ready, "w").close()
    while True:
        c, peer = s.accept()
        try:
            c.sendall(b"x" * (1 << 20))
        except OSError:
            pass
        c.close()
elif kind == "tcp":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, int(port)))
    s.listen(16)
    open(ready, "w").close()
    while True:
        c, peer = s.accept()
        c.sendall(("%s %s\n" % (tag, peer[0])).encode())
        c.close()
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, int(port)))
    open(ready, "w").close()
    while True:
        data, peer = s.recvfrom(2048)
        with open(tag, "a") as f:
            f.write("%s %s\n" % (peer[0], data.decode(errors="replace").strip()))
EOF
# Send TEXT in a UDP datagram from SRC (a bound source address).
cat >"$S/udpsend.py" <<'EOF'
import socket, sys
src, addr, port, text = sys.argv[1:5]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((src, 0))
for _ in range(3):
    s.sendto(text.encode(), (addr, int(port)))
EOF

# serve NETNS tcp|udp ADDR PORT TAG
serve() {
	ns=$1
	shift
	nserved=$((nserved + 1))
	ready=$S/ready.$nserved
	if [ "$ns" = - ]; then
		python3 "$S/srv.py" "$@" "$ready" &
	else
		ip netns exec "$ns" python3 "$S/srv.py" "$@" "$ready" &
	fi
	pids="$pids $!"
	i=0
	while [ ! -e "$ready" ]; do
		i=$((i + 1))
		[ $i -le 100 ] || { echo "FAIL: service $* did not start"; exit 1; }
		sleep 0.1
	done
}
# probe NETNS|- ADDR PORT: the service's line, or status 1 within 2 s
# (-: from the sandbox itself).
probe() {
	# shellcheck disable=SC2016 # expanded by that bash
	set -- "$1" 'exec 3<>"/dev/tcp/$0/$1" && read -r l <&3 && echo "$l"' "$2" "$3"
	if [ "$1" = - ]; then
		timeout 2 bash -c "$2" "$3" "$4" 2>/dev/null
	else
		ip netns exec "$1" timeout 2 bash -c "$2" "$3" "$4" 2>/dev/null
	fi
}
# reach NETNS ADDR PORT WANT: the service answers WANT (a prefix).
reach() {
	got=$(probe "$1" "$2" "$3") || got=''
	case $got in
	"$4"*) ok "$1 reaches $2:$3 ($got)" ;;
	*) bad "$1 cannot reach $2:$3 (got '$got', want '$4...')" ;;
	esac
}
# blocked NETNS ADDR PORT
blocked() {
	if got=$(probe "$1" "$2" "$3"); then
		bad "$1 reaches $2:$3 ($got)"
	else
		ok "$1 cannot reach $2:$3"
	fi
}
# val ENVFILE KEY
val() { sed -n "s/^$2=//p" "$1"; }
wait_for() { # wait_for SECONDS CMD...
	t=$(($1 * 10))
	shift
	while ! "$@" 2>/dev/null; do
		t=$((t - 1))
		[ $t -gt 0 ] || return 1
		sleep 0.1
	done
}
has_link() { ip link show dev "$1" >/dev/null 2>&1; }
no_link() { ! has_link "$1"; }
in_set() { nft list set inet kiln "$1" 2>/dev/null | grep -q "\"$2\""; }
sysctl_w() { # sysctl_w NETNS|- KEY VALUE
	if [ "$1" = - ]; then
		echo "$3" >"/proc/sys/net/ipv4/$2"
	else
		ip netns exec "$1" sh -c "echo $3 >/proc/sys/net/ipv4/$2"
	fi
}

# --- the sandbox's "outside" and control networks, and host services -------
ip link set lo up
ip netns add outside
ip link add kx-out type veth peer name eth0 netns outside
ip addr add 198.18.0.1/24 dev kx-out
ip link set kx-out up
ip -n outside addr add 198.18.0.2/24 dev eth0
ip -n outside link set eth0 up
ip -n outside link set lo up
ip route add default via 198.18.0.2
ip netns add ctl
ip link add kx-ctl type veth peer name eth0 netns ctl
ip addr add 192.168.77.1/24 dev kx-ctl
ip link set kx-ctl up
ip -n ctl addr add 192.168.77.2/24 dev eth0
ip -n ctl link set eth0 up
ip -n ctl route add default via 192.168.77.1
ip addr add 192.0.2.1/32 dev lo
# "The LAN": namespace lan behind veth kx-lan (10.77.0.0/24), also holding
# the cloud metadata address 169.254.169.254, a CGNAT address 100.64.0.5
# and the host's DNS server (from /etc/resolv.conf), each routed to it:
# what a job must not reach (but the DNS port), all inside the sandbox.
# (jobnet's choice: the first IPv4 one outside 127/8, else resolved's.)
for f in /etc/resolv.conf /run/systemd/resolve/resolv.conf; do
	dns=$(awk '$1 == "nameserver" && $2 ~ /^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$/ && $2 !~ /^127\./ &&
		$2 != "0.0.0.0" { print $2; exit }' "$f" 2>/dev/null) || dns=''
	[ -z "$dns" ] || break
done
ip netns add lan
ip link add kx-lan type veth peer name eth0 netns lan
ip addr add 10.77.0.1/24 dev kx-lan
ip link set kx-lan up
ip -n lan addr add 10.77.0.2/24 dev eth0
ip -n lan link set eth0 up
ip -n lan link set lo up
for a in 169.254.169.254 100.64.0.5 ${dns:+"$dns"}; do
	ip -n lan addr add "$a/32" dev lo
	ip route add "$a/32" via 10.77.0.2
done
# The outside routes back to ctl (for the DNAT control), never to 172.30.
ip -n outside route add 192.168.77.0/24 via 198.18.0.1
serve outside tcp 0.0.0.0 8080 outside
serve outside udp 0.0.0.0 8085 "$S/outside-udp.log"
serve outside bulk 0.0.0.0 8087 -
serve outside udp 0.0.0.0 8088 "$S/flood.log"
serve - tcp 0.0.0.0 8081 host
serve lan tcp 0.0.0.0 8080 lan
[ -z "$dns" ] || serve lan tcp "$dns" 53 dns
serve - udp 127.0.0.1 8083 "$S/udp.log"
# A "published" host port, DNATed like a container's (in a test table).
nft -f - <<'EOF'
table ip kilntest {
	chain pre {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport 9090 dnat to 198.18.0.2:8080
	}
}
EOF

# --- two jobs -----------------------------------------------------------------
ip netns add job-1
ip netns add job-2
"$driver" hold job-1 >"$S/job-1.env" 2>"$S/job-1.err" &
h1=$!
pids="$pids $h1"
wait_for 20 grep -q '^OWNER=' "$S/job-1.env" || { cat "$S/job-1.err"; echo "FAIL: job-1 setup"; exit 1; }
"$driver" hold job-2 >"$S/job-2.env" 2>"$S/job-2.err" &
h2=$!
pids="$pids $h2"
wait_for 20 grep -q '^OWNER=' "$S/job-2.env" || { cat "$S/job-2.err"; echo "FAIL: job-2 setup"; exit 1; }
cat "$S/job-1.env" "$S/job-2.env"

check_env() { # check_env JOB SLOT HOST GUEST OWNER
	e=$S/$1.env
	want="kiln.ip=$4/30 kiln.gw=$3${dns:+ kiln.dns=$dns}"
	if [ "$(val "$e" SLOT)" = "$2" ] && [ "$(val "$e" TAP)" = "kt$2" ] &&
		[ "$(val "$e" HOST_IP)" = "$3" ] && [ "$(val "$e" GATEWAY)" = "$3" ] &&
		[ "$(val "$e" GUEST_IP)" = "$4" ] && [ "$(val "$e" PREFIX)" = 30 ] &&
		[ "$(val "$e" DNS)" = "$dns" ] && [ "$(val "$e" CMDLINE)" = "'$want'" ] &&
		[ "$(val "$e" OWNER)" = "$5" ]; then
		ok "$1: slot $2, $4/30 via $3, dns '${dns}'"
	else
		bad "$1: unexpected fields (see above), want slot $2, host $3, guest $4, owner $5, '$want'"
	fi
	if grep -qx "pid=$5" "$N/slot-$2" && grep -qx "job=$1" "$N/slot-$2"; then
		ok "$1: allocation file slot-$2 names pid $5"
	else
		bad "$1: allocation file slot-$2: $(cat "$N/slot-$2" 2>&1)"
	fi
}
check_env job-1 0 172.30.0.1 172.30.0.2 "$h1"
check_env job-2 1 172.30.0.5 172.30.0.6 "$h2"
for j in 1 2; do
	if has_link "kt$((j - 1))" && in_set job_ifs "kt$((j - 1))"; then
		ok "job-$j: kt$((j - 1)) exists and is in @job_ifs"
	else
		bad "job-$j: kt$((j - 1)) missing or not in @job_ifs"
	fi
	g=$(val "$S/job-$j.env" GUEST_IP)
	ip -n "job-$j" addr add "$g/30" dev eth0
	ip -n "job-$j" link set eth0 up
	ip -n "job-$j" route add default via "$(val "$S/job-$j.env" GATEWAY)"
done
if [ "$(cat /proc/sys/net/ipv4/ip_forward)" = 1 ]; then ok "IPv4 forwarding is on"; else bad "IPv4 forwarding is off"; fi
serve job-2 tcp 0.0.0.0 8084 job-2

# --- what a job reaches ---------------------------------------------------------
# NAT: the outside sees the sandbox's address, and has no route back to 172.30.
reach job-1 198.18.0.2 8080 "outside 198.18.0.1"
reach job-2 198.18.0.2 8080 "outside 198.18.0.1"
# Controls: the host's service answers on every address from a non-kiln
# interface, the published port works, job-2's service is up.
for a in 192.168.77.1 172.30.0.1 172.30.0.5 198.18.0.1 192.0.2.1; do
	reach ctl "$a" 8081 host
done
reach ctl 192.168.77.1 9090 "outside 192.168.77.2"
# shellcheck disable=SC2016 # expanded by that bash
if got=$(timeout 2 bash -c 'exec 3<>/dev/tcp/172.30.0.6/8084 && read -r l <&3 && echo "$l"'); then
	ok "the host reaches job-2's service ($got)"
else
	bad "the host cannot reach job-2's service"
fi
# No host address from a job: its own gateway, the other job's, the
# outside veth's, one on lo; nor a DNATed host port.
for a in 172.30.0.1 172.30.0.5 198.18.0.1 192.0.2.1; do
	blocked job-1 "$a" 8081
done
blocked job-2 172.30.0.5 8081
blocked job-1 172.30.0.1 9090
# No other job.
blocked job-1 172.30.0.6 8084
# No spoofed source: datagrams to an outside UDP sink from job-1's own
# address arrive (masqueraded), from another pool address they do not.
ip -n job-1 addr add 172.30.0.10/32 dev eth0
ip netns exec job-1 timeout 3 python3 "$S/udpsend.py" 172.30.0.2 198.18.0.2 8085 own || true
ip netns exec job-1 timeout 3 python3 "$S/udpsend.py" 172.30.0.10 198.18.0.2 8085 spoofed || true
sleep 1
if grep -qx '198.18.0.1 own' "$S/outside-udp.log" 2>/dev/null; then
	ok "job-1's datagrams from its own address reach the outside"
else
	bad "control: job-1's datagrams from its own address did not arrive"
fi
if grep -q ' spoofed$' "$S/outside-udp.log" 2>/dev/null; then
	bad "job-1 sent from a spoofed 172.30.0.10: $(cat "$S/outside-udp.log")"
else
	ok "job-1 cannot send from a spoofed 172.30.0.10"
fi
# 127.0.0.1: packets to it from outside are martians unless route_localnet
# is on; turn it on (as a careless host might) on the kiln interface and on
# the control's, and send a datagram to a UDP sink on 127.0.0.1 from both.
for ns in ctl job-1; do
	sysctl_w "$ns" conf/all/route_localnet 1
	sysctl_w "$ns" conf/eth0/route_localnet 1
done
sysctl_w - conf/kx-ctl/route_localnet 1
sysctl_w - conf/kt0/route_localnet 1
for ns in ctl job-1; do
	ip netns exec "$ns" timeout 2 bash -c "for i in 1 2 3; do echo from-$ns >/dev/udp/127.0.0.1/8083; sleep 0.2; done" \
		2>/dev/null || true
done
sleep 1
if grep -q ' from-ctl$' "$S/udp.log" 2>/dev/null; then
	ok "ctl reaches 127.0.0.1 (route_localnet on)"
else
	bad "control: ctl cannot reach the UDP sink on 127.0.0.1 (the check below proves nothing)"
fi
if grep -q ' from-job-1$' "$S/udp.log" 2>/dev/null; then
	bad "job-1 reaches 127.0.0.1: $(cat "$S/udp.log")"
else
	ok "job-1 cannot reach 127.0.0.1 even with route_localnet on"
fi

# --- egress policy: the public internet only ---------------------------------
# Controls: the sandbox itself reaches every "LAN" service.
for a in 10.77.0.2 169.254.169.254 100.64.0.5 ${dns:+"$dns"}; do
	reach - "$a" 8080 "lan 10.77.0.1"
done
# A job with the default policy: none of them, nor the host's side of the
# LAN.
for a in 10.77.0.2 169.254.169.254 100.64.0.5; do
	blocked job-1 "$a" 8080
done
blocked job-1 10.77.0.1 8081
if [ -n "$dns" ]; then
	reach job-1 "$dns" 53 "dns 10.77.0.1"
	blocked job-1 "$dns" 8080
else
	echo "note: /etc/resolv.conf names no IPv4 nameserver: the DNS exception is not checked"
fi
# allowed_networks punches through, also through denied_networks; the
# rest stays refused, and denied_networks refuses a public address.
ip netns add job-6
"$driver" hold job-6 +10.77.0.2/32 -10.77.0.0/24 -198.18.0.2/32 >"$S/job-6.env" 2>"$S/job-6.err" &
h6=$!
pids="$pids $h6"
wait_for 20 grep -q '^OWNER=' "$S/job-6.env" || { cat "$S/job-6.err"; echo "FAIL: job-6 setup"; exit 1; }
t6=$(val "$S/job-6.env" TAP)
ip -n job-6 addr add "$(val "$S/job-6.env" GUEST_IP)/30" dev eth0
ip -n job-6 link set eth0 up
ip -n job-6 route add default via "$(val "$S/job-6.env" GATEWAY)"
reach job-6 10.77.0.2 8080 "lan 10.77.0.1"
blocked job-6 169.254.169.254 8080
blocked job-6 198.18.0.2 8080
blocked job-1 10.77.0.2 8080
reach job-1 198.18.0.2 8080 "outside 198.18.0.1"
if "$driver" setup job-x +fd00::/8 2>"$S/bad.err"; then
	bad "an IPv6 network was taken"
else
	ok "a bad network is refused: $(cat "$S/bad.err")"
fi
"$driver" teardown job-6 || bad "teardown job-6 failed"
kill "$h6" 2>/dev/null || true
if nft list chain inet kiln "job_$t6" >/dev/null 2>&1 || nft list map inet kiln job_policy | grep -q "\"$t6\""; then
	bad "teardown left job-6's chain or verdict: $(nft list table inet kiln)"
else
	ok "teardown removed job-6's chain and verdict"
fi
reach job-1 198.18.0.2 8080 "outside 198.18.0.1"

# --- rate limits on the tap (for a VMM without its own: QEMU) ----------------
# rx=1000 tx=1000 bytes/s, each with a 64 KiB burst: of 1 MiB sent to the
# job and 200 KB it sends, about 64 KiB gets through (the bounds hold
# whatever the machine's speed); job-1, unlimited, gets all 1 MiB.
# bulk NETNS: the bytes of the outside's 1 MiB that arrive within 5 s.
bulk() {
	# shellcheck disable=SC2016 # expanded by that bash
	ip netns exec "$1" timeout 5 bash -c 'exec 3<>/dev/tcp/198.18.0.2/8087 && cat <&3' >"$S/bulk" 2>/dev/null || true
	wc -c <"$S/bulk"
}
ip netns add job-7
"$driver" hold job-7 rx=1000 tx=1000 >"$S/job-7.env" 2>"$S/job-7.err" &
h7=$!
pids="$pids $h7"
wait_for 20 grep -q '^OWNER=' "$S/job-7.env" || { cat "$S/job-7.err"; echo "FAIL: job-7 setup"; exit 1; }
t7=$(val "$S/job-7.env" TAP)
ip -n job-7 addr add "$(val "$S/job-7.env" GUEST_IP)/30" dev eth0
ip -n job-7 link set eth0 up
ip -n job-7 route add default via "$(val "$S/job-7.env" GATEWAY)"
# What the kernel offers (the sandbox's has neither sch_tbf nor nft_limit):
# without them setup must still succeed, and say that it does not limit.
tbf_ok='' limit_ok=''
if ip link add kx-probe type veth peer name kx-probe2 2>/dev/null; then
	tc qdisc add dev kx-probe root tbf rate 1000bps burst 65536 latency 100ms 2>/dev/null && tbf_ok=1
	ip link del kx-probe
fi
if printf 'table inet kilnprobe {\n chain c {\n  limit rate over 1000 bytes/second drop\n }\n}\n' |
	nft -f - 2>/dev/null; then
	limit_ok=1
	nft delete table inet kilnprobe
fi
if [ -z "$tbf_ok" ]; then
	if grep -q "job job-7: traffic into the guest is not rate limited" "$S/job-7.err"; then
		ok "no sch_tbf here: setup said that the rx limit is off"
	else
		bad "no sch_tbf here, and setup said nothing: $(cat "$S/job-7.err")"
	fi
else
	case $(tc qdisc show dev "$t7") in
	*"tbf"*"rate 8Kbit"*) ok "$t7 has a tbf qdisc at 1000 bytes/s" ;;
	*) bad "$t7 has no tbf at 1000 bytes/s: $(tc qdisc show dev "$t7")" ;;
	esac
	got=$(bulk job-1)
	if [ "$got" -eq 1048576 ]; then ok "job-1 (no limit) got all 1 MiB"; else bad "control: job-1 got $got of 1 MiB"; fi
	got=$(bulk job-7)
	if [ "$got" -gt 0 ] && [ "$got" -lt 262144 ]; then
		ok "job-7 (rx 1000 bytes/s) got $got bytes of 1 MiB"
	else
		bad "job-7 (rx 1000 bytes/s) got $got bytes of 1 MiB"
	fi
fi
if [ -z "$limit_ok" ]; then
	if grep -q "job job-7: traffic out of the guest is not rate limited" "$S/job-7.err"; then
		ok "no nft_limit here: setup said that the tx limit is off"
	else
		bad "no nft_limit here, and setup said nothing: $(cat "$S/job-7.err")"
	fi
	reach job-7 198.18.0.2 8080 "outside 198.18.0.1"
else
	if nft list chain inet kiln "job_$t7" | grep -q 'limit rate over 1000 bytes/second burst 64 kbytes drop'; then
		ok "job_$t7 polices at 1000 bytes/s"
	else
		bad "job_$t7 has no limit: $(nft list chain inet kiln "job_$t7")"
	fi
	# shellcheck disable=SC2016 # expanded by that python
	ip netns exec job-7 timeout 10 python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    s.sendto(b"%04d" % i + b"y" * 996, ("198.18.0.2", 8088))' || true
	sleep 1
	n=$(wc -l <"$S/flood.log" 2>/dev/null) || n=0
	if [ "$n" -gt 0 ] && [ "$n" -lt 150 ]; then
		ok "job-7 (tx 1000 bytes/s) got $n of 200 datagrams out"
	else
		bad "job-7 (tx 1000 bytes/s) got $n of 200 datagrams out"
	fi
fi
"$driver" teardown job-7 || bad "teardown job-7 failed"
kill "$h7" 2>/dev/null || true

# --- a job's services: the job and each other, nothing else -------------------
# Two services of job-1 (jobnet_setup_service), linked as siblings: each
# reaches the job's VM and the other service; job-2 reaches neither, and
# they reach neither job-2 nor its service (gitlab-runner's network per
# build, one per job).
# (The spoofing check above gave job-1 an address of the pool.)
ip -n job-1 addr del 172.30.0.10/32 dev eth0 2>/dev/null || true
for i in 0 1; do
	ip netns add "job-1.svc$i.peer0"
	"$driver" hold-service job-1 "$i" >"$S/svc-$i.env" 2>"$S/svc-$i.err" &
	pids="$pids $!"
	wait_for 20 grep -q '^OWNER=' "$S/svc-$i.env" || { cat "$S/svc-$i.err"; echo "FAIL: service $i setup"; exit 1; }
	ns=job-1.svc$i.peer0
	ip -n "$ns" addr add "$(val "$S/svc-$i.env" GUEST_IP)/30" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$(val "$S/svc-$i.env" GATEWAY)"
done
sa=$(val "$S/svc-0.env" GUEST_IP)
sb=$(val "$S/svc-1.env" GUEST_IP)
serve job-1.svc0.peer0 tcp 0.0.0.0 8086 svc-a
serve job-1 tcp 0.0.0.0 8089 job-1
reach job-1 "$sa" 8086 "svc-a 172.30.0.2"
reach job-1.svc0.peer0 172.30.0.2 8089 "job-1 $sa"
blocked job-1.svc1.peer0 "$sa" 8086
if "$driver" link job-1.svc0.peer0 job-1.svc1.peer0 2>"$S/link.err"; then
	ok "the services are linked"
else
	bad "linking the services: $(cat "$S/link.err")"
fi
reach job-1.svc1.peer0 "$sa" 8086 "svc-a $sb"
reach job-1.svc1.peer0 172.30.0.2 8089 "job-1 $sb"
blocked job-2 "$sa" 8086
blocked job-2 172.30.0.2 8089
blocked job-1.svc0.peer0 172.30.0.6 8084
blocked job-1.svc1.peer0 172.30.0.6 8084
blocked job-1.svc0.peer0 "$(val "$S/svc-0.env" HOST_IP)" 8081
"$driver" teardown job-1.svc1.peer0 || bad "teardown of service 1 failed"
tb=$(val "$S/svc-1.env" TAP)
if nft list set inet kiln job_peers | grep -q "\"$tb\""; then
	bad "service 1's links outlived it: $(nft list set inet kiln job_peers)"
else
	ok "service 1's teardown removed its links (to the job and to service 0)"
fi
reach job-1 "$sa" 8086 "svc-a 172.30.0.2"
"$driver" teardown job-1.svc0.peer0 || bad "teardown of service 0 failed"
if nft list set inet kiln job_peers | grep -q 'elements'; then
	bad "links left after the services' teardown: $(nft list set inet kiln job_peers)"
else
	ok "no links left after the services' teardown"
fi

# --- teardown --------------------------------------------------------------------
"$driver" teardown job-1 || bad "teardown job-1 failed"
if no_link kt0 && ! ip -n job-1 link show eth0 >/dev/null 2>&1 && ! in_set job_ifs kt0 &&
	! in_set job_guests kt0 && [ ! -e "$N/slot-0" ]; then
	ok "teardown removed kt0, its peer, its set elements and slot-0"
else
	bad "teardown left: $(ip -br link; nft list table inet kiln; ls "$N")"
fi
if "$driver" teardown job-1 2>/dev/null; then ok "a second teardown is a no-op"; else bad "second teardown failed"; fi
kill "$h1" 2>/dev/null || true
if has_link kt1 && in_set job_ifs kt1 && [ -e "$N/slot-1" ]; then
	ok "job-2's network is untouched"
else
	bad "job-2's network was touched by job-1's teardown"
fi
reach job-2 198.18.0.2 8080 "outside 198.18.0.1"
if nft list table ip kilntest >/dev/null 2>&1; then
	ok "the test's own nft table is untouched"
else
	bad "another nft table was touched"
fi

# --- sweep after kill -9, sparing a live job --------------------------------
ip netns add job-3
"$driver" hold job-3 >"$S/job-3.env" 2>"$S/job-3.err" &
h3=$!
pids="$pids $h3"
wait_for 20 grep -q '^OWNER=' "$S/job-3.env" || { cat "$S/job-3.err"; echo "FAIL: job-3 setup"; exit 1; }
slot=$(val "$S/job-3.env" SLOT)
if [ "$slot" = 0 ]; then ok "job-3 got the freed slot 0"; else bad "job-3 got slot $slot, not the freed 0"; fi
kill -9 "$h2"
wait "$h2" 2>/dev/null || true
if has_link kt1 && [ -e "$N/slot-1" ]; then
	ok "kill -9 left kt1 and slot-1 behind"
else
	bad "kt1 or slot-1 vanished before the sweep"
fi
"$driver" sweep || bad "sweep failed"
if no_link kt1 && ! in_set job_ifs kt1 && ! in_set job_guests kt1 && [ ! -e "$N/slot-1" ]; then
	ok "sweep removed the dead job's kt1, set elements and slot-1"
else
	bad "sweep left: $(ip -br link; nft list table inet kiln; ls "$N")"
fi
if has_link kt0 && in_set job_ifs kt0 && [ -e "$N/slot-0" ]; then
	ok "sweep spared live job-3"
else
	bad "sweep touched live job-3"
fi
"$driver" teardown job-3 || bad "teardown job-3 failed"
left=$(cd "$N" && echo slot-*)
if no_link kt0 && [ "$left" = 'slot-*' ] && ! in_set job_ifs kt0; then
	ok "all gone after the last teardown"
else
	bad "left after the last teardown: $(ip -br link; ls "$N")"
fi

# A failed setup (no namespace for the veth's far end) leaves nothing.
if "$driver" setup no-such-ns >/dev/null 2>"$S/fail.err"; then
	bad "setup into a missing namespace succeeded"
elif no_link kt0 && [ ! -e "$N/slot-0" ] && ! in_set job_ifs kt0; then
	ok "a failed setup leaves nothing ($(cat "$S/fail.err"))"
else
	bad "a failed setup left: $(ip -br link; ls "$N")"
fi

# --- the real thing: a persistent tap ------------------------------------------
if (unset KILN_JOBNET_TEST_VETH && "$driver" setup job-tap >"$S/job-tap.env" 2>"$S/job-tap.err"); then
	d=$(ip -d link show dev kt0 2>&1) || d=''
	case $d in
	*"tun type tap pi off vnet_hdr on persist on"*) ok "kt0 is a persistent tap with vnet_hdr, no pi" ;;
	*) bad "kt0 is not a persistent vnet_hdr tap: $d" ;;
	esac
	if ip -br -4 addr show dev kt0 | grep -q ' 172\.30\.0\.1/30'; then
		ok "the tap holds 172.30.0.1/30"
	else
		bad "the tap lacks 172.30.0.1/30: $(ip -br addr show dev kt0)"
	fi
	"$driver" teardown job-tap || bad "teardown job-tap failed"
	if no_link kt0 && [ ! -e "$N/slot-0" ]; then ok "the tap is gone"; else bad "the tap or slot-0 is left"; fi
else
	bad "setup with a tap failed: $(cat "$S/job-tap.err")"
fi

# --- a real job VM (private namespaces only: QEMU under TCG, seconds) -------
# The guest itself tries the outside, the LAN, the metadata address, the
# host and the DNS server's other port; only the outside and port 53
# answer. In the sandbox a nested VM would take minutes: tests/exec.sh
# covers kiln-vmm there.
images=${KILN_IMAGES_DIR:-/var/lib/kiln/images}
if [ "${private:-}" != netns ]; then
	echo "note: the real job VM runs with KILN_JOBNET_NETNS=1 only"
elif [ ! -f "$images/debian/manifest.json" ] || [ ! -f "$images/kernel/manifest.json" ] ||
	! command -v qemu-system-x86_64 >/dev/null 2>&1; then
	echo "note: no debian and kernel images or no qemu: the real job VM is not checked"
else
	"$top_srcdir/examples/make-demo-repo.sh" "$S/demo.git" >/dev/null || bad "demo repo"
	python3 - "$top_srcdir/examples/network.json" "$S" "$dns" <<'EOF_PY'
import json, sys
src, s, dns = sys.argv[1:4]
d = json.load(open(src))
d["git_info"]["repo_url"] = s + "/demo.git"
probe = "timeout 3 bash -c 'exec 3<>/dev/tcp/%s/%s && head -1 <&3' && echo %s-REACHED || echo %s-BLOCKED"
lines = [probe % ("198.18.0.2", 8080, "OUTSIDE", "OUTSIDE"),
         probe % ("10.77.0.2", 8080, "LAN", "LAN"),
         probe % ("169.254.169.254", 8080, "METADATA", "METADATA"),
         probe % ("100.64.0.5", 8080, "CGNAT", "CGNAT"),
         probe % ("172.30.0.1", 8081, "HOST", "HOST")]
if dns:
    lines += [probe % (dns, 53, "DNS53", "DNS53"), probe % (dns, 8080, "DNS8080", "DNS8080")]
d["steps"][0]["script"] = lines
json.dump(d, open(s + "/vmjob.json", "w"))
EOF_PY
	out=$(unset KILN_JOBNET_TEST_VETH
		KILN_DATA_DIR=$top_srcdir KILN_LIBEXEC_DIR=$top_builddir KILN_STATE_DIR=$S/state \
			KILN_IMAGES_DIR=$images timeout 300 "$top_builddir/kiln" exec --executor qemu --network \
			--job-file "$S/vmjob.json" 2>&1) || bad "the job VM failed: $(echo "$out" | tail -5)"
	want="OUTSIDE-REACHED LAN-BLOCKED METADATA-BLOCKED CGNAT-BLOCKED HOST-BLOCKED"
	[ -z "$dns" ] || want="$want DNS53-REACHED DNS8080-BLOCKED"
	for w in $want; do
		if echo "$out" | grep -qx "$w"; then ok "the job VM: $w"; else bad "the job VM: no $w in: $(echo "$out" | tail -20)"; fi
	done
	if ! ip -br link | grep -q '^kt' && ! nft list map inet kiln job_policy | grep -q elements &&
		! nft list table inet kiln | grep -q 'chain job_'; then
		ok "the job VM's network is gone"
	else
		bad "the job VM left: $(ip -br link; nft list table inet kiln)"
	fi
fi

# --- two kiln processes with their own state folders, at once ----------------
# Issue 13, finding 7: claims under each state_dir gave both kt0 and
# 172.30.0.2. Both start together; each must get its own slot in $N.
ip netns add job-4
ip netns add job-5
KILN_STATE_DIR=$S/state-a "$driver" hold job-4 >"$S/job-4.env" 2>"$S/job-4.err" &
h4=$!
KILN_STATE_DIR=$S/state-b "$driver" hold job-5 >"$S/job-5.env" 2>"$S/job-5.err" &
h5=$!
pids="$pids $h4 $h5"
wait_for 20 grep -q '^OWNER=' "$S/job-4.env" || { cat "$S/job-4.err"; echo "FAIL: job-4 setup"; exit 1; }
wait_for 20 grep -q '^OWNER=' "$S/job-5.env" || { cat "$S/job-5.err"; echo "FAIL: job-5 setup"; exit 1; }
t4=$(val "$S/job-4.env" TAP) t5=$(val "$S/job-5.env" TAP)
g4=$(val "$S/job-4.env" GUEST_IP) g5=$(val "$S/job-5.env" GUEST_IP)
if [ "$t4" != "$t5" ] && [ "$g4" != "$g5" ] && has_link "$t4" && has_link "$t5" &&
	[ "$(val "$S/job-4.env" SLOT_FILE)" != "$(val "$S/job-5.env" SLOT_FILE)" ]; then
	ok "two processes with their own state folders got $t4/$g4 and $t5/$g5"
else
	bad "two processes with their own state folders share a network: $t4/$g4 and $t5/$g5"
fi
case $(val "$S/job-4.env" SLOT_FILE) in
"$N"/slot-*) ok "claims live in the host's $N" ;;
*) bad "job-4 claimed $(val "$S/job-4.env" SLOT_FILE), not in $N" ;;
esac
if [ -e "$S/state-a/net" ] || [ -e "$S/state-b/net" ]; then bad "a claim folder in a state folder"; fi
"$driver" teardown job-4 || bad "teardown job-4 failed"
if no_link "$t4" && has_link "$t5" && in_set job_ifs "$t5"; then
	ok "tearing down job-4 left job-5's $t5 alone"
else
	bad "tearing down job-4 touched job-5's $t5"
fi
"$driver" teardown job-5 || bad "teardown job-5 failed"
kill "$h4" "$h5" 2>/dev/null || true

if [ "$fails" -ne 0 ]; then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all jobnet checks passed"
