// Package helptext holds the long texts of vmrun's --help (the main
// command's description), kept out of cmd/vmrun so that the command's
// code stays within its size rule.
package helptext

// Description is `vmrun --help`'s text after the usage line: the network
// modes, examples, configuration, stopping, detached VMs, the guest agent
// and the exit codes.
const Description = `Boots IMAGE (qcow2 or raw) under QEMU, attaches the guest to the network the
best way this host allows, shows the guest's serial console, and on exit
(guest power-off, Ctrl-C, vmrun stop, --timeout) removes every link, file and
process it created.

NETWORK MODES (--net MODE[:INTERFACE])
   auto       pick for this host (default): see 'vmrun net plan' for the choice and why
   bridge     a tap on an existing Linux bridge (bridge:br0)
   macvtap    the guest gets its own MAC on a wired interface (macvtap:eth0)
   ipvtap     Wi-Fi: the guest shares the interface's MAC, has its own IP (ipvtap:wlan0)
   routed     the guest gets its own LAN address (leased for it by vmrun, or
              --guest-ip) on a tap routed to the uplink, with proxy ARP (and
              IPv6 by SLAAC with proxy NDP when the uplink has a /64); works on
              any uplink, Wi-Fi included, and this host reaches it (routed:wlan0)
   nat        a private bridge (vmrnat0) behind this host's address, shared by every NAT VM:
              vmrun serves DHCP and DNS, guests reach each other, --forward works
              (--nat-subnet, --resolv-conf); see docs/nat.md
   user       no privileges needed: passt when installed (the guest gets this
              host's addresses, IPv4 and IPv6), else QEMU's slirp (NAT:
              10.0.2.15, and IPv6 in fec0::/64); --forward works with both
   none       no network

EXAMPLES
   vmrun --disk debian.qcow2                          boot, network chosen automatically
   vmrun --disk ci.qcow2 --snapshot --timeout 10m --console none --serial-log ci.log
   vmrun --disk web.qcow2 --net user --forward tcp:8080:80
   vmrun --disk web.qcow2 --net nat --forward tcp:8080:80   reachable on this host's port 8080
   vmrun --disk vm.qcow2 --net bridge:br0 --mem 2G --cpus 2
   vmrun --disk vm.qcow2 --net routed:wlan0 --guest-ip 192.168.1.50/24
   vmrun --disk vm.qcow2 --dry-run                    show the plan and the QEMU command, create nothing
   vmrun --disk ci.qcow2 --snapshot --share ./build:src --exec -- /mnt/src/run-tests
                                                      boot, run the command in the guest, power off, exit with its code
   vmrun exec NAME -- uname -a                        run a command in a running VM (its guest agent)
   vmrun -d --disk vm.qcow2 --name web                start it in the background; then:
   vmrun console web   vmrun logs -f web              its serial console (Ctrl-] detaches), its console log
   vmrun ls        vmrun stop NAME        vmrun gc        vmrun net plan
   sudo vmrun setup    once: members of group vmrun may use bridge/macvtap/routed without root
   vmrun doctor        what this host offers, and how to fix what is missing

CONFIG FILE AND ENVIRONMENT
   Every option can be set in a YAML file (--config FILE; keys are the long
   option names: disk, mem, net, forward, ...) and as an environment variable
   VMRUN_<OPTION> (VMRUN_MEM=2G, VMRUN_NET=user). The command line wins over
   the environment, which wins over the file. Lists in the environment:
   VMRUN_DISK and VMRUN_FORWARD separate items with commas
   (VMRUN_DISK=a.qcow2,b.qcow2); VMRUN_QEMU_ARG holds words split as a
   shell splits them, quotes included (QEMU arguments carry commas):
   VMRUN_QEMU_ARG="-fw_cfg 'name=opt/x,string=a b'".

STOPPING
   Ctrl-C or SIGTERM presses the guest's ACPI power button and waits
   --shutdown-grace for it to power off, then tells QEMU to quit, then kills
   it. A second Ctrl-C, SIGQUIT (Ctrl-\) or 'vmrun stop --force' stops QEMU
   at once.

DETACHED VMS
   vmrun -d ... (--detach) starts the VM in the background: it prints the
   VM's name once QEMU is up and returns; a start-up failure gives the same
   message and exit code as in the foreground. The VM's supervisor runs on
   as a process of its own (its messages go to vmrun.log in the VM's runtime
   directory) and cleans up when the VM stops, as a foreground run does.
   'vmrun console NAME' attaches to its serial console (Ctrl-] detaches),
   'vmrun logs NAME [-f]' prints the console log, 'vmrun stop NAME' stops it.

GUEST AGENT, EXEC AND SHARES
   Every VM gets a QEMU guest agent channel (--agent off removes it): with
   qemu-guest-agent running in the guest, 'vmrun exec NAME -- CMD' runs CMD
   there, streaming its output, and exits with its code; --exec -- CMD does
   the same as a one-shot run (boot, wait for the agent, run, power off).
   --share HOSTDIR[:TAG][:ro] exports a directory (virtio-9p); in the guest:
   mount -t 9p -o trans=virtio,version=9p2000.L TAG /mnt. See docs/exec.md.

EXIT CODES
   With --exec: the command's exit code (128+N for signal N; 127 when it does
   not exist in the guest). vmrun's own codes keep their meaning (2 also
   when the guest agent never answered); a line "vmrun: ..." on stderr says
   that the code is vmrun's.
   0    the guest shut down by itself or on request
   1    usage or configuration error; nothing was created
   2    set-up failure (network, permissions, QEMU could not start), or the guest's network failed while it ran; everything created was removed
   3    QEMU died abnormally
   4    the guest kernel panicked
   124  --timeout expired; the VM was stopped and cleaned up`
