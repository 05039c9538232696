package privdrop

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vmrun/vmrun/internal/testutil"
)

var nobody = User{Name: "nobody", UID: Nobody, GID: Nobody, From: FromNobody}

// TestOpenAsUser: as root, Open checks the user's rights, not root's: a
// 0600 file and a readable file in a 0700 directory are refused, a file
// the user may read is opened; the calling thread keeps root's rights.
func TestOpenAsUser(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir() // 0700, root's
	pub, err := os.MkdirTemp("", "privdrop")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(pub) })
	if err := os.Chmod(pub, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]os.FileMode{
		filepath.Join(pub, "secret"): 0o600,
		filepath.Join(dir, "hidden"): 0o644,
		filepath.Join(pub, "public"): 0o644,
	}
	for p, m := range files {
		if err := os.WriteFile(p, []byte("x"), m); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{filepath.Join(pub, "secret"), filepath.Join(dir, "hidden")} {
		if f, err := nobody.Open(p, os.O_RDONLY); !errors.Is(err, os.ErrPermission) {
			if f != nil {
				f.Close()
			}
			t.Errorf("nobody opened %s (err %v)", p, err)
		}
	}
	f, err := nobody.Open(filepath.Join(pub, "public"), os.O_RDONLY)
	if err != nil {
		t.Fatalf("nobody could not open a public file: %v", err)
	}
	f.Close()
	if f, err := nobody.Open(filepath.Join(pub, "public"), os.O_RDWR); !errors.Is(err, os.ErrPermission) {
		if f != nil {
			f.Close()
		}
		t.Errorf("nobody opened root's 0644 file for writing (err %v)", err)
	}
	// Root's own rights are untouched.
	f, err = os.Open(filepath.Join(pub, "secret"))
	if err != nil {
		t.Fatalf("root lost its rights: %v", err)
	}
	f.Close()
	if err := nobody.Access(pub, unix.R_OK|unix.X_OK); err != nil {
		t.Errorf("Access(%s, r-x): %v", pub, err)
	}
	for _, c := range []struct {
		path string
		mode uint32
	}{{dir, unix.R_OK}, {pub, unix.W_OK}, {filepath.Join(pub, "secret"), unix.R_OK}} {
		if err := nobody.Access(c.path, c.mode); !errors.Is(err, os.ErrPermission) {
			t.Errorf("Access(%s, %o) as nobody: %v", c.path, c.mode, err)
		}
	}
}

// TestConfineExec starts a process the way the launcher starts QEMU — on a
// locked thread after Confine, with the user's Credential — and reads its
// /proc status: the user's ids, no capability in any set, no_new_privs.
func TestConfineExec(t *testing.T) {
	testutil.RequireRoot(t)
	cat := testutil.RequireCmd(t, "cat")
	type result struct {
		out []byte
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: Confine's changes die with the thread
		if err := Confine(true); err != nil {
			c <- result{err: err}
			return
		}
		cmd := exec.Command(cat, "/proc/self/status")
		u := nobody.WithGroup(4321)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: u.Credential()}
		out, err := cmd.Output()
		c <- result{out, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	want := map[string]string{
		"Uid": "65534\t65534\t65534\t65534", "Gid": "65534\t65534\t65534\t65534", "Groups": "4321",
		"CapInh": "0000000000000000", "CapPrm": "0000000000000000", "CapEff": "0000000000000000",
		"CapBnd": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1",
	}
	got := map[string]string{}
	for _, l := range strings.Split(string(r.out), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok {
			got[k] = strings.TrimSpace(v)
		}
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
	// The test process itself kept everything: only the dead thread changed.
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(self), "NoNewPrivs:\t0") || strings.Contains(string(self), "CapBnd:\t0000000000000000") {
		t.Errorf("Confine leaked into the process:\n%s", self)
	}
}
