# shellcheck shell=bash disable=SC2034 # KILN_K* are outputs for the recipes
# images/lib/initramfs.sh - bash helpers shared by the debian-kernel and
# sandbox recipes: resolve and fetch a Debian kernel package into the cache,
# pick modules with their dependencies, and pack a busybox-static initramfs.
#
# Source it from a recipe that runs under `set -euo pipefail` and sets
# KILN_RECIPE (used as the prefix of error messages).  It never installs a
# package on the host: kernel .debs are fetched with `apt-get download` and
# unpacked with `dpkg-deb -x` below $KILN_CACHE_DIR.

: "${KILN_CACHE_DIR:=/var/cache/kiln}"
: "${KILN_RECIPE:=initramfs}"
: "${KILN_BUSYBOX:=/bin/busybox}"

# Temporary folders to remove when the recipe exits, however it exits.
KILN_TMPS=()
kiln_cleanup() {
	((${#KILN_TMPS[@]} == 0)) || rm -rf -- "${KILN_TMPS[@]}"
}
trap kiln_cleanup EXIT

kiln_die() {
	echo "$KILN_RECIPE: $*" >&2
	exit 1
}

# kiln_sha256 FILE: print FILE's SHA-256.
kiln_sha256() {
	local sum
	sum=$(sha256sum <"$1") || kiln_die "cannot hash $1"
	echo "${sum%% *}"
}

# kiln_pkg_candidate PKG: print the version apt would install.
kiln_pkg_candidate() {
	local ver
	ver=$(apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
	[[ -n $ver && $ver != "(none)" ]] ||
		kiln_die "package $1 is unknown to apt (run apt-get update?)"
	echo "$ver"
}

# kiln_kernel_resolve META: resolve a Debian kernel metapackage such as
# linux-image-cloud-amd64 to the real image package it depends on.
# Sets KILN_KPKG and KILN_KPKGVER.
kiln_kernel_resolve() {
	local meta=$1 ver dep
	ver=$(kiln_pkg_candidate "$meta")
	# Depends: linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)
	dep=$(apt-cache show "$meta=$ver" 2>/dev/null |
		sed -n 's/^Depends: //p' | head -n1 | tr ',|' '\n' |
		sed -n 's/^ *\(linux-image-[0-9][^ ]*\).*/\1/p' | head -n1)
	[[ -n $dep ]] || kiln_die "$meta $ver does not depend on a linux-image-N.N package"
	KILN_KPKG=$dep
	KILN_KPKGVER=$(kiln_pkg_candidate "$dep")
	# The meta package pins the exact version; anything else means stale lists.
	[[ $KILN_KPKGVER == "$ver" ]] ||
		kiln_die "$meta $ver wants $dep $ver but apt offers $KILN_KPKGVER"
}

# kiln_kernel_fetch PKG VERSION: download PKG=VERSION (cached) and unpack it
# once into $KILN_CACHE_DIR/kernels/PKG_VERSION with modules.dep generated.
# Sets KILN_KROOT (the unpacked tree) and KILN_KVER (its `uname -r`).
kiln_kernel_fetch() {
	local pkg=$1 ver=$2 debs="$KILN_CACHE_DIR/debs" kernels="$KILN_CACHE_DIR/kernels"
	local root="$kernels/${pkg}_${ver}" lock
	mkdir -p "$debs" "$kernels" || kiln_die "cannot create $KILN_CACHE_DIR"
	lock="$kernels/.lock"
	# Several recipes share the cache; one fetches/unpacks while others wait.
	(
		flock 9 || kiln_die "cannot lock $lock"
		[[ -d $root ]] && exit 0
		local deb tmp kver
		deb=$(kiln_fetch_deb "$pkg" "$ver")
		tmp=$(mktemp -d "$kernels/.unpack.XXXXXX") || kiln_die "cannot create a folder in $kernels"
		dpkg-deb -x "$deb" "$tmp" || { rm -rf "$tmp"; kiln_die "cannot unpack $deb"; }
		# Newer packages ship /usr/lib/modules; depmod -b and modprobe -d
		# look below DIR/lib/modules.
		if [[ ! -d $tmp/lib/modules && -d $tmp/usr/lib/modules ]]; then
			ln -s usr/lib "$tmp/lib"
		fi
		kver=$(cd "$tmp/lib/modules" 2>/dev/null && ls) || true
		[[ -n $kver && $kver != *$'\n'* ]] ||
			{ rm -rf "$tmp"; kiln_die "$deb holds no single lib/modules/KVER"; }
		depmod -b "$tmp" "$kver" || { rm -rf "$tmp"; kiln_die "depmod failed for $kver"; }
		mv "$tmp" "$root" || kiln_die "cannot create $root"
	) 9>"$lock" || exit 1
	KILN_KROOT=$root
	KILN_KVER=$(cd "$root/lib/modules" && ls)
	[[ -f $root/boot/vmlinuz-$KILN_KVER ]] || kiln_die "$pkg $ver has no boot/vmlinuz-$KILN_KVER"
}

# kiln_fetch_deb PKG VERSION: print the path of the cached .deb, fetching it
# with apt-get download (which checks it against the signed index).
kiln_fetch_deb() {
	local pkg=$1 ver=$2 debs="$KILN_CACHE_DIR/debs" deb
	deb=$(kiln_find_deb "$pkg" "$ver")
	if [[ -z $deb ]]; then
		# The _apt user usually cannot write the cache; download as ourselves.
		(cd "$debs" && apt-get -q -o APT::Sandbox::User="$(id -un)" download "$pkg=$ver") >&2 ||
			kiln_die "apt-get download $pkg=$ver failed"
		deb=$(kiln_find_deb "$pkg" "$ver")
		[[ -n $deb ]] || kiln_die "apt-get download left no ${pkg}_${ver}_*.deb in $debs"
	fi
	echo "$deb"
}

kiln_find_deb() {
	local f
	# apt encodes the epoch colon as %3a in file names.
	for f in "$KILN_CACHE_DIR/debs/${1}_${2//:/%3a}"_*.deb; do
		[[ -f $f ]] && { echo "$f"; return 0; }
	done
	return 0
}

# kiln_extract_vmlinux BZIMAGE OUT: write the uncompressed ELF kernel
# inside BZIMAGE to OUT.  qemu boots such an ELF through its PVH entry
# point, which skips the decompressor: seconds under TCG.
kiln_extract_vmlinux() {
	local in=$1 out=$2 magic off dec
	# Debian: xz (amd64), lz4 legacy frames (cloud-amd64); also zstd, gzip.
	for magic in $'\xfd7zXZ' $'\x02\x21\x4c\x18' $'\x28\xb5\x2f\xfd' $'\x1f\x8b\x08'; do
		case $magic in
		$'\xfd7zXZ') dec="xz -dc --single-stream" ;;
		$'\x02\x21\x4c\x18') dec="lz4 -dc" ;;
		$'\x28\xb5\x2f\xfd') dec="zstd -qdc" ;;
		*) dec="gzip -dc" ;;
		esac
		command -v "${dec%% *}" >/dev/null || continue
		for off in $(LC_ALL=C grep -obUa -- "$magic" "$in" | head -n 4 | cut -d: -f1); do
			# Trailing data after the payload makes some decoders complain.
			tail -c "+$((off + 1))" "$in" | $dec >"$out" 2>/dev/null || true
			[[ $(head -c 4 "$out" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] && return 0
		done
	done
	rm -f "$out"
	kiln_die "found no compressed ELF kernel in $in"
}

# kiln_kconfig NAME: print CONFIG_NAME's value (y, m, or empty) in the
# fetched kernel's config.
kiln_kconfig() {
	sed -n "s/^CONFIG_$1=//p" "$KILN_KROOT/boot/config-$KILN_KVER"
}

# kiln_modules_resolve MODULE...: print, in load order and without
# duplicates, the .ko paths (relative to lib/modules/KVER) needed for the
# given modules, soft dependencies included.  Built-in modules need nothing;
# modules this kernel does not have are skipped with a note on stderr.
kiln_modules_resolve() {
	local mod line path moddir="$KILN_KROOT/lib/modules/$KILN_KVER" out
	local -A seen=()
	for mod in "$@"; do
		# -C /dev/null: the host's modprobe.d (blacklists, options) must not leak in.
		if ! out=$(modprobe -C /dev/null -d "$KILN_KROOT" -S "$KILN_KVER" \
			--show-depends "$mod" 2>/dev/null); then
			echo "$KILN_RECIPE: note: $KILN_KVER has no module $mod, skipped" >&2
			continue
		fi
		while read -r line; do
			case $line in
			"insmod "*)
				path=${line#insmod }
				path=${path%% *}
				path=${path#"$moddir"/}
				[[ -n ${seen[$path]:-} ]] && continue
				seen[$path]=1
				echo "$path"
				;;
			"builtin "*) ;;
			*) kiln_die "unexpected modprobe output for $mod: $line" ;;
			esac
		done <<<"$out"
	done
}

# kiln_module_name PATH: kernel/fs/9p/9p.ko.xz -> 9p, kvm-amd.ko -> kvm_amd
kiln_module_name() {
	local n=${1##*/}
	n=${n%%.ko*}
	echo "${n//-/_}"
}

# _kiln_cpio_entry NAME MODE RDEVMAJOR RDEVMINOR INO: one newc header with
# no data.  Lets an unprivileged build put device nodes into the archive.
_kiln_cpio_entry() {
	local name=$1 nsz=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
		"$5" "$2" 0 0 1 0 0 0 0 "$3" "$4" "$nsz" 0
	printf '%s\0' "$name"
	head -c $(((4 - (110 + nsz) % 4) % 4)) /dev/zero
}

# The early console: the kernel opens /dev/console for /init before any
# devtmpfs is mounted, so the node has to be in the archive.
_kiln_cpio_devnodes() {
	_kiln_cpio_entry dev $((0040755)) 0 0 1
	_kiln_cpio_entry dev/console $((0020600)) 5 1 2
	_kiln_cpio_entry dev/null $((0020666)) 1 3 3
	_kiln_cpio_entry TRAILER!!! 0 0 0 0
}

# kiln_initramfs_build OUT INIT MODULE_PATH...: pack a gzip'd newc
# initramfs into OUT with static busybox (+ applet links) in /bin, the
# script INIT as /init, the given modules (relative .ko paths, stored
# decompressed) under /lib/modules/KVER with their modules.dep, the module
# names in load order in /etc/modules and KVER in /etc/kver.  /init loads
# them with one `modprobe -a $(cat /etc/modules)`: under TCG one process is
# much faster than an insmod per module.
kiln_initramfs_build() {
	local out=$1 init=$2 stage moddir p dst
	shift 2
	[[ -x $KILN_BUSYBOX ]] || kiln_die "no busybox at $KILN_BUSYBOX (install busybox-static)"
	# A dynamic busybox would need its libraries in the initramfs.
	if ldd "$KILN_BUSYBOX" >/dev/null 2>&1; then
		kiln_die "$KILN_BUSYBOX is dynamically linked; install busybox-static"
	fi
	stage=$(mktemp -d) || kiln_die "cannot create a temporary folder"
	KILN_TMPS+=("$stage")
	moddir=$stage/lib/modules/$KILN_KVER
	mkdir -p "$stage"/{bin,etc,proc,sys,run,tmp,root,newroot} "$moddir"
	ln -s bin "$stage/sbin"
	cp "$KILN_BUSYBOX" "$stage/bin/busybox"
	for p in $("$KILN_BUSYBOX" --list); do
		[[ $p == busybox ]] || ln -s busybox "$stage/bin/$p"
	done
	install -m 0755 "$init" "$stage/init"
	: >"$stage/etc/modules"
	: >"$moddir/modules.order"
	for p in "$@"; do
		dst=${p%.xz}
		dst=${dst%.zst}
		dst=${dst%.gz}
		mkdir -p "$moddir/${dst%/*}"
		# busybox modprobe may lack the decompressors; store plain .ko files.
		case $p in
		*.ko) cp "$KILN_KROOT/lib/modules/$KILN_KVER/$p" "$moddir/$dst" ;;
		*.ko.xz) xz -dc "$KILN_KROOT/lib/modules/$KILN_KVER/$p" >"$moddir/$dst" ;;
		*.ko.zst) zstd -qdc "$KILN_KROOT/lib/modules/$KILN_KVER/$p" >"$moddir/$dst" ;;
		*.ko.gz) gzip -dc "$KILN_KROOT/lib/modules/$KILN_KVER/$p" >"$moddir/$dst" ;;
		*) kiln_die "unknown module file type: $p" ;;
		esac || kiln_die "cannot copy module $p"
		echo "$dst" >>"$moddir/modules.order"
		kiln_module_name "$p" >>"$stage/etc/modules"
	done
	cp "$KILN_KROOT/lib/modules/$KILN_KVER"/modules.builtin{,.modinfo} "$moddir/" ||
		kiln_die "no modules.builtin in $KILN_KROOT"
	depmod -b "$stage" "$KILN_KVER" || kiln_die "depmod failed on the initramfs modules"
	echo "$KILN_KVER" >"$stage/etc/kver"
	# Fixed times and owners: the same inputs give the same bytes.
	find "$stage" -exec touch -h -d "@${SOURCE_DATE_EPOCH:-0}" {} +
	{
		_kiln_cpio_devnodes
		(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
			cpio -o -H newc -R 0:0 --reproducible --quiet)
	} | gzip -9n >"$out" || kiln_die "cannot write $out"
	rm -rf "$stage"
}
