# shellcheck shell=bash
# Sourced by build.sh: the DHCP clients of the test role's vmrun.dhcp=
# profiles, as distributions ship them (see init's stock_dhcp):
#   udhcpc-stock  busybox udhcpc (already in the image) with busybox's own
#                 example script (busybox-static's examples/udhcp/simple.script)
#                 as its default script, /etc/udhcpc/default.script
#   dhclient      ISC dhclient from Debian's isc-dhcp-client package, with the
#                 package's dhclient.conf, dhclient-script and exit hook, and
#                 what the package depends on: iproute2's ip, debianutils'
#                 run-parts, and Debian's /bin/sh (dash) to run the script.
# The .debs are downloaded once (apt-get download) into $out/.stock-dhcp.

stock_dhcp_pkgs=(isc-dhcp-client isc-dhcp-common)
# Host binaries, put where busybox's links for them are (the guest's own
# busybox sh still runs its applets for these names: /init is unaffected).
declare -A stock_dhcp_tools=([/usr/bin/dash]=bin/dash [/usr/sbin/ip]=sbin/ip [/usr/bin/run-parts]=bin/run-parts)
stock_dhcp_example=/usr/share/doc/busybox-static/examples/udhcp/simple.script

# stock_dhcp_check: the host has what stock_dhcp_install copies.
stock_dhcp_check() {
	local f
	for f in "${!stock_dhcp_tools[@]}"; do
		[[ -x $f ]] || die "$f not found: install dash, iproute2 and debianutils"
	done
	[[ -f $stock_dhcp_example ]] || die "$stock_dhcp_example not found: install busybox-static with its docs"
}

# stock_dhcp_version PACKAGE: the version apt would download.
stock_dhcp_version() {
	apt-cache show --no-all-versions "$1" 2>/dev/null | sed -n 's/^Version: //p' | head -n 1
}

# stock_dhcp_key: what the clients' part of the image depends on (for the
# up-to-date check).
stock_dhcp_key() {
	local p f
	for p in "${stock_dhcp_pkgs[@]}"; do printf '%s=%s ' "$p" "$(stock_dhcp_version "$p")"; done
	for f in "${!stock_dhcp_tools[@]}" "$stock_dhcp_example"; do stat -L -c '%n %s %Y ' "$f"; done
}

# stock_dhcp_debs DIR: unpack the packages into DIR (downloaded if not cached).
stock_dhcp_debs() {
	local cache=$out/.stock-dhcp p v deb dl=$tmp/stock-dhcp-dl apt_opts=(-q)
	[[ $(id -u) == 0 ]] && apt_opts+=(-o APT::Sandbox::User=root)
	mkdir -p "$cache" "$dl"
	for p in "${stock_dhcp_pkgs[@]}"; do
		v=$(stock_dhcp_version "$p")
		[[ -n $v ]] || die "apt-cache knows no $p (try 'apt-get update')"
		deb=$cache/${p}_${v//:/%3a}_amd64.deb
		if [[ ! -s $deb ]]; then
			log "downloading $p $v"
			(cd "$dl" && apt-get "${apt_opts[@]}" download "$p=$v" >&2) || die "apt-get download $p=$v failed"
			find "$cache" -maxdepth 1 -name "${p}_*.deb" -delete
			mv -f "$dl/${p}_"*.deb "$deb"
		fi
		dpkg-deb -x "$deb" "$1"
	done
	rm -rf "$dl"
}

# stock_dhcp_libs IR BIN...: the shared libraries ldd lists for each BIN.
stock_dhcp_libs() {
	local ir=$1 b lib
	shift
	for b in "$@"; do
		LC_ALL=C ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
			while read -r lib; do
				[[ -e $ir$lib ]] || install -D -m 0755 "$(realpath "$lib")" "$ir$lib"
			done
	done
}

# stock_dhcp_install IR: the clients into the initramfs tree IR.
stock_dhcp_install() {
	local ir=$1 pr=$tmp/stock-dhcp f
	stock_dhcp_debs "$pr"
	install -D -m 0755 "$stock_dhcp_example" "$ir/etc/udhcpc/default.script"
	install -D -m 0755 "$pr/sbin/dhclient" "$ir/sbin/dhclient"
	# Debian's script unchanged but for its interpreter: the guest's /bin/sh
	# is busybox ash, which runs its own ip and run-parts applets before any
	# file in PATH, and those lack what the script uses (ip addr change,
	# valid_lft; run-parts --list); on Debian /bin/sh is dash.
	sed '1s|^#!/bin/sh$|#!/bin/dash|' "$pr/sbin/dhclient-script" >"$ir/sbin/dhclient-script"
	chmod 0755 "$ir/sbin/dhclient-script"
	[[ $(head -n 1 "$ir/sbin/dhclient-script") == '#!/bin/dash' ]] ||
		die "dhclient-script of ${stock_dhcp_pkgs[0]} does not start with #!/bin/sh"
	mkdir -p "$ir/etc/dhcp" "$ir/var/lib/dhcp"
	# The script reads /etc/fstab (is / mounted read-only?), which every
	# installed system has; without it the script fails and dhclient
	# declines its lease. An empty one: / is writable.
	[[ -e $ir/etc/fstab ]] || : >"$ir/etc/fstab"
	cp -a "$pr/etc/dhcp/." "$ir/etc/dhcp/"
	for f in "${!stock_dhcp_tools[@]}"; do
		rm -f "$ir/${stock_dhcp_tools[$f]}"
		install -D -m 0755 "$(realpath "$f")" "$ir/${stock_dhcp_tools[$f]}"
	done
	stock_dhcp_libs "$ir" "$pr/sbin/dhclient" "${!stock_dhcp_tools[@]}"
	rm -rf "$pr"
}
