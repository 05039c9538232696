package hostsetup

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestFileCapsEncoding: the xattr is what setcap writes for
// cap_net_admin,cap_net_raw,cap_mknod+p, the capabilities setup grants.
func TestFileCapsEncoding(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(p, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := setFileCaps(p, 12, 13, 27); err != nil {
		testutil.Skipf(t, "no security xattrs here (root and a file system with them are needed): %v", err)
	}
	b := make([]byte, 64)
	n, err := unix.Getxattr(p, "security.capability", b)
	if err != nil || n != 20 {
		t.Fatalf("xattr: %d bytes, %v", n, err)
	}
	if binary.LittleEndian.Uint32(b) != vfsCapRevision2 || binary.LittleEndian.Uint32(b[4:]) != 1<<12|1<<13|1<<27 ||
		binary.LittleEndian.Uint32(b[8:]) != 0 || binary.LittleEndian.Uint32(b[12:]) != 0 {
		t.Errorf("xattr % x", b[:n])
	}
}

// TestWriteACL: a new allow-list names the interfaces; an existing one is
// kept as it is.
func TestWriteACL(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "vmrun", "acl")
	wrote, err := WriteACL(p, []string{"br0", "eth0"})
	if err != nil || !wrote {
		t.Fatalf("wrote %v, %v", wrote, err)
	}
	b, err := os.ReadFile(p)
	if err != nil || !strings.HasSuffix(string(b), "\nallow br0\nallow eth0\n") {
		t.Fatalf("%q, %v", b, err)
	}
	if err := os.WriteFile(p, []byte("allow all\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if wrote, err := WriteACL(p, []string{"wlan0"}); err != nil || wrote {
		t.Fatalf("existing ACL: wrote %v, %v", wrote, err)
	}
	if b, _ := os.ReadFile(p); string(b) != "allow all\n" {
		t.Fatalf("existing ACL changed: %q", b)
	}
}

// TestWriteNMDropIn: the drop-in is written only where NetworkManager's
// configuration directory exists, and keeps vmr* links unmanaged.
func TestWriteNMDropIn(t *testing.T) {
	if p, err := WriteNMDropIn(filepath.Join(t.TempDir(), "none")); p != "" || err != nil {
		t.Fatalf("without NetworkManager: %q, %v", p, err)
	}
	p, err := WriteNMDropIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(p); err != nil || !strings.Contains(string(b), "unmanaged-devices+=interface-name:vmr*") {
		t.Fatalf("%s: %q, %v", p, b, err)
	}
}
