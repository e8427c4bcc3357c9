#!/bin/sh
# The Debian package (debian/): dpkg-buildpackage -us -uc -b builds it from
# a copy of the tree in a temporary folder (the tree and make distcheck see
# nothing of it); its layout is checked (/usr/bin, /usr/libexec/kiln,
# /usr/share/kiln, the conffile, the units); it is unpacked with dpkg -x and
# kiln runs from there (--version, config check on the shipped
# configuration, doctor finding its helpers under usr/libexec/kiln with
# KILN_* paths pointing into the unpacked tree); systemd-analyze verifies
# the shipped units; lintian finds nothing that is not overridden.
#
# Then, as root, the package is installed in a clean Debian 12 chroot
# (issue #19): an overlay on the debootstrap tree that the debian image
# recipe caches ($KILN_CACHE_DIR/rootfs/debian-*, so no second debootstrap;
# without one, debootstrap --variant=minbase from $KILN_DEBIAN_MIRROR or
# deb.debian.org), its Depends from the tree's mirror (apt-get satisfy),
# then dpkg -i; kiln --version, config check and doctor run inside with
# /proc mounted; dpkg -r keeps an edited conffile, state and cache, a
# reinstall keeps the edit, dpkg --purge removes them (debian/kiln.postrm)
# and the timer's enablement. All of
# it runs in a private mount namespace (unshare -m): the overlay and /proc
# exist only there and vanish with it on every exit path, and the cached
# tree is reached only through the overlay, never written.
#
# About a minute on 2 cores alone, 2 beside other tests (the build
# compiles the whole tree again, niced below the VM tests). KILN_SKIP_PACKAGE=1 opts out (SKIP, 77), and
# so does make distcheck from tools/dev (it ran in make check). Also SKIP
# without dpkg-buildpackage, debhelper, lintian or the build dependencies
# (dpkg-checkbuilddeps names them). Not root: the chroot part is not run.
# KILN_TEST_KEEP=1 keeps the work folder.
set -u
src=${top_srcdir:-.}
src=$(cd "$src" && pwd)
# The image recipes' cache (the chroot's tree), before KILN_CACHE_DIR is
# pointed into the work folder below.
tree_cache=${KILN_CACHE_DIR:-/var/cache/kiln}

now() { date +%s; }

