#!/bin/sh
# The command-line contract of the three binaries: --help and --version
# succeed, bad usage is one line on stderr and exit status 2.
set -u
b=${top_builddir:-.}
fail=0

check() { # check WANT_STATUS WANT_LINES CMD...
	want=$1 lines=$2
	shift 2
	out=$("$@" 2>&1 >/dev/null)
	st=$?
	n=$(printf '%s' "$out" | grep -c '')
	if [ "$st" != "$want" ]; then
		echo "FAIL: $* exited $st, want $want"; fail=1
	elif [ "$lines" != any ] && [ "$n" != "$lines" ]; then
		echo "FAIL: $* printed $n stderr lines, want $lines: $out"; fail=1
	else
		echo "ok: $*"
	fi
}

for p in kiln kiln-vmm kiln-vmm-debug kiln-agent; do
	check 0 any "$b/$p" --help
	check 0 any "$b/$p" --version
	check 2 1 "$b/$p" --no-such-option
done
check 2 1 "$b/kiln"
check 2 1 "$b/kiln" no-such-command
check 2 1 "$b/kiln" images
check 2 1 "$b/kiln" images build
check 2 1 "$b/kiln" images build --all extra
check 2 1 "$b/kiln" images warm
check 2 1 "$b/kiln" images warm tiny extra
check 2 1 "$b/kiln" images warm tiny --vcpus 0
check 2 1 "$b/kiln" images warm --memory 32 tiny
check 2 1 "$b/kiln" images warm tiny --bogus
check 2 1 "$b/kiln" doctor extra
check 0 any "$b/kiln" install --help
check 0 any "$b/kiln" uninstall --help
check 2 1 "$b/kiln" install --no-such-flag
check 2 1 "$b/kiln" install extra
check 2 1 "$b/kiln" uninstall --service
check 2 1 "$b/kiln" status extra
check 2 1 "$b/kiln" status --bogus
check 2 1 "$b/kiln-vmm"
check 2 1 "$b/kiln-agent"
# A bad config is one line naming the file, line and key, status 1.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf 'concurrent: 2\nbogus: 1\n' > "$tmp/c.yml"
out=$("$b/kiln" -c "$tmp/c.yml" config check 2>&1)
[ $? = 1 ] && [ "$out" = "kiln: error: $tmp/c.yml:2: unknown key 'bogus'" ] && echo "ok: bad config" ||
	{ echo "FAIL: bad config: $out"; fail=1; }
# Every verb, as gitlab-runner's: --help prints its own usage (status 0,
# read no configuration) and -c/--config FILE after the verb names the file.
printf 'concurrent: 2\n' > "$tmp/good.yml"
for v in doctor images config boot exec register verify unregister list run replay; do
	out=$("$b/kiln" -c "$tmp/nonexistent.yml" $v --help 2>&1)
	[ $? = 0 ] && [ "$(printf '%s\n' "$out" | head -n 1 | cut -d' ' -f1-3)" = "usage: kiln $v" ] &&
		echo "ok: $v --help" || { echo "FAIL: $v --help: $out"; fail=1; }
	for c in "-c $tmp/c.yml" "--config $tmp/c.yml" "--config=$tmp/c.yml"; do
		out=$("$b/kiln" -c "$tmp/good.yml" $v $c 2>&1)
		[ $? = 1 ] && [ "$out" = "kiln: error: $tmp/c.yml:2: unknown key 'bogus'" ] &&
			echo "ok: $v $c" || { echo "FAIL: $v $c: $out"; fail=1; }
	done
done
out=$("$b/kiln" config check -c "$tmp/good.yml" 2>&1)
[ $? = 0 ] && [ "${out%%:*}" = "$tmp/good.yml" ] && echo "ok: config check -c FILE" ||
	{ echo "FAIL: config check -c FILE: $out"; fail=1; }
# Templates are on unless the file says snapshots: false; config check says which.
[[ "$out" = *", snapshots on, "* ]] && echo "ok: config check: snapshots on by default" ||
	{ echo "FAIL: config check: snapshots: $out"; fail=1; }
printf 'defaults:\n  snapshots: false\n' > "$tmp/cold.yml"
out=$("$b/kiln" config check -c "$tmp/cold.yml" 2>&1)
[ $? = 0 ] && [[ "$out" = *", snapshots off, "* ]] && echo "ok: config check: snapshots: false" ||
	{ echo "FAIL: config check: snapshots: false: $out"; fail=1; }
