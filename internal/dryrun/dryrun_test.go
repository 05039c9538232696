package dryrun

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vmrun/vmrun/internal/config"
	"github.com/vmrun/vmrun/internal/confine"
	"github.com/vmrun/vmrun/launcher"
	"github.com/vmrun/vmrun/netsetup"
)

// TestPrint: the text form's lines and the JSON form's fields for a VM
// without a network; the QMP socket and the PID file are under root.
func TestPrint(t *testing.T) {
	vm := launcher.VM{Name: "t", QEMU: "qemu-system-x86_64", MemMiB: 256, CPUs: 1, Kernel: "/boot/vmlinuz"}
	plan := netsetup.Plan{Mode: netsetup.None, Reason: "asked for"}
	var text strings.Builder
	if err := Print(&text, false, "/run/vmrun", config.Spec{}, vm, plan, confine.QEMU{}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"network: none\n  why: asked for\n",
		"QMP socket: /run/vmrun/t/qmp.sock (the listening socket is passed to QEMU as an fd)\n",
		"QEMU command (fds 3 and up are passed by vmrun):\nqemu-system-x86_64 ",
		"/run/vmrun/t/qemu.pid",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("the text form has no %q:\n%s", want, text.String())
		}
	}
	var js strings.Builder
	if err := Print(&js, true, "/run/vmrun", config.Spec{}, vm, plan, confine.QEMU{}); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Plan      map[string]any `json:"plan"`
		Argv      []string       `json:"argv"`
		QMPSocket string         `json:"qmp_socket"`
	}
	if err := json.Unmarshal([]byte(js.String()), &got); err != nil {
		t.Fatalf("%v:\n%s", err, js.String())
	}
	if got.QMPSocket != "/run/vmrun/t/qmp.sock" || len(got.Argv) < 2 || got.Argv[0] != "qemu-system-x86_64" || got.Plan == nil {
		t.Errorf("JSON form: %+v", got)
	}
	vm.MemMiB = 0
	if err := Print(&text, false, "/run/vmrun", config.Spec{}, vm, plan, confine.QEMU{}); err == nil {
		t.Error("no error for a VM QEMU cannot be built for")
	}
}
