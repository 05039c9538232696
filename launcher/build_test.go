package launcher

import (
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func mac(t *testing.T) net.HardwareAddr {
	m, err := net.ParseMAC("52:54:00:12:34:56")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func base(t *testing.T) VM {
	return VM{
		Name: "web", QEMU: "/usr/bin/qemu-system-x86_64", MemMiB: 512, CPUs: 1,
		Disks:   []Disk{{Path: "/vm/web,1.qcow2", Format: "qcow2"}},
		Console: ConsoleSerial,
	}
}

// placeholders returns n nil files: Build only counts them.
func placeholders(n int) []*os.File { return make([]*os.File, n) }

func TestBuildGolden(t *testing.T) {
	cases := map[string]func(*VM){
		"none":    func(*VM) {},
		"kvm-gui": func(vm *VM) { vm.KVM = true; vm.Console = ConsoleGUI; vm.CPUs = 4; vm.MemMiB = 2048 },
		"tap-vhost": func(vm *VM) {
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), VhostFiles: placeholders(1), MAC: mac(t)}
		},
		"tap-novhost": func(vm *VM) {
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), MAC: mac(t), MTU: 1400}
			vm.PIDFile = "/run/vmrun/web/qemu.pid"
		},
		"tap-hotplug": func(vm *VM) {
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), VhostFiles: placeholders(1), MAC: mac(t), Hotplug: true}
		},
		"tap-multiqueue": func(vm *VM) {
			vm.CPUs = 2
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(2), VhostFiles: placeholders(2), MAC: mac(t)}
		},
		"user-forward": func(vm *VM) {
			vm.NIC = &NIC{Backend: "user", MAC: mac(t), Options: []string{"hostfwd=tcp::2222-:22"}}
			vm.Seed = &Seed{Path: "/run/vmrun/web/cidata.iso"}
		},
		"stream-fd": func(vm *VM) {
			vm.NIC = &NIC{Backend: "stream", Files: placeholders(1), MAC: mac(t)}
		},
		"agent-shares": func(vm *VM) {
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), MAC: mac(t)}
			vm.Agent = &AgentPorts{}
			vm.Shares = []Share{{Path: "/src,x", Tag: "src"}, {Path: "/data", Tag: "data", ReadOnly: true}}
		},
		"confined-fdsets": func(vm *VM) {
			// As root: disks and their backing chain as fdsets, the
			// runtime directory's label, the seccomp sandbox; the tap
			// keeps fd 3 and the fdsets come after the monitor.
			vm.Sandbox = true
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), MAC: mac(t)}
			vm.Disks[0].Files = &DiskFiles{Image: placeholders(2), Backing: []BackingFile{
				{Path: "/vm/base,1.qcow2", Format: "qcow2"}, {Path: "/vm/root.img", Format: "raw"},
			}}
			vm.Disks = append(vm.Disks, Disk{Path: "/vm/data.img", Format: "raw", Files: &DiskFiles{Image: placeholders(2)}})
			vm.RunDir = "/run/vmrun/web"
			vm.Seed = &Seed{Path: "/run/vmrun/web/cidata.iso", Files: placeholders(1)}
		},
		"snapshot-confined": func(vm *VM) {
			// The overlay is the drive; the image and its chain follow
			// one level down.
			vm.Snapshot, vm.Sandbox, vm.RunDir = true, true, "/run/vmrun/web"
			vm.Disks[0].Files = &DiskFiles{Image: placeholders(1), Backing: []BackingFile{{Path: "/vm/base.img", Format: "raw"}}}
			vm.Disks[0].Overlay = placeholders(2)
		},
		"snapshot-kernel-extra": func(vm *VM) {
			vm.Snapshot = true
			vm.Disks[0].Overlay = placeholders(2)
			vm.Kernel, vm.Initrd, vm.Append = "/k/vmlinuz", "/k/initrd", "console=ttyS0 quiet"
			vm.Console = ConsoleNone
			vm.ExtraArgs = []string{"-device", "virtio-rng-pci"}
		},
	}
	for name, mod := range cases {
		t.Run(name, func(t *testing.T) {
			vm := base(t)
			mod(&vm)
			cl, err := Build(vm)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(append([]string{cl.Path}, cl.Args...), "\n") + "\n"
			golden := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./launcher -update)", err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s:\n got:\n%s\nwant:\n%s", golden, got, want)
			}
			// fds: the NIC's queue fds come first (fd=3), then vhost, then
			// QMP, then the agent's three ports, then the fdsets' files.
			wantFiles := 1
			if vm.NIC != nil {
				wantFiles += len(vm.NIC.Files) + len(vm.NIC.VhostFiles)
			}
			if vm.Agent != nil {
				wantFiles += 3
			}
			for _, d := range vm.Disks {
				wantFiles += len(d.Overlay)
				if d.Files != nil {
					wantFiles += len(d.Files.Image) + len(d.Files.Backing)
				}
			}
			if vm.RunDir != "" {
				wantFiles++
			}
			if vm.Seed != nil {
				wantFiles += len(vm.Seed.Files)
			}
			if len(cl.ExtraFiles) != wantFiles {
				t.Errorf("ExtraFiles = %d, want %d", len(cl.ExtraFiles), wantFiles)
			}
		})
	}
}

func TestBuildInvariants(t *testing.T) {
	vm := base(t)
	vm.NIC = &NIC{Backend: "tap", Files: placeholders(1), VhostFiles: placeholders(1), MAC: mac(t)}
	cl, err := Build(vm)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(cl.Args, " ")
	for _, want := range []string{"-nodefaults", " -S ", "-device pvpanic", "tap,id=net0,fd=3,vhost=on,vhostfd=4", "mac=52:54:00:12:34:56", "fd=5,server=on,wait=off", "file=/vm/web,,1.qcow2"} {
		if !strings.Contains(" "+joined+" ", want) {
			t.Errorf("argv lacks %q:\n%s", want, joined)
		}
	}
}

func TestBuildErrors(t *testing.T) {
	cases := map[string]struct {
		mod  func(*VM)
		want error
	}{
		"no boot":     {func(vm *VM) { vm.Disks = nil }, ErrNoBoot},
		"no memory":   {func(vm *VM) { vm.MemMiB = 0 }, ErrBadMemory},
		"tap no fds":  {func(vm *VM) { vm.NIC = &NIC{Backend: "tap", MAC: mac(t)} }, ErrBadNIC},
		"bad backend": {func(vm *VM) { vm.NIC = &NIC{Backend: "vde", MAC: mac(t)} }, ErrBadNIC},
		"no mac":      {func(vm *VM) { vm.NIC = &NIC{Backend: "user"} }, ErrBadNIC},
		"vhost count": {func(vm *VM) {
			vm.NIC = &NIC{Backend: "tap", Files: placeholders(2), VhostFiles: placeholders(1), MAC: mac(t)}
		}, ErrBadNIC},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			vm := base(t)
			c.mod(&vm)
			if _, err := Build(vm); !errors.Is(err, c.want) {
				t.Fatalf("Build: %v, want %v", err, c.want)
			}
		})
	}
}

func TestQuote(t *testing.T) {
	got := Quote([]string{"qemu", "-append", "console=ttyS0 quiet", "it's", ""})
	want := `qemu -append 'console=ttyS0 quiet' 'it'\''s' ''`
	if got != want {
		t.Fatalf("Quote = %s, want %s", got, want)
	}
}