check 2 1 "$b/kiln" run -c
# gitlab-runner's registration flags: checked before any network.
check 2 1 "$b/kiln" -c "$tmp/good.yml" register --url http://127.0.0.1:9 --token t --access-level all
check 2 1 "$b/kiln" -c "$tmp/good.yml" register --url http://127.0.0.1:9 --token t --locked=maybe
check 2 1 "$b/kiln" -c "$tmp/good.yml" register --url http://127.0.0.1:9 --token t --maximum-timeout 0
check 1 1 "$b/kiln" -c "$tmp/good.yml" register --url http://127.0.0.1:9 --token glrt-x --tag-list a
check 2 1 "$b/kiln" run extra
printf '{ "boot": { "kernel": "/k" }, "machine": { "vcpus": 99 } }' > "$tmp/vm.json"
out=$("$b/kiln-vmm" --config "$tmp/vm.json" 2>&1)
[ $? = 1 ] && [ "$out" = "kiln-vmm: error: $tmp/vm.json: machine.vcpus: must be an integer in 1..32" ] &&
	echo "ok: bad vm.json" || { echo "FAIL: bad vm.json: $out"; fail=1; }
# A file that is no kernel: named with its path, status 1. It is read on
# kiln-vmm's loader thread while the VM is created, so this needs /dev/kvm.
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
	head -c 4096 /dev/zero > "$tmp/zero"
	printf '{ "boot": { "kernel": "%s", "cmdline": "x" }, "machine": { "vcpus": 1, "mem_mib": 64 } }' \
		"$tmp/zero" > "$tmp/vm.json"
	out=$("$b/kiln-vmm" --config "$tmp/vm.json" 2>&1)
	[ $? = 1 ] && [ "$out" = "kiln-vmm: error: kernel $tmp/zero: kernel is neither an ELF vmlinux nor a bzImage" ] &&
		echo "ok: not a kernel" || { echo "FAIL: not a kernel: $out"; fail=1; }
	# SIGINT while the vCPUs are inside KVM_RUN (the guest spins; the
	# second vCPU waits there for a SIPI that never comes): kiln-vmm kicks
	# each one out, joins it, closes the drive and exits 1 with the reason,
	# jailed (under --enable-sanitizers, with the runtimes' own needs).
	# The kernel: ELF64 x86_64, one PT_LOAD of the file at 1 MiB, entry
	# at 0x100078: jmp . (eb fe).
	printf '\177\105\114\106\2\1\1\0\0\0\0\0\0\0\0\0\2\0\76\0\1\0\0\0\170\0\20\0\0\0\0\0' > "$tmp/spin"
	printf '\100\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\100\0\70\0\1\0\0\0\0\0\0\0' >> "$tmp/spin"
	printf '\1\0\0\0\5\0\0\0\0\0\0\0\0\0\0\0\0\0\20\0\0\0\0\0\0\0\20\0\0\0\0\0' >> "$tmp/spin"
	printf '\172\0\0\0\0\0\0\0\172\0\0\0\0\0\0\0\0\20\0\0\0\0\0\0\353\376' >> "$tmp/spin"
	head -c 1048576 /dev/zero > "$tmp/disk"
	printf '{ "boot": { "kernel": "%s", "cmdline": "x" }, "machine": { "vcpus": 2, "mem_mib": 64 },
	  "drives": [ { "id": "d0", "path": "%s" } ] }' "$tmp/spin" "$tmp/disk" > "$tmp/vm.json"
	# timeout only ends a kiln-vmm that hangs instead of exiting.
	timeout -s KILL 120 "$b/kiln-vmm" --config "$tmp/vm.json" 2> "$tmp/err" &
	tpid=$!
	vpid=
	while [ -z "$vpid" ] && kill -0 $tpid 2>/dev/null; do
		vpid=$(cat /proc/$tpid/task/$tpid/children 2>/dev/null | tr -d ' ')
	done
	while [ -n "$vpid" ] && ! grep -qs '^16 0x[0-9a-f]* 0xae80 ' /proc/$vpid/task/*/syscall && kill -0 $vpid 2>/dev/null; do
		sleep 0.1
	done
	[ -n "$vpid" ] && kill -INT $vpid
	wait $tpid
	st=$?
	out=$(cat "$tmp/err")
	[ $st = 1 ] && [ "$out" = "kiln-vmm: error: interrupted (SIGINT)" ] && echo "ok: SIGINT with vCPUs in KVM_RUN" ||
		{ echo "FAIL: SIGINT with vCPUs in KVM_RUN: status $st: $out"; fail=1; }
else
	echo "skip: not a kernel (no usable /dev/kvm)"
fi
exit $fail
