#!/bin/sh
# The Debian package (debian/): dpkg-buildpackage -us -uc -b builds it from
# a copy of the tree; its layout is checked (/usr/bin, /usr/libexec/kiln,
# /usr/share/kiln, the conffile, the units); it is unpacked with dpkg -x and
# kiln runs from there (--version, config check on the shipped
# configuration, doctor finding its helpers under usr/libexec/kiln with
# KILN_* paths pointing into the unpacked tree); systemd-analyze verifies
# the shipped units; lintian, when present, finds nothing that is not
# overridden.
#
# Opt-in (KILN_TEST_PACKAGE=1), otherwise SKIP (77): the build compiles the
# whole tree a second time (about a minute on 2 cores, more beside other
# jobs), which make check's default run should not pay for a packaging
# check; CI runs it in a job of its own. Also SKIP without dpkg-buildpackage
# or the build dependencies (dpkg-checkbuilddeps names them).
set -u
src=${top_srcdir:-.}
src=$(cd "$src" && pwd)

[ "${KILN_TEST_PACKAGE:-0}" = 1 ] ||
	{ echo "SKIP: building the Debian package takes minutes: set KILN_TEST_PACKAGE=1"; exit 77; }
for t in dpkg-buildpackage dpkg-deb dh; do
	command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not found (apt-get install dpkg-dev debhelper)"; exit 77; }
done
missing=$(cd "$src" && dpkg-checkbuilddeps 2>&1) ||
	{ echo "SKIP: build dependencies missing: ${missing#*: }"; exit 77; }

w=$(mktemp -d "${TMPDIR:-/tmp}/kiln-package.XXXXXX") || exit 99
[ -n "${KILN_TEST_KEEP:-}" ] || trap 'rm -rf "$w"' EXIT
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

# make check has run the unit suites already: nocheck.
echo "building kiln $version (log: $w/build.log)"
if ! (cd "$tree" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" dpkg-buildpackage -us -uc -b) >"$w/build.log" 2>&1; then
	tail -n 30 "$w/build.log"
	echo "FAIL: dpkg-buildpackage"
	exit 1
fi
deb=$(ls "$w"/kiln_"$version"_*.deb 2>/dev/null | head -n 1)
[ -f "$deb" ] || { echo "FAIL: no kiln_${version}_*.deb"; exit 1; }
echo "ok: built $(basename "$deb")"

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
cat "$w/doctor.out"
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
# (debian/kiln.lintian-overrides, debian/README.source).
if command -v lintian >/dev/null 2>&1; then
	lintian --fail-on error,warning "$w"/kiln_"$version"_*.changes >"$w/lintian.out" 2>&1 ||
		{ cat "$w/lintian.out"; bad "lintian"; }
	echo "lintian: $(grep -c '' "$w/lintian.out") line(s)"; cat "$w/lintian.out"
else
	echo "(lintian not installed: not run)"
fi
exit $fail
