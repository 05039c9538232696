package kvmcheck

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWorksKeepsTheAnswer: the first call probes and keeps a final
// answer; later calls with the same key read it; another key, an answer
// that is not final, or an unkeyed host probe again.
func TestWorksKeepsTheAnswer(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, CacheFile)
	probes := 0
	probe := func(why string, final bool) func() (string, bool) {
		return func() (string, bool) { probes++; return why, final }
	}
	k := key{BootID: "b1", QEMU: "/usr/bin/qemu dev 1 ino 2", KVM: "dev 5 ino 9", Args: "-machine q35"}
	broken := "error: failed to set MSR 0x10a to 0x69"
	if why := works(path, k, true, probe(broken, true)); why != broken || probes != 1 {
		t.Fatalf("first call: %q after %d probes", why, probes)
	}
	if why := works(path, k, true, probe("", true)); why != broken || probes != 1 {
		t.Fatalf("second call: %q after %d probes, want the kept answer", why, probes)
	}
	other := k
	other.QEMU = "/usr/bin/qemu dev 1 ino 3" // an upgraded QEMU
	if why := works(path, other, true, probe("", true)); why != "" || probes != 2 {
		t.Fatalf("another QEMU: %q after %d probes", why, probes)
	}
	other.BootID = "b2"
	if why := works(path, other, true, probe("it did not quit within 10s", false)); why == "" || probes != 3 {
		t.Fatalf("timed-out probe: %q after %d probes", why, probes)
	}
	if why := works(path, other, true, probe("", true)); why != "" || probes != 4 {
		t.Fatalf("after a timed-out probe: %q after %d probes, want a new probe", why, probes)
	}
	if why := works(path, other, false, probe(broken, true)); why != broken || probes != 5 {
		t.Fatalf("unkeyed: %q after %d probes", why, probes)
	}
	if why, ok := read(path, other); !ok || why != "" {
		t.Fatalf("an unkeyed answer replaced the kept one: %q %v", why, ok)
	}
}

// TestCacheTrusted: a file others may write, or in a directory others may
// write, is neither read nor written.
func TestCacheTrusted(t *testing.T) {
	k := key{BootID: "b1"}
	dir := t.TempDir()
	path := filepath.Join(dir, CacheFile)
	if err := write(path, k, "broken"); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, ok := read(path, k); ok {
		t.Error("read a file others may write")
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := write(filepath.Join(open, CacheFile), k, ""); err == nil {
		t.Error("wrote into a directory others may write")
	}
	if err := write(filepath.Join(dir, "missing", CacheFile), k, ""); err == nil {
		t.Error("wrote into a missing directory")
	}
}

// TestKeyFollowsTheBinary: replacing the QEMU binary changes the key.
func TestKeyFollowsTheBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "qemu")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	k1, _ := currentKey(bin)
	tmp := bin + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	k2, _ := currentKey(bin)
	if k1.QEMU == "" || k1.QEMU == k2.QEMU || k1.BootID != k2.BootID || k1.Args != k2.Args {
		t.Errorf("keys before and after replacing %s: %+v, %+v", bin, k1, k2)
	}
}
