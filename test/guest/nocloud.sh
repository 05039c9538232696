#!/bin/sh
# /sbin/vmrun-nocloud: the ssh role's first-boot step, a stand-in for the
# small part of cloud-init that vmrun's NoCloud seed needs. It is NOT
# cloud-init: it finds the seed by its label (the ISO9660 volume id, read
# from each virtio disk's primary volume descriptor: busybox-static has no
# blkid), mounts it with the guest's kernel (isofs), and applies only
#   meta-data  local-hostname             -> hostname, /etc/hostname
#   user-data  the first users[].name     -> a user (uid 1000, shell /bin/sh, home /home/NAME)
#              every "- ssh-…/ecdsa-…/sk-…" list item -> that user's ~/.ssh/authorized_keys
# as vmrun writes them (yaml.v3's layout; no YAML parser here).
# Prints one marker line:
#   VMRUN-GUEST: nocloud seed <dev> hostname=<h> user=<u> keys=<n>
#   VMRUN-GUEST: nocloud no seed | VMRUN-GUEST: nocloud seed <dev> not mounted
seed=/run/nocloud
# label DEV: the volume id of an ISO9660 image on DEV (sector 16: "CD001"
# at byte 1, the volume id at bytes 40-71), or nothing.
label() {
	[ "$(dd if="$1" bs=1 skip=32769 count=5 2>/dev/null)" = CD001 ] || return
	dd if="$1" bs=1 skip=32808 count=32 2>/dev/null | tr -d '\000' | sed 's/ *$//'
}
dev=''
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	if [ "$(label "/dev/${b##*/}")" = cidata ]; then
		dev=/dev/${b##*/}
		break
	fi
done
if [ -z "$dev" ]; then
	echo "VMRUN-GUEST: nocloud no seed"
	exit 0
fi
mkdir -p $seed
if ! mount -t iso9660 -o ro "$dev" $seed 2>/dev/null; then
	echo "VMRUN-GUEST: nocloud seed $dev not mounted"
	exit 0
fi

# value KEY FILE: the first "KEY: value" (at any indent, after "- ") in FILE.
value() {
	sed -n "s/^[ -]*$1:[[:space:]]*//p" "$2" | head -n 1 | sed 's/^"\(.*\)"$/\1/'
}

h=$(value local-hostname $seed/meta-data)
if [ -n "$h" ]; then
	hostname "$h"
	echo "$h" >/etc/hostname
	printf '127.0.0.1 localhost\n127.0.1.1 %s\n::1 localhost\n' "$h" >/etc/hosts
fi

u=$(value name $seed/user-data)
n=0
if [ -n "$u" ]; then
	home=/home/$u
	grep -q "^$u:" /etc/passwd ||
		echo "$u:*:1000:1000:$u:$home:/bin/sh" >>/etc/passwd
	grep -q "^$u:" /etc/group || echo "$u:x:1000:" >>/etc/group
	mkdir -p "$home/.ssh"
	sed -n 's/^[[:space:]]*-[[:space:]]*\(\(ssh-\|ecdsa-\|sk-\).*\)$/\1/p' $seed/user-data |
		sed 's/^"\(.*\)"$/\1/' >"$home/.ssh/authorized_keys"
	n=$(wc -l <"$home/.ssh/authorized_keys")
	chmod 700 "$home" "$home/.ssh"
	chmod 600 "$home/.ssh/authorized_keys"
	chown -R 1000:1000 "$home"
fi
umount $seed
echo "VMRUN-GUEST: nocloud seed $dev hostname=${h:-none} user=${u:-none} keys=$n"
