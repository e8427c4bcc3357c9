# shellcheck shell=bash
# Shared helpers for rootfs recipes (images/recipes/tiny, images/recipes/debian).
# Sourced by the recipes, which run with `set -euo pipefail`.
#
# Trees are populated as plain directories and turned into ext4 images with
# `mke2fs -d`: no loop devices, nothing mounted. Run as root so that file
# owners (and debootstrap's device nodes) carry over into the image.

# Path of this file as recipes list it in their inputs.
ROOTFS_LIB_INPUT=images/lib/rootfs.sh
ROOTFS_LIB_FILE=${BASH_SOURCE[0]}

# Guest identity shared by all rootfs images.
ROOTFS_HOSTNAME=kiln
ROOTFS_USER=kiln
ROOTFS_UID=1000

rootfs_die() {
	echo "${0##*/}: $*" >&2
	exit 1
}

rootfs_sha256() {
	local out
	out=$(sha256sum -- "$1") || rootfs_die "cannot hash $1"
	echo "${out%% *}"
}

# Check $KILN_AGENT names a static executable: it is exec'd as init in guests
# that may have no libc at all (tiny).
rootfs_check_agent() {
	[[ -n ${KILN_AGENT:-} ]] || rootfs_die "KILN_AGENT is not set"
	[[ -f $KILN_AGENT && -r $KILN_AGENT ]] || rootfs_die "agent not found: $KILN_AGENT"
	if command -v readelf >/dev/null 2>&1; then
		local hdr
		hdr=$(LC_ALL=C readelf -lW -- "$KILN_AGENT" 2>/dev/null) ||
			rootfs_die "agent is not an ELF executable: $KILN_AGENT"
		if grep -q 'Requesting program interpreter' <<<"$hdr"; then
			rootfs_die "agent is dynamically linked, must be static: $KILN_AGENT"
		fi
	fi
}

# Input lines shared by every rootfs recipe: the agent and this library.
rootfs_common_inputs() {
	local agent lib
	rootfs_check_agent
	# Assigned first: a failing $(...) inside echo would not stop the script.
	agent=$(rootfs_sha256 "$KILN_AGENT")
	lib=$(rootfs_sha256 "$ROOTFS_LIB_FILE")
	echo "file agent $agent"
	echo "file $ROOTFS_LIB_INPUT $lib"
}

# Validate the OUTDIR argument of `build`.
rootfs_check_outdir() {
	local out=${1:-}
	[[ -n $out ]] || rootfs_die "usage: ${0##*/} build OUTDIR"
	[[ -d $out ]] || rootfs_die "output folder does not exist: $out"
	[[ -z $(ls -A -- "$out") ]] || rootfs_die "output folder is not empty: $out"
}

