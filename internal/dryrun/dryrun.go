// Package dryrun is vmrun --dry-run: the network plan and the exact QEMU
// command line of a run, as text or JSON (docs/json.md), with the files
// QEMU would be passed as placeholders. It creates nothing.
package dryrun

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/vmrun/vmrun/internal/cloudinit"
	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/internal/exitcode"
	"github.com/vmrun/vmrun/internal/netplan"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// Print writes the plan and the exact QEMU command line of a run of vm
// (--dry-run) to out, as JSON with asJSON, creating nothing. root is the
// runtime directories' root.
func Print(out io.Writer, asJSON bool, root string, spec config.Spec, vm launcher.VM, plan netsetup.Plan, conf confine.QEMU) error {
	sock := filepath.Join(root, vm.Name, "qmp.sock")
	if conf.User == nil {
		vm.PIDFile = filepath.Join(root, vm.Name, "qemu.pid")
	} else {
		// As a real run: disks as fdsets (placeholders; the backing chain
		// is not followed here) and the runtime directory's label.
		vm.RunDir = filepath.Join(root, vm.Name)
		if vm.Kernel != "" {
			vm.BootFiles = &launcher.BootFiles{}
		}
		for i := range vm.Disks {
			vm.Disks[i].Files = &launcher.DiskFiles{Image: []*os.File{nil}}
			if !vm.Snapshot {
				vm.Disks[i].Files.Image = append(vm.Disks[i].Files.Image, nil)
			}
		}
	}
	if vm.Snapshot {
		for i := range vm.Disks {
			vm.Disks[i].Overlay = []*os.File{nil, nil} // as confine makes them
		}
	}
	vm.NIC = netplan.NIC(netsetup.Preview(plan))
	if netplan.Hotplug(spec.NetMode, vm.NIC) {
		// As the run's VM ends up once its NIC is plugged in (LateNIC).
		vm.NIC.Hotplug = true
	}
	if spec.CloudInit.Seed {
		vm.Seed = &launcher.Seed{Path: filepath.Join(root, vm.Name, cloudinit.SeedFile)}
		if conf.User != nil {
			vm.Seed.Files = []*os.File{nil}
		}
	}
	if spec.Agent {
		vm.Agent = &launcher.AgentPorts{} // placeholders: fds passed by vmrun
	}
	cl, err := launcher.Build(vm)
	if err != nil {
		return exitcode.Usagef("%w", err)
	}
	argv := append([]string{cl.Path}, cl.Args...)
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Plan      netsetup.Plan `json:"plan"`
			Argv      []string      `json:"argv"`
			QMPSocket string        `json:"qmp_socket"`
			QEMUUser  string        `json:"qemu_user"`
		}{plan, argv, sock, conf.Describe()})
	}
	fmt.Fprintf(out, "network: %s", plan.Mode)
	if plan.Parent != "" {
		fmt.Fprintf(out, " on %s", plan.Parent)
	}
	if plan.Passt != "" {
		fmt.Fprintf(out, " through passt (%s)", plan.Passt)
	}
	if plan.MAC != nil {
		fmt.Fprintf(out, ", guest MAC %s", plan.MAC)
	}
	fmt.Fprintf(out, "\n  why: %s\n", plan.Reason)
	fmt.Fprintf(out, "QMP socket: %s (the listening socket is passed to QEMU as an fd)\n", sock)
	fmt.Fprintf(out, "QEMU runs as: %s\n", conf.Describe())
	fmt.Fprintf(out, "QEMU command (fds 3 and up are passed by vmrun):\n%s\n", launcher.Quote(argv))
	if netplan.LateNIC(spec.NetMode, plan) {
		fmt.Fprintf(out, "(a run starts QEMU without the NIC's -netdev and -device, while it sets the network up, and plugs them in over QMP before the guest runs: the same VM)\n")
	}
	return nil
}