# in_namespace WORK TREE DEB VERSION, run by this script under unshare -m
# --propagation private: installs DEB in a chroot at WORK/chroot, an overlay
# on TREE (a cached debootstrap tree) or, with TREE empty, a fresh
# debootstrap; prints ok:/FAIL: lines and exits 1 when a check failed.
in_namespace() {
	w=$1 lower=$2 deb=$3 version=$4
	root=$w/chroot
	fail=0
	bad() { echo "FAIL: $*"; fail=1; }
	trap 'umount "$root/proc" 2>/dev/null; umount "$root" 2>/dev/null' EXIT
	trap 'exit 1' HUP INT TERM
	mkdir -p "$root" || return 99
	if [ -n "$lower" ]; then
		mkdir -p "$w/upper" "$w/ovlwork" || return 99
		if ! mount -t overlay kiln-package -o "lowerdir=$lower,upperdir=$w/upper,workdir=$w/ovlwork" "$root"; then
			echo "(no overlayfs: copying $lower)"
			cp -a "$lower/." "$root/" || return 99
		fi
	else
		mirror=${KILN_DEBIAN_MIRROR:-http://deb.debian.org/debian}
		echo "no cached debian tree: debootstrap --variant=minbase bookworm from $mirror"
		debootstrap --variant=minbase bookworm "$root" "$mirror" >"$w/debootstrap.log" 2>&1 ||
			{ tail -n 20 "$w/debootstrap.log"; echo "FAIL: debootstrap bookworm from $mirror"; return 1; }
	fi
	mount -t proc proc "$root/proc" || return 99
	# The host's resolver (a link in the tree would point outside it), and
	# no service started by a maintainer script.
	rm -f "$root/etc/resolv.conf" && cp /etc/resolv.conf "$root/etc/resolv.conf" || return 99
	printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d" && chmod 755 "$root/usr/sbin/policy-rc.d" || return 99
	cp "$deb" "$root/tmp/kiln.deb" || return 99
	c() {
		chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
			DEBIAN_FRONTEND=noninteractive "$@"
	}
	status() { c dpkg-query -W -f='${db:Status-Abbrev}' kiln 2>/dev/null; }

	# Depends as the package states them (shlibs included), from the
	# tree's own mirror, then the package itself with plain dpkg -i.
	t0=$(now)
	if ! { c apt-get update && c apt-get satisfy -y --no-install-recommends "$(dpkg-deb -f "$deb" Depends)"; } \
			>"$w/apt.log" 2>&1; then
		tail -n 20 "$w/apt.log"
		echo "FAIL: the package's Depends do not install in the chroot (apt-get update; apt-get satisfy)"
		return 1
	fi
	echo "ok: Depends installed from $(sed -n 's/^deb \([^ ]*\) .*/\1/p' "$root/etc/apt/sources.list" | head -n 1) ($(($(now) - t0)) s)"
	c dpkg -i /tmp/kiln.deb >"$w/dpkg-i.log" 2>&1 || { cat "$w/dpkg-i.log"; bad "dpkg -i in the chroot"; return 1; }
	[ "$(status)" = "ii " ] || bad "kiln is '$(status)' after dpkg -i, not ii"

	c kiln --version | grep -qx "kiln $version" || bad "kiln --version in the chroot is not $version"
	c kiln config check >"$w/chroot-config.out" 2>&1 ||
		{ cat "$w/chroot-config.out"; bad "kiln config check on the installed /etc/kiln/config.yml"; }
	c kiln doctor >"$w/chroot-doctor.out" 2>&1
	st=$?
	sed 's/^/chroot| /' "$w/chroot-doctor.out"
	[ $st -le 1 ] || bad "kiln doctor in the chroot exited $st"
	grep -q "kiln-vmm: /usr/libexec/kiln/kiln-vmm" "$w/chroot-doctor.out" ||
		bad "doctor in the chroot did not find /usr/libexec/kiln/kiln-vmm"
	[ "$(stat -c '%a %U' "$root/etc/kiln/config.yml")" = "600 root" ] || bad "the installed config.yml is not 0600 root"
	[ -d "$root/var/lib/kiln" ] || bad "no /var/lib/kiln after dpkg -i"
	# debian/rules: the timer is enabled, kiln.service is not.
	[ -L "$root/etc/systemd/system/timers.target.wants/kiln-images.timer" ] || bad "kiln-images.timer not enabled by dpkg -i"
	[ ! -e "$root/etc/systemd/system/multi-user.target.wants/kiln.service" ] || bad "kiln.service enabled by dpkg -i"
	[ $fail = 0 ] && echo "ok: dpkg -i in a clean chroot; kiln --version, config check and doctor run there"

	# The conffile: an operator's edit survives dpkg -r and a reinstall;
	# dpkg --purge removes it, and what kiln wrote (debian/kiln.postrm),
	# which dpkg -r keeps: stand-ins made here.
	echo "# an operator's edit" >>"$root/etc/kiln/config.yml"
	echo s_0123456789ab >"$root/etc/kiln/.runner_system_id"
	mkdir -p "$root/var/lib/kiln/payloads" "$root/var/cache/kiln/gitlab" &&
		echo '{}' >"$root/var/lib/kiln/payloads/1.json" && echo x >"$root/var/cache/kiln/gitlab/x" || return 99
	c dpkg -r kiln >"$w/dpkg-r.log" 2>&1 || { cat "$w/dpkg-r.log"; bad "dpkg -r kiln"; }
	[ "$(status)" = "rc " ] || bad "kiln is '$(status)' after dpkg -r, not rc"
	[ ! -e "$root/usr/bin/kiln" ] && [ ! -e "$root/usr/libexec/kiln" ] || bad "dpkg -r left /usr/bin/kiln or /usr/libexec/kiln"
	grep -q "an operator's edit" "$root/etc/kiln/config.yml" 2>/dev/null || bad "dpkg -r did not keep the edited conffile"
	[ -f "$root/etc/kiln/.runner_system_id" ] && [ -f "$root/var/lib/kiln/payloads/1.json" ] &&
		[ -f "$root/var/cache/kiln/gitlab/x" ] || bad "dpkg -r removed the runner identity, state or cache"
	c dpkg -i /tmp/kiln.deb >"$w/dpkg-i2.log" 2>&1 || { cat "$w/dpkg-i2.log"; bad "dpkg -i over the remaining conffile"; }
	grep -q "an operator's edit" "$root/etc/kiln/config.yml" || bad "a reinstall replaced the edited conffile"
	c kiln config check >/dev/null 2>&1 || bad "kiln config check on the edited conffile"
	c dpkg --purge kiln >"$w/dpkg-purge.log" 2>&1 || { cat "$w/dpkg-purge.log"; bad "dpkg --purge kiln"; }
	[ -z "$(status)" ] || bad "kiln is '$(status)' after dpkg --purge"
	for d in /etc/kiln /var/lib/kiln /var/cache/kiln; do
		[ ! -e "$root$d" ] || bad "dpkg --purge left $d: $(ls -A "$root$d")"
	done
	[ ! -e "$root/etc/systemd/system/timers.target.wants/kiln-images.timer" ] || bad "dpkg --purge left the timer enabled"
	[ $fail = 0 ] &&
		echo "ok: dpkg -r keeps the edited conffile, state and cache, a reinstall keeps the edit, dpkg --purge removes them"
	umount "$root/proc" || bad "umount $root/proc"
	return $fail
}

[ "${1:-}" = --in-namespace ] && { shift; in_namespace "$@"; exit $?; }
[ -z "${KILN_SKIP_PACKAGE:-}" ] || { echo "SKIP: KILN_SKIP_PACKAGE is set ($KILN_SKIP_PACKAGE)"; exit 77; }
for t in dpkg-buildpackage dpkg-deb dh lintian; do
	command -v $t >/dev/null 2>&1 ||
		{ echo "SKIP: $t not found (apt-get install dpkg-dev debhelper lintian, or ./tools/dev deps)"; exit 77; }
done
missing=$(cd "$src" && dpkg-checkbuilddeps 2>&1) ||
	{ echo "SKIP: build dependencies missing: ${missing#*: }"; exit 77; }
# The chroot, as root: the newest tree the debian recipe cached for
# bookworm on this architecture (images/recipes/debian: complete once
# renamed there), else debootstrap.
in_chroot= lower=
if [ "$(id -u)" = 0 ]; then
	in_chroot=yes
	for t in unshare chroot; do
		command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found (util-linux, coreutils)"; exit 77; }
	done
	for info in $(ls -t "$tree_cache"/rootfs/debian-*.info 2>/dev/null); do
		d=${info%.info}
		grep -qx suite=bookworm "$info" && grep -qx "arch=$(dpkg --print-architecture)" "$info" &&
			[ -x "$d/usr/bin/apt-get" ] && { lower=$d; break; }
	done
	[ -n "$lower" ] || command -v debootstrap >/dev/null 2>&1 ||
		{ echo "SKIP: no cached debian tree in $tree_cache/rootfs and no debootstrap (apt-get install debootstrap)"; exit 77; }
fi

w=$(mktemp -d "${TMPDIR:-/tmp}/kiln-package.XXXXXX") || exit 99
[ -n "${KILN_TEST_KEEP:-}" ] || trap 'rm -rf "$w"' EXIT
trap 'exit 1' HUP INT TERM
fail=0
bad() { echo "FAIL: $*"; fail=1; }

# A copy of the source, without this build's outputs: git's list in a
# checkout, everything in an unpacked dist tarball.
version=$(sed -n '1s/^kiln (\([^)]*\)).*/\1/p' "$src/debian/changelog")
tree="$w/kiln-$version"
mkdir -p "$tree"
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
	(cd "$src" && git ls-files -co --exclude-standard | tar -cf - -T -) | tar -xf - -C "$tree" || exit 99
else
	cp -a "$src/." "$tree/" || exit 99
	chmod -R u+w "$tree"
	[ ! -f "$tree/Makefile" ] || (cd "$tree" && make distclean >/dev/null 2>&1)
fi

# make check has run the unit suites already: nocheck. Niced: make check
# runs this beside the VM tests, whose guests have timeouts.
echo "building kiln $version (log: $w/build.log)"
t0=$(now)
# Nothing of make check's environment reaches the build: its jobserver
# (MAKEFLAGS) nor the KILN_* paths into this tree.
if ! (unset MAKEFLAGS MFLAGS MAKELEVEL KILN_DATA_DIR KILN_LIBEXEC_DIR && cd "$tree" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" nice -n 10 dpkg-buildpackage -us -uc -b) >"$w/build.log" 2>&1; then
	tail -n 30 "$w/build.log"
	echo "FAIL: dpkg-buildpackage"
	exit 1
fi
deb=$(ls "$w"/kiln_"$version"_*.deb 2>/dev/null | head -n 1)
[ -f "$deb" ] || { echo "FAIL: no kiln_${version}_*.deb"; exit 1; }
echo "ok: built $(basename "$deb") ($(($(now) - t0)) s)"

# The layout issue #19 asks for.
dpkg-deb -c "$deb" >"$w/listing" || exit 99
awk '{print $6}' "$w/listing" | sed 's|^\./|/|' >"$w/files"
for f in /usr/bin/kiln /usr/libexec/kiln/kiln-vmm /usr/libexec/kiln/kiln-agent \
	 /usr/libexec/kiln/kiln-diskread /usr/share/kiln/images/recipes/debian \
	 /usr/share/kiln/images/recipes/kernel /usr/share/kiln/systemd/kiln.service.in \
	 /etc/kiln/config.yml /var/lib/kiln/ /lib/systemd/system/kiln.service \
	 /lib/systemd/system/kiln-images.service /lib/systemd/system/kiln-images.timer \
	 /usr/share/man/man1/kiln.1.gz /usr/share/doc/kiln/operators.md.gz \
	 /usr/share/doc/kiln/examples/prometheus/kiln-rules.yml; do
	grep -qx "$f" "$w/files" || bad "the package lacks $f"
done
dpkg-deb -f "$deb" Depends >"$w/depends"
grep -q nftables "$w/depends" || bad "Depends lacks nftables"
dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - ./conffiles >"$w/conffiles" 2>/dev/null
grep -qx /etc/kiln/config.yml "$w/conffiles" ||
	bad "/etc/kiln/config.yml is not a conffile"
grep -q -- '^-rw------- root/root .*\./etc/kiln/config.yml$' "$w/listing" ||
	bad "/etc/kiln/config.yml is not 0600 root"

# Unpacked, kiln runs from there and finds its helpers in usr/libexec/kiln.
x="$w/root"
dpkg -x "$deb" "$x" || exit 99
grep -q /usr/libexec/kiln "$x/usr/bin/kiln" || bad "kiln does not look for its helpers in /usr/libexec/kiln"
export KILN_DATA_DIR="$x/usr/share/kiln" KILN_LIBEXEC_DIR="$x/usr/libexec/kiln" \
	KILN_CONFIG="$x/etc/kiln/config.yml" KILN_STATE_DIR="$w/state" KILN_CACHE_DIR="$w/cache"
"$x/usr/bin/kiln" --version | grep -qx "kiln $version" || bad "kiln --version is not $version"
"$x/usr/bin/kiln" config check >"$w/config.out" 2>&1 || { cat "$w/config.out"; bad "kiln config check on the shipped config.yml"; }
# doctor's verdict depends on the host (KVM, images): 0 or 1 is a report.
"$x/usr/bin/kiln" doctor >"$w/doctor.out" 2>&1
st=$?
sed "s/^/doctor| /" "$w/doctor.out"
[ $st -le 1 ] || bad "kiln doctor exited $st"
grep -q "kiln-vmm: $x/usr/libexec/kiln/kiln-vmm" "$w/doctor.out" || bad "doctor did not find the packaged kiln-vmm"
[ $fail = 0 ] && echo "ok: kiln --version, config check and doctor from the unpacked package"

# The shipped units, their ExecStart pointed at the unpacked kiln.
if command -v systemd-analyze >/dev/null 2>&1; then
	mkdir -p "$w/units"
	for u in kiln.service kiln-images.service kiln-images.timer; do
		sed "s|/usr/bin/kiln|$x/usr/bin/kiln|g" "$x/lib/systemd/system/$u" >"$w/units/$u"
	done
	for u in kiln.service kiln-images.service kiln-images.timer; do
		out=$(cd "$w/units" && systemd-analyze verify "$u" 2>&1)
		if [ $? -ne 0 ] || printf '%s' "$out" | grep -q "$u"; then
			printf '%s\n' "$out"; bad "systemd-analyze verify of the packaged $u"
		fi
	done
fi

# lintian: every tag it still raises is overridden with a reason
# (debian/kiln.lintian-overrides, debian/README.source). As root it warns
# that it runs as root, which is no finding.
t0=$(now)
lintian --fail-on error,warning "$w"/kiln_"$version"_*.changes >"$w/lintian.out" 2>&1 ||
	{ cat "$w/lintian.out"; bad "lintian"; }
grep -v '^running with root privileges is not recommended!$' "$w/lintian.out" >"$w/lintian.tags"
if [ -s "$w/lintian.tags" ]; then
	cat "$w/lintian.tags"; bad "lintian: $(grep -c '' "$w/lintian.tags") line(s) above"
else
	echo "ok: lintian clean (overrides: debian/kiln.lintian-overrides) ($(($(now) - t0)) s)"
fi

# Installed in a clean chroot (in_namespace above).
if [ -n "$in_chroot" ]; then
	echo "chroot: ${lower:-a fresh debootstrap}"
	t0=$(now)
	unshare -m --propagation private sh "$0" --in-namespace "$w" "$lower" "$deb" "$version" || fail=1
	echo "chroot part: $(($(now) - t0)) s"
else
	echo "(not root: the chroot install is not run)"
fi
exit $fail
