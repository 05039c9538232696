#!/usr/bin/env bash
# Builds the vmrun test/demo guest: Debian's kernel, a busybox initramfs and
# three small BIOS-bootable disk images (syslinux on FAT16), one per role.
#
#   test/guest/build.sh               build if needed; print the output paths
#   test/guest/build.sh --print-dir   print the output directory only
#   test/guest/build.sh --force       rebuild even if up to date
#
# Output directory: ${VMRUN_GUEST_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrun/guest}
#   vmlinuz initrd.img test.qcow2 panic.qcow2 demo.qcow2 ssh.qcow2
# Progress goes to stderr; stdout carries only the output paths.
# No loop devices, no mount: works in a container. See README.md.
#
# Needs (Debian packages): apt, dpkg, kmod, busybox-static, cpio, gzip, perl-base,
# dosfstools, mtools, syslinux, syslinux-common, qemu-utils, util-linux, dash,
# iproute2, debianutils; apt-get download fetches isc-dhcp-client (stock-dhcp.sh).
# VMRUN_GUEST_KERNEL_DEB=/path/linux-image-*.deb uses that package instead of
# resolving and downloading linux-image-amd64's current dependency.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=${0##*/}
outputs=(vmlinuz initrd.img test.qcow2 panic.qcow2 demo.qcow2 ssh.qcow2)
roles=(test panic demo ssh)
disk_mib=32     # virtual size of each disk image
part_start=2048 # first sector of the FAT partition (1 MiB)
# no_timer_check: under TCG on a loaded host the kernel's early check that
# the IO-APIC timer ticks can miss its window and panic ("IO-APIC + timer
# doesn't work!", before pvpanic is loaded, so the VM just hangs); virtual
# machines' timers work, so the check is skipped.
kernel_args="console=tty0 console=ttyS0,115200 quiet loglevel=3 no_timer_check"
# Modules to load at boot (with their dependencies). "?" marks optional ones:
# skipped if this kernel has neither a module nor a built-in of that name.
modules=(virtio_pci virtio_net virtio_blk pvpanic_mmio '?pvpanic_pci' '?evdev' '?button'
	'?ipv6' '?qemu_fw_cfg' virtio_console '?netfs' '?fscache' 9pnet 9pnet_virtio 9p
	'?isofs') # isofs: the ssh role mounts vmrun's NoCloud seed (ISO9660)
# The real QEMU guest agent (Debian's qemu-guest-agent), copied in with the
# libraries ldd lists and the dynamic loader; /init starts it on the
# org.qemu.guest_agent.0 port (vmrun exec, --exec).
qga=/usr/sbin/qemu-ga
# Debian's dropbear (package dropbear-bin), the ssh role's SSH server, copied
# in the same way.
dropbear=/usr/sbin/dropbear dropbearkey=/usr/bin/dropbearkey

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

usage() {
	sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

force=0
case "${1:-}" in
"") ;;
--force) force=1 ;;
--print-dir) ;;
-h | --help)
	usage
	exit 0
	;;
*) die "unknown argument '$1' (use --print-dir, --force or --help)" ;;
esac

if [[ -n "${VMRUN_GUEST_DIR:-}" ]]; then
	out=$VMRUN_GUEST_DIR
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
	out=$XDG_CACHE_HOME/vmrun/guest
elif [[ -n "${HOME:-}" ]]; then
	out=$HOME/.cache/vmrun/guest
else
	die "HOME is not set: set VMRUN_GUEST_DIR to the output directory"
