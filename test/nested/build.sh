#!/usr/bin/env bash
# Builds the nested-kernel test rig (layer 4 of TESTING.md): Debian's kernel
# and a base initramfs with the kernel modules this host lacks (Wi-Fi, ipvlan,
# vhost-net, ...), busybox, iproute2, iw, hostapd, wpa_supplicant, dnsmasq and
# QEMU. Tests boot it with internal/nested, which appends a per-test payload.
#
#   test/nested/build.sh               build if needed; print the output paths
#   test/nested/build.sh --print-dir   print the output directory only
#   test/nested/build.sh --force       rebuild even if up to date
#
# Output directory: ${VMRUN_NESTED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vmrun/nested}
#   vmlinuz      Debian's kernel (bzImage)
#   vmlinux      the same kernel uncompressed (boots ~2.5 s faster under TCG, via PVH)
#   rig.cpio     the base initramfs (newc, uncompressed: under TCG the kernel
#                needs ~3 s to gunzip it, ~0 s to copy it); /init runs /payload/run.sh
# VMRUN_NESTED_KERNEL_DEB=/path/linux-image-*.deb uses that kernel package
# instead of resolving and downloading linux-image-amd64's current dependency.
# Needs (Debian packages): apt, dpkg, kmod, busybox-static, cpio, xz-utils,
# iproute2, iw, hostapd, wpasupplicant, dnsmasq-base, qemu-system-x86.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=${0##*/}
outputs=(vmlinuz vmlinux rig.cpio)

# Kernel modules put into the rig (with their dependencies). "?" marks
# optional ones (skipped when the kernel has neither a module nor a built-in).
modules=(cfg80211 mac80211 mac80211_hwsim ipvlan ipvtap macvlan macvtap tap tun
	vhost_net bridge veth sch_ingress cls_u32 act_mirred virtio_net virtio_pci '?virtio_blk' '?pvpanic_mmio' '?pvpanic_pci')
# Loaded by /init at boot. Not ipvlan/ipvtap, vhost_net or the Wi-Fi stack: a
# test must be able to run without them (and loads them with modprobe).
boot_modules=(virtio_pci virtio_net virtio_blk tun tap veth bridge macvlan macvtap pvpanic_mmio)
# Real binaries (with their shared libraries). Call ip by full path in the rig:
# busybox's shell runs its own applets (ip, modprobe, ...) before PATH.
binaries=(/usr/sbin/ip /usr/sbin/iw /usr/sbin/hostapd /usr/sbin/wpa_supplicant
	/usr/sbin/wpa_cli /usr/sbin/dnsmasq /usr/bin/qemu-system-x86_64
	/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so)
# What Debian's QEMU opens for `-machine q35 -kernel ... -device virtio-net-pci`
# under TCG (found with strace): BIOS, option ROMs, the virtio-net boot ROM.
qemu_data=(/usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin
	/usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/pvh.bin
	/usr/lib/ipxe/qemu/efi-virtio.rom)
busybox=/bin/busybox

log() { printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

force=0
case "${1:-}" in
"" | --print-dir) ;;
--force) force=1 ;;
-h | --help)
	sed -n '2,20s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
	exit 0
	;;
*) die "unknown argument '$1' (use --print-dir, --force or --help)" ;;
esac

if [[ -n "${VMRUN_NESTED_DIR:-}" ]]; then
	out=$VMRUN_NESTED_DIR
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
	out=$XDG_CACHE_HOME/vmrun/nested
elif [[ -n "${HOME:-}" ]]; then
	out=$HOME/.cache/vmrun/nested
else
	die "HOME is not set: set VMRUN_NESTED_DIR to the output directory"
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

# --- tools and inputs ------------------------------------------------------
export PATH=$PATH:/usr/sbin:/sbin
need() { # need CMD PACKAGE
	command -v "$1" >/dev/null 2>&1 ||
		die "$1 not found: install it with 'apt-get install --no-install-recommends $2'"
}
need apt-cache apt
need apt-get apt
need dpkg-deb dpkg
need depmod kmod
need cpio cpio
need xz xz-utils
need ldd libc-bin
need sha256sum coreutils
need flock util-linux
[[ -x $busybox ]] || die "$busybox not found: install it with 'apt-get install busybox-static'"
if LC_ALL=C ldd "$busybox" >/dev/null 2>&1; then
	die "$busybox is dynamically linked: install 'busybox-static' (it replaces 'busybox')"