# rootfs_path TREE PATH: print TREE/PATH after checking that its parent
# folder, symlinks followed, stays inside TREE. Debian trees contain symlinks
# (/sbin -> usr/sbin, /etc/resolv.conf copied from the host); a careless write
# through an absolute link would land on the host.
rootfs_path() {
	local tree dir
	tree=$(realpath -e -- "$1") || rootfs_die "tree not found: $1"
	dir=$(realpath -m -- "$tree/$(dirname -- "$2")")
	[[ $dir == "$tree" || $dir == "$tree"/* ]] || rootfs_die "path escapes tree: $2"
	echo "$dir/$(basename -- "$2")"
}

# rootfs_write TREE PATH MODE: write stdin to TREE/PATH as a regular file,
# replacing whatever (e.g. a symlink) was there.
rootfs_write() {
	local dst
	dst=$(rootfs_path "$1" "$2")
	mkdir -p -- "$(dirname -- "$dst")"
	rm -f -- "$dst"
	cat >"$dst" || rootfs_die "cannot write $2 in $1"
	chmod "$3" -- "$dst"
	chown 0:0 -- "$dst"
}

# rootfs_add_line TREE PATH KEY LINE: append LINE to TREE/PATH unless a line
# starting with "KEY:" is already there (passwd, group, shadow, gshadow).
rootfs_add_line() {
	local dst
	dst=$(rootfs_path "$1" "$2")
	[[ -f $dst ]] || return 0
	grep -q "^$3:" -- "$dst" || printf '%s\n' "$4" >>"$dst"
}

# rootfs_install_agent TREE: the guest's init, /sbin/kiln-agent.
rootfs_install_agent() {
	local dst
	rootfs_check_agent
	dst=$(rootfs_path "$1" sbin/kiln-agent)
	mkdir -p -- "$(dirname -- "$dst")"
	rm -f -- "$dst"
	install -m 0755 -o 0 -g 0 -- "$KILN_AGENT" "$dst" || rootfs_die "cannot install agent into $1"
}

# rootfs_skeleton TREE SHELL: mount points and the /etc files every guest
# needs. Existing passwd/group (Debian) are extended, not replaced. SHELL is
# the login shell of root and kiln.
rootfs_skeleton() {
	local tree=$1 shell=$2 d p

	# Mount points: the agent mounts proc/sys/devtmpfs/tmpfs here and the job
	# workspace on /builds.
	for d in proc sys dev run mnt builds root tmp var/tmp "home/$ROOTFS_USER" etc; do
		p=$(rootfs_path "$tree" "$d")
		[[ -L $p ]] && rootfs_die "expected a folder, found a symlink: /$d"
		mkdir -p -- "$p"
	done
	chmod 0555 "$tree/proc" "$tree/sys"
	chmod 0755 "$tree/dev" "$tree/run" "$tree/mnt" "$tree/builds"
	chmod 1777 "$tree/tmp" "$tree/var/tmp"
	chmod 0700 "$tree/root"
	chown "$ROOTFS_UID:$ROOTFS_UID" "$tree/home/$ROOTFS_USER"

	echo "$ROOTFS_HOSTNAME" | rootfs_write "$tree" etc/hostname 0644
	rootfs_write "$tree" etc/hosts 0644 <<-EOF
		127.0.0.1	localhost
		127.0.1.1	$ROOTFS_HOSTNAME
		::1	localhost ip6-localhost ip6-loopback
	EOF
	# Placeholder only: the agent rewrites it from the VM's network config.
	# Must be a regular file, never a link into /run or to the host.
	echo "# written by kiln-agent at boot" | rootfs_write "$tree" etc/resolv.conf 0644

	if [[ ! -e $tree/etc/passwd ]]; then
		echo "root:x:0:0:root:/root:$shell" | rootfs_write "$tree" etc/passwd 0644
	fi
	if [[ ! -e $tree/etc/group ]]; then
		echo "root:x:0:" | rootfs_write "$tree" etc/group 0644
	fi
	rootfs_add_line "$tree" etc/passwd "$ROOTFS_USER" \
		"$ROOTFS_USER:x:$ROOTFS_UID:$ROOTFS_UID:kiln job user:/home/$ROOTFS_USER:$shell"
	rootfs_add_line "$tree" etc/group "$ROOTFS_USER" "$ROOTFS_USER:x:$ROOTFS_UID:"
	# Only where the distribution keeps shadow files (Debian): locked password.
	rootfs_add_line "$tree" etc/shadow "$ROOTFS_USER" "$ROOTFS_USER:!:19000:0:99999:7:::"
	rootfs_add_line "$tree" etc/gshadow "$ROOTFS_USER" "$ROOTFS_USER:!::"
}

# rootfs_mkext4 TREE IMAGE SIZE_MIB: make a sparse ext4 image of SIZE_MIB
# holding TREE. No journal: the image is only ever used under a throw-away
# copy-on-write overlay, so there is nothing to recover after a crash. 4 KiB
# blocks even for small images (mke2fs.conf would pick 1 KiB), no reserved
# blocks (jobs may run as kiln).
rootfs_mkext4() {
	local tree=$1 img=$2 mib=$3
	[[ $mib =~ ^[0-9]+$ && $mib -gt 0 ]] || rootfs_die "bad image size: $mib MiB"
	rm -f -- "$img"
	truncate -s "${mib}M" -- "$img" || rootfs_die "cannot create $img"
	if ! mke2fs -q -F -t ext4 -b 4096 -I 256 -m 0 -O ^has_journal -L kiln-root \
		-E root_owner=0:0 -d "$tree" -- "$img" >&2; then
		rm -f -- "$img"
		rootfs_die "mke2fs failed for $img (${mib} MiB from $tree)"
	fi
}

# rootfs_free_mib IMAGE: free space in the image's filesystem, MiB.
rootfs_free_mib() {
	local sb bs free
	sb=$(LC_ALL=C dumpe2fs -h -- "$1" 2>/dev/null) || rootfs_die "cannot read superblock of $1"
	bs=$(awk -F: '/^Block size:/ { gsub(/ /, "", $2); print $2 }' <<<"$sb")
	free=$(awk -F: '/^Free blocks:/ { gsub(/ /, "", $2); print $2 }' <<<"$sb")
	echo $((free * bs / 1048576))
}

# rootfs_tree_mib TREE: space the tree takes, MiB (allocated, not apparent:
# ext4 also rounds small files up to whole blocks).
rootfs_tree_mib() {
	local kib
	kib=$(du -sxk -- "$1" | cut -f1) || rootfs_die "cannot measure $1"
	echo $(((kib + 1023) / 1024))
}

# rootfs_rm_tree DIR: remove a build tree. A killed debootstrap can leave
# proc, sys or bind-mounted host /dev entries mounted inside it; detach those
# first, and never cross into another filesystem.
rootfs_rm_tree() {
	local dir mp
	[[ -e $1 ]] || return 0
	dir=$(realpath -e -- "$1") || return 0
	[[ $dir != / ]] || rootfs_die "refusing to remove /"
	# Mount points are field 5 of mountinfo; deepest first.
	local -a mps
	mapfile -t mps < <(awk -v d="$dir" '$5 == d || index($5, d "/") == 1 { print $5 }' \
		/proc/self/mountinfo | sort -r)
	for mp in "${mps[@]}"; do
		umount -l -- "$mp" || rootfs_die "cannot unmount $mp left inside $dir"
	done
	rm -rf --one-file-system -- "$dir" || rootfs_die "cannot remove $dir"
}