fi
[[ $out == /* ]] || out=$PWD/$out

if [[ "${1:-}" == --print-dir ]]; then
	printf '%s\n' "$out"
	exit 0
fi

print_outputs() {
	local f
	for f in "${outputs[@]}"; do printf '%s\n' "$out/$f"; done
}

# --- tools -----------------------------------------------------------------
need() { # need CMD PACKAGE
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 not found: install it with 'apt-get install --no-install-recommends $2'"
}
export PATH=$PATH:/usr/sbin:/sbin
need apt-cache apt
need apt-get apt
need dpkg-deb dpkg
need depmod kmod
need modprobe kmod
need cpio cpio
need gzip gzip
need perl perl-base
need sha256sum coreutils
need flock util-linux
need mkfs.fat dosfstools
need mcopy mtools
need syslinux syslinux
need qemu-img qemu-utils
[[ -x $qga ]] || die "$qga not found: install it with 'apt-get install --no-install-recommends qemu-guest-agent'"
[[ -x $dropbear && -x $dropbearkey ]] || die "$dropbear not found: install it with 'apt-get install --no-install-recommends dropbear-bin'"
need ldd libc-bin
# shellcheck source=stock-dhcp.sh
. "$here/stock-dhcp.sh"
stock_dhcp_check
busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox not found: install it with 'apt-get install busybox-static'"
if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked: install 'busybox-static' (it replaces 'busybox')"
fi
mbr_bin=''
for f in /usr/lib/syslinux/mbr/mbr.bin /usr/lib/SYSLINUX/mbr.bin /usr/share/syslinux/mbr.bin; do
	[[ -f $f ]] && mbr_bin=$f && break
done
[[ -n $mbr_bin ]] || die "syslinux's mbr.bin not found: install it with 'apt-get install syslinux-common'"

# --- kernel package --------------------------------------------------------
kpkg='' kver_pkg='' kdeb=''
# Resolve linux-image-amd64's current dependency (name and version). apt-cache
# takes ~1 s here (no pkgcache in container images), so the answer is cached
# in $out/.resolved, keyed by the state of apt's lists and sources.
apt_state() {
	stat -c '%n %s %Y' /var/lib/apt/lists/* /etc/apt/sources.list \
		/etc/apt/sources.list.d/* /etc/apt/preferences /etc/apt/preferences.d/* \
		2>/dev/null | sha256sum | cut -d' ' -f1
}
resolve_kernel() {
	local key cached_key
	key=$(apt_state)
	if [[ -f $out/.resolved ]] && read -r cached_key kpkg kver_pkg <"$out/.resolved" &&
		[[ $cached_key == "$key" && -n $kpkg && -n $kver_pkg ]]; then
		return 0
	fi
	# The metapackage pins the exact version: "Depends: linux-image-6.1.0-NN-amd64 (= V)".
	read -r kpkg kver_pkg < <(apt-cache show --no-all-versions linux-image-amd64 2>/dev/null |
		sed -n 's/^Depends:.*\(linux-image-[0-9][^ ,]*\) (= \([^)]*\)).*/\1 \2/p' | head -n 1) || true
	if [[ -z $kpkg || -z $kver_pkg ]]; then
		kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
			awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
		[[ -n $kpkg ]] || return 1
		kver_pkg=$(apt-cache policy "$kpkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
	fi
	[[ -n $kver_pkg && $kver_pkg != "(none)" ]] || return 1
	printf '%s %s %s\n' "$key" "$kpkg" "$kver_pkg" >"$out/.resolved"
}

mkdir -p "$out"
exec 9>"$out/.lock"
if ! flock -n 9; then
	log "waiting for another build in $out"
	flock 9
fi
rm -rf "$out"/.build.* # left by a killed build (we hold the lock)

if [[ -n "${VMRUN_GUEST_KERNEL_DEB:-}" ]]; then
	kdeb=$(realpath "$VMRUN_GUEST_KERNEL_DEB")
	[[ -f $kdeb ]] || die "VMRUN_GUEST_KERNEL_DEB=$VMRUN_GUEST_KERNEL_DEB: no such file"
	kpkg=$(dpkg-deb -f "$kdeb" Package)
	kver_pkg=$(dpkg-deb -f "$kdeb" Version)
elif ! resolve_kernel; then
	if [[ $(id -u) == 0 ]]; then
		log "cannot resolve linux-image-amd64; running apt-get update"
		apt-get update -qq >&2 || true
	fi
	if ! resolve_kernel; then
		[[ -f $out/.kernel/pkg ]] ||
			die "cannot resolve the kernel package (apt-cache depends linux-image-amd64): run 'apt-get update' or set VMRUN_GUEST_KERNEL_DEB"
		read -r kpkg kver_pkg <"$out/.kernel/pkg"
		log "warning: apt cannot resolve linux-image-amd64; using the cached $kpkg $kver_pkg"
	fi
fi

# --- up to date? -----------------------------------------------------------
pkgver() { dpkg-query -W -f '${Version}' "$1" 2>/dev/null || echo unknown; }
inputs_hash() {
	{
		printf 'kernel %s %s\n' "$kpkg" "$kver_pkg"
		printf 'busybox %s\n' "$(sha256sum <"$busybox")"
		printf 'qemu-ga %s %s\n' "$(pkgver qemu-guest-agent)" "$(sha256sum <"$qga")"
		printf 'stock-dhcp %s\n' "$(stock_dhcp_key)"
		printf 'dropbear %s %s\n' "$(pkgver dropbear-bin)" "$(sha256sum <"$dropbear")"
		printf 'syslinux %s %s\n' "$(pkgver syslinux)" "$(pkgver syslinux-common)"
		printf 'disk %s %s %s %s\n' "$disk_mib" "$part_start" "$kernel_args" "${modules[*]}"
		(cd "$here" && find . -type f ! -name '*.md' ! -name '.*' -print0 |
			LC_ALL=C sort -z | xargs -0 sha256sum)
	} | sha256sum | cut -d' ' -f1
}
hash=$(inputs_hash)

up_to_date() {
	local f
	[[ -f $out/.stamp && $(cat "$out/.stamp") == "$hash" ]] || return 1
	for f in "${outputs[@]}"; do [[ -s $out/$f ]] || return 1; done
}
if [[ $force == 0 ]] && up_to_date; then
	print_outputs
	exit 0
fi

# --- build -----------------------------------------------------------------
start=$SECONDS
tmp=$(mktemp -d "$out/.build.XXXXXX")
[[ -n $tmp && -d $tmp ]] || die "mktemp failed in $out"
cleanup() { rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# 1. Kernel part: vmlinuz plus the initramfs's modules with their modules.dep.
# Cached in $out/.kernel (a few MB) per kernel package and module list, so an
# edit of init & co. rebuilds without downloading or unpacking the kernel.
kpart_key="format=1 $kpkg $kver_pkg ${modules[*]}"
kp=$tmp/kpart
if [[ -f $out/.kernel/key && $(cat "$out/.kernel/key") == "$kpart_key" ]]; then
	log "using the cached kernel part ($kpkg $kver_pkg)"
	cp -a "$out/.kernel" "$kp"
	kpart_new=0
else
	kpart_new=1
	if [[ -z $kdeb ]]; then
		log "downloading $kpkg $kver_pkg"
		mkdir -p "$tmp/dl"
		apt_opts=(-q)
		# As root, apt drops to user _apt, who cannot write the private tmp dir.
		[[ $(id -u) == 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)
		if ! (cd "$tmp/dl" && apt-get "${apt_opts[@]}" download "$kpkg=$kver_pkg" >&2); then
			[[ $(id -u) == 0 ]] || die "apt-get download $kpkg=$kver_pkg failed (and apt-get update needs root)"
			log "download failed; running apt-get update and retrying"
			apt-get update -qq >&2
			(cd "$tmp/dl" && apt-get "${apt_opts[@]}" download "$kpkg=$kver_pkg" >&2) ||
				die "apt-get download $kpkg=$kver_pkg failed"
		fi
		dl=("$tmp"/dl/*.deb)
		[[ -f ${dl[0]} ]] || die "apt-get download $kpkg left no .deb"
		kdeb=${dl[0]}
	fi

	log "unpacking $(basename "$kdeb")"
	kroot=$tmp/kernel
	dpkg-deb -x "$kdeb" "$kroot"
	rm -rf "$tmp/dl"
	kvers=("$kroot"/lib/modules/*)
	[[ -d ${kvers[0]} && ${#kvers[@]} == 1 ]] || die "$kdeb: expected exactly one lib/modules/<version>"
	kver=${kvers[0]##*/}
	[[ -f $kroot/boot/vmlinuz-$kver ]] || die "$kdeb has no boot/vmlinuz-$kver"
	mkdir -p "$kp/etc"
	cp "$kroot/boot/vmlinuz-$kver" "$kp/vmlinuz"
	printf '%s\n' "$kver" >"$kp/kver"
	depmod -b "$kroot" "$kver" # the package ships no modules.dep

	mdir=lib/modules/$kver
	mkdir -p "$kp/$mdir"
	cp "$kroot/$mdir"/modules.{order,builtin,builtin.modinfo} "$kp/$mdir/" 2>/dev/null || true
	load=()
	for m in "${modules[@]}"; do
		optional=0
		[[ $m == \?* ]] && optional=1 && m=${m#\?}
		if ! deps=$(modprobe -d "$kroot" -S "$kver" --show-depends "$m" 2>/dev/null); then
			[[ $optional == 1 ]] && log "note: no module $m in $kver, skipped" && continue
			die "module $m not found in $kver"
		fi
		if [[ $deps == builtin* ]]; then
			log "note: $m is built into $kver"
			continue
		fi
		while read -r verb path _; do
			[[ $verb == insmod ]] || continue
			rel=${path#"$kroot"/}
			mkdir -p "$kp/${rel%/*}"
			[[ -e $kp/$rel ]] || cp "$path" "$kp/$rel"
		done <<<"$deps"
		load+=("$m")
	done
	depmod -b "$kp" "$kver" # modules.dep for the copied set
	printf '%s\n' "${load[@]}" >"$kp/etc/vmrun-modules"
	rm -rf "$kroot"
	printf '%s %s\n' "$kpkg" "$kver_pkg" >"$kp/pkg"
	printf '%s\n' "$kpart_key" >"$kp/key"
fi
kver=$(cat "$kp/kver")
cp "$kp/vmlinuz" "$tmp/vmlinuz"

# 2. initramfs
log "building initramfs for $kver"
ir=$tmp/initramfs
mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,etc/acpi/PWRF,dev,proc,sys,run,tmp,var/log,root,www}
ln -s ../run "$ir/var/run"
cp "$busybox" "$ir/bin/busybox"
# Applet links (bin/sh, sbin/ip, ...): one perl process (perl-base is
# Essential in Debian) instead of hundreds of ln forks.
"$busybox" --list-full | (cd "$ir" && perl -MFile::Path=make_path -nle '
	next if $_ eq "" || $_ eq "bin/busybox" || -e $_ || -l $_;
	(my $d = $_) =~ s{/[^/]*$}{};
	make_path($d) if $d ne $_ && !-d $d;
	symlink("/bin/busybox", $_) or die "symlink $_: $!\n";')
install -m 0755 "$here/init" "$ir/init"
install -m 0755 "$here/udhcpc.script" "$ir/etc/udhcpc.script"
cat >"$ir/etc/acpi/PWRF/00000080" <<'ACPI_ACTION'
#!/bin/sh
# busybox acpid: ACPI power button (KEY_POWER) -> power off now.
msg="VMRUN-GUEST: power button pressed, powering off"
echo "$msg" >/dev/console
active=$(cat /sys/class/tty/console/active 2>/dev/null) # as in /init
case " $active " in
*" tty0 "*) [ "${active##* }" != tty0 ] && echo "$msg" >/dev/tty0 2>/dev/null ;;
esac
# What the guest's shutdown does first (init's stock_dhcp: release the lease).
[ -x /run/vmrun-poweroff ] && /run/vmrun-poweroff >/dev/console 2>&1
sync
poweroff -f
ACPI_ACTION
chmod 0755 "$ir/etc/acpi/PWRF/00000080"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$ir/etc/passwd"
printf 'root:x:0:\n' >"$ir/etc/group"
printf 'export PS1="\\h:\\w# "\n' >"$ir/etc/profile"
cp -a "$kp/lib" "$ir/"
cp "$kp/etc/vmrun-modules" "$ir/etc/vmrun-modules"
# qemu-ga and dropbear with their libraries (as ldd resolves them on this
# host) and the loader.
for bin in "$qga" "$dropbear" "$dropbearkey"; do
	install -D -m 0755 "$bin" "$ir$bin"
	LC_ALL=C ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
		while read -r lib; do
			[[ -e $ir$lib ]] || install -D -m 0755 "$(realpath "$lib")" "$ir$lib"
		done
done
[[ -e $ir/lib64/ld-linux-x86-64.so.2 ]] || die "ldd $qga listed no dynamic loader"
stock_dhcp_install "$ir" # the DHCP clients of vmrun.dhcp= (stock-dhcp.sh)
install -m 0755 "$here/nocloud.sh" "$ir/sbin/vmrun-nocloud"
printf '/bin/sh\n' >"$ir/etc/shells"

(cd "$ir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --quiet) | gzip -9 -n >"$tmp/initrd.img"

# 3. disk images: MBR (syslinux mbr.bin) + one bootable FAT16 partition.
export MTOOLS_SKIP_CHECK=1 MTOOLSRC=/dev/null
total=$((disk_mib * 2048))    # sectors
psize=$((total - part_start)) # sectors
need_kib=$((($(stat -c %s "$tmp/vmlinuz") + $(stat -c %s "$tmp/initrd.img")) / 1024 + 1024))
((need_kib < psize / 2)) || die "kernel + initrd (${need_kib} KiB) do not fit into ${disk_mib} MiB: raise disk_mib"

le32() { # 4 bytes little endian, as printf %b escapes
	printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) \
		$((($1 >> 16) & 255)) $((($1 >> 24) & 255))
}
chs() { # LBA -> 3 CHS bytes (255 heads, 63 sectors per track), as %b escapes
	local c=$(($1 / (255 * 63))) h=$((($1 / 63) % 255)) s=$(($1 % 63 + 1))
	((c > 1023)) && c=1023 h=254 s=63
	printf '\\x%02x\\x%02x\\x%02x' "$h" $(((s & 63) | ((c >> 2) & 192))) $((c & 255))
}

mkfs.fat -F 16 -n VMRUN -i 766d7275 -h "$part_start" --mbr=n \
	-C "$tmp/fs.img" $((psize / 2)) >/dev/null
mcopy -i "$tmp/fs.img" "$tmp/vmlinuz" "$tmp/initrd.img" ::/

for role in "${roles[@]}"; do
	log "building $role.qcow2"
	fs=$tmp/fs-$role.img
	cp "$tmp/fs.img" "$fs"
	cat >"$tmp/syslinux.cfg" <<SYSLINUX_CFG
SERIAL 0 115200
PROMPT 0
TIMEOUT 0
DEFAULT vmrun
LABEL vmrun
  LINUX /vmlinuz
  INITRD /initrd.img
  APPEND $kernel_args vmrun.role=$role
SYSLINUX_CFG
	mcopy -i "$fs" "$tmp/syslinux.cfg" ::/syslinux.cfg
	syslinux --install "$fs"

	disk=$tmp/disk-$role.img
	truncate -s "${disk_mib}M" "$disk"
	dd if="$mbr_bin" of="$disk" bs=440 count=1 conv=notrunc status=none
	# Partition 1: active, type 0x0e (FAT16, LBA), sectors part_start..end.
	printf '%b' "\\x80$(chs "$part_start")\\x0e$(chs $((total - 1)))$(le32 "$part_start")$(le32 "$psize")" |
		dd of="$disk" bs=1 seek=446 conv=notrunc status=none
	printf '\x55\xaa' | dd of="$disk" bs=1 seek=510 conv=notrunc status=none
	dd if="$fs" of="$disk" bs=512 seek="$part_start" conv=notrunc,sparse status=none
	qemu-img convert -f raw -O qcow2 "$disk" "$tmp/$role.qcow2"
	rm -f "$fs" "$disk"
done

# 4. Into place, each file by rename (atomic), the stamp last: an interrupted
# move leaves no stamp, and the next run rebuilds.
if [[ $kpart_new == 1 ]]; then
	rm -rf "$out/.kernel.old"
	if [[ -e $out/.kernel ]]; then mv "$out/.kernel" "$out/.kernel.old"; fi
	mv "$kp" "$out/.kernel"
	rm -rf "$out/.kernel.old" "$out/.deb" # .deb: left by an older version of this script
fi
rm -f "$out/.stamp"
for f in "${outputs[@]}"; do mv -f "$tmp/$f" "$out/$f"; done
printf '%s\n' "$hash" >"$tmp/stamp"
mv -f "$tmp/stamp" "$out/.stamp"
log "built in $((SECONDS - start)) s (kernel $kver, $kpkg $kver_pkg)"
print_outputs