fi
declare -A pkg_of=([/usr/sbin/ip]=iproute2 [/usr/sbin/iw]=iw [/usr/sbin/hostapd]=hostapd
	[/usr/sbin/wpa_supplicant]=wpasupplicant [/usr/sbin/wpa_cli]=wpasupplicant
	[/usr/sbin/dnsmasq]=dnsmasq-base [/usr/bin/qemu-system-x86_64]=qemu-system-x86
	[/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so]=qemu-system-x86
	[/usr/share/seabios/bios-256k.bin]=seabios [/usr/share/qemu/kvmvapic.bin]=qemu-system-data
	[/usr/share/qemu/linuxboot_dma.bin]=qemu-system-data [/usr/share/qemu/pvh.bin]=qemu-system-data
	[/usr/lib/ipxe/qemu/efi-virtio.rom]=ipxe-qemu)
for f in "${binaries[@]}" "${qemu_data[@]}"; do
	[[ -f $f ]] || die "$f not found: install it with 'apt-get install --no-install-recommends ${pkg_of[$f]}'"
done

# Every file to copy from the host: the binaries, their libraries (ldd), the
# QEMU data files. Also feeds the up-to-date check (name, size, mtime).
host_files=()
collect_host_files() {
	local f lib
	declare -A seen=()
	for f in "${binaries[@]}"; do
		seen[$f]=1
		while read -r lib; do
			[[ -n $lib ]] && seen[$lib]=1
		done < <(LC_ALL=C ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
	done
	for f in "${qemu_data[@]}"; do seen[$f]=1; done
	mapfile -t host_files < <(printf '%s\n' "${!seen[@]}" | LC_ALL=C sort)
}
collect_host_files

# --- kernel package --------------------------------------------------------
# Resolve linux-image-amd64's current dependency. apt-cache takes ~1 s, so the
# answer is cached in $out/.resolved, keyed by the state of apt's lists.
kpkg='' kver_pkg='' kdeb=''
apt_state() {
	stat -c '%n %s %Y' /var/lib/apt/lists/* /etc/apt/sources.list \
		/etc/apt/sources.list.d/* /etc/apt/preferences.d/* 2>/dev/null | sha256sum | cut -d' ' -f1
}
resolve_kernel() {
	local key cached_key
	key=$(apt_state)
	if [[ -f $out/.resolved ]] && read -r cached_key kpkg kver_pkg <"$out/.resolved" &&
		[[ $cached_key == "$key" && -n $kpkg && -n $kver_pkg ]]; then
		return 0
	fi
	kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')
	[[ -n $kpkg ]] || return 1
	kver_pkg=$(apt-cache policy "$kpkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')
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

if [[ -n "${VMRUN_NESTED_KERNEL_DEB:-}" ]]; then
	kdeb=$(realpath "$VMRUN_NESTED_KERNEL_DEB")
	[[ -f $kdeb ]] || die "VMRUN_NESTED_KERNEL_DEB=$VMRUN_NESTED_KERNEL_DEB: no such file"
elif ! resolve_kernel; then
	if [[ $(id -u) == 0 ]]; then
		log "cannot resolve linux-image-amd64; running apt-get update"
		apt-get update -qq >&2 || true
	fi
	if ! resolve_kernel; then
		cached=("$out"/.deb/linux-image-*.deb)
		[[ -f ${cached[0]} ]] ||
			die "cannot resolve the kernel package (apt-cache depends linux-image-amd64): run 'apt-get update' or set VMRUN_NESTED_KERNEL_DEB"
		kdeb=${cached[0]}
		log "warning: apt cannot resolve linux-image-amd64; using the cached $kdeb"
	fi
fi
if [[ -n $kdeb ]]; then
	kpkg=$(dpkg-deb -f "$kdeb" Package)
	kver_pkg=$(dpkg-deb -f "$kdeb" Version)
fi

# --- up to date? -----------------------------------------------------------
inputs_hash() {
	{
		printf 'kernel %s %s\n' "$kpkg" "$kver_pkg"
		sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1
		stat -L -c '%n %s %Y' "$busybox" "${host_files[@]}"
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
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

# 1. Kernel package: given, cached, shared with test/guest/build.sh's cache
# (same version), or apt-get download.
mkdir -p "$out/.deb"
if [[ -z $kdeb ]]; then
	name=${kpkg}_${kver_pkg//:/%3a}_amd64.deb
	kdeb=$out/.deb/$name
	guest_deb=$(bash "$here/../guest/build.sh" --print-dir 2>/dev/null)/.deb/$name || guest_deb=
	if [[ ! -s $kdeb && -n $guest_deb && -s $guest_deb ]]; then
		log "using $guest_deb"
		find "$out/.deb" -mindepth 1 -maxdepth 1 -name '*.deb' -delete
		ln -f "$guest_deb" "$kdeb" 2>/dev/null || cp "$guest_deb" "$kdeb"
	fi
	if [[ ! -s $kdeb ]]; then
		log "downloading $kpkg $kver_pkg"
		mkdir -p "$tmp/dl"
		apt_opts=(-q)
		# As root, apt wants to drop to _apt, who cannot write the private tmp dir.
		[[ $(id -u) == 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)
		(cd "$tmp/dl" && apt-get "${apt_opts[@]}" download "$kpkg=$kver_pkg" >&2) ||
			die "apt-get download $kpkg=$kver_pkg failed (try 'apt-get update')"
		dl=("$tmp"/dl/*.deb)
		[[ -f ${dl[0]} ]] || die "apt-get download $kpkg left no .deb"
		find "$out/.deb" -mindepth 1 -maxdepth 1 -name '*.deb' -delete
		mv -f "${dl[0]}" "$kdeb"
	fi
fi

log "unpacking $(basename "$kdeb")"
kroot=$tmp/kernel
dpkg-deb -x "$kdeb" "$kroot"
kvers=("$kroot"/lib/modules/*)
[[ -d ${kvers[0]} && ${#kvers[@]} == 1 ]] || die "$kdeb: expected exactly one lib/modules/<version>"
kver=${kvers[0]##*/}
[[ -f $kroot/boot/vmlinuz-$kver ]] || die "$kdeb has no boot/vmlinuz-$kver"
cp "$kroot/boot/vmlinuz-$kver" "$tmp/vmlinuz"
depmod -b "$kroot" "$kver" # the package ships no modules.dep

# vmlinux: the xz stream inside the bzImage (the kernel tree's extract-vmlinux
# method). QEMU boots the ELF through its PVH entry point.
xz_at=$(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$tmp/vmlinuz" | head -n 1 | cut -d: -f1) ||
	die "no xz stream in $tmp/vmlinuz (is CONFIG_KERNEL_XZ still Debian's choice?)"
tail -c +$((xz_at + 1)) "$tmp/vmlinuz" | xz -dcq >"$tmp/vmlinux" 2>/dev/null || true
[[ $(head -c 4 "$tmp/vmlinux" | od -An -tx1 | tr -d ' ') == 7f454c46 ]] ||
	die "could not extract vmlinux from $tmp/vmlinuz"

# 2. Kernel modules: a small resolver over modules.dep (deps first).
mdir=lib/modules/$kver
declare -A mod_path=() mod_deps=() mod_builtin=() mod_done=()
modname() { # modname PATH: sets $name to the module's name (no fork: ~4000 calls)
	name=${1##*/}
	name=${name%%.ko*}
	name=${name//-/_}
}
while IFS=: read -r path deps; do
	modname "$path"
	mod_path[$name]=$path
	mod_deps[$name]=$deps
done <"$kroot/$mdir/modules.dep"
while read -r path; do
	modname "$path"
	mod_builtin[$name]=1
done <"$kroot/$mdir/modules.builtin"
mod_files=()
resolve_module() { # resolve_module NAME OPTIONAL
	local n=${1//-/_} d name
	[[ -z ${mod_done[$n]:-} ]] || return 0
	mod_done[$n]=1
	if [[ -z ${mod_path[$n]:-} ]]; then
		[[ -n ${mod_builtin[$n]:-} ]] && log "note: $n is built into $kver" && return 0
		[[ $2 == 1 ]] && log "note: no module $n in $kver, skipped" && return 0
		die "module $n not found in $kver"
	fi
	for d in ${mod_deps[$n]}; do
		modname "$d"
		resolve_module "$name" 0
	done
	mod_files+=("${mod_path[$n]}")
}
for m in "${modules[@]}"; do
	if [[ $m == \?* ]]; then resolve_module "${m#\?}" 1; else resolve_module "$m" 0; fi
done

# 3. The initramfs tree.
log "building the initramfs for $kver"
ir=$tmp/initramfs
mkdir -p "$ir"/{bin,sbin,usr/bin,usr/sbin,etc,dev,proc,sys,run,tmp,root,payload,etc/udhcpc}
mkdir -p "$ir/var"
ln -s ../run "$ir/var/run"
mkdir -p "$ir/$mdir"
for m in "${mod_files[@]}"; do
	mkdir -p "$ir/$mdir/${m%/*}"
	case $m in
	*.ko) cp "$kroot/$mdir/$m" "$ir/$mdir/$m" ;;
	*.ko.xz) xz -dc "$kroot/$mdir/$m" >"$ir/$mdir/${m%.xz}" ;;
	*) die "module $m: unsupported compression" ;;
	esac
done
cp "$kroot/$mdir"/modules.{order,builtin,builtin.modinfo} "$ir/$mdir/"
depmod -b "$ir" "$kver"
printf '%s\n' "${boot_modules[@]}" >"$ir/etc/rig-modules"

for f in "${host_files[@]}"; do
	mkdir -p "$ir/${f%/*}"
	cp -L "$f" "$ir/$f"
done
cp "$busybox" "$ir/bin/busybox"
while read -r applet; do
	[[ -z $applet || -e $ir/$applet || -L $ir/$applet ]] && continue
	mkdir -p "$ir/${applet%/*}"
	ln -s /bin/busybox "$ir/$applet"
done < <("$busybox" --list-full)

printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$ir/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ir/etc/group"
: >"$ir/etc/hosts"

# udhcpc's default script (Debian's busybox looks here): address, default route.
cat >"$ir/etc/udhcpc/default.script" <<'EOF'
#!/bin/sh
# busybox udhcpc hook: configure $interface from the lease.
case "$1" in
deconfig) ip -4 addr flush dev "$interface"; ip link set "$interface" up ;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do ip route replace default via "$r" dev "$interface"; break; done
	echo "udhcpc: $interface $ip/${mask:-24} router ${router:-none}"
	;;
esac
exit 0
EOF
chmod 0755 "$ir/etc/udhcpc/default.script"

cat >"$ir/init" <<'EOF'
#!/bin/sh
# The rig's PID 1: mount, load the always-wanted modules, run the payload's
# /payload/run.sh, report its status as RIG-EXIT=<n>, power off.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb VMRUN_RIG=1
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/netns
hostname rig
ip link set lo up
# shellcheck disable=SC2046 # one module name per word
modprobe -a $(cat /etc/rig-modules) || echo "RIG: warning: modprobe of the boot modules failed"
echo "RIG: up"
if [ -f /payload/run.sh ]; then
	(cd /payload && sh /payload/run.sh)
	status=$?
else
	echo "RIG: no /payload/run.sh"
	status=127
fi
echo "RIG-EXIT=$status"
sync
poweroff -f
EOF
chmod 0755 "$ir/init"

(cd "$ir" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
	cpio --null --create --format=newc --owner=0:0 --quiet) >"$tmp/rig.cpio"

# 4. Into place: each file by rename (atomic); the stamp last, so an
# interrupted move leaves no stamp and the next run rebuilds.
rm -f "$out/.stamp"
for f in "${outputs[@]}"; do mv -f "$tmp/$f" "$out/$f"; done
printf '%s\n' "$hash" >"$tmp/stamp"
mv -f "$tmp/stamp" "$out/.stamp"
log "built in $((SECONDS - start)) s (kernel $kver, $kpkg $kver_pkg):" \
	"rig.cpio $(($(stat -c %s "$out/rig.cpio") / 1024)) KiB," \
	"vmlinuz $(($(stat -c %s "$out/vmlinuz") / 1024)) KiB, vmlinux $(($(stat -c %s "$out/vmlinux") / 1024)) KiB"
print_outputs
