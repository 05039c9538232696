package bootcache

import (
	"os"
	"path/filepath"
	"testing"
)

type answer struct {
	Key string `json:"key"`
	N   int    `json:"n"`
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "probe.json")
	if err := Write(path, answer{"k", 3}); err != nil {
		t.Fatal(err)
	}
	var got answer
	if !Read(path, &got) || got != (answer{"k", 3}) {
		t.Fatalf("read %+v", got)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, %v; want 0600", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// TestUntrusted: nothing is read from, or written to, a place someone
// else could have written.
func TestUntrusted(t *testing.T) {
	var v answer
	if Read("", &v) || Read(filepath.Join(t.TempDir(), "none.json"), &v) {
		t.Error("read an answer that is not there")
	}
	open := t.TempDir()
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := Write(filepath.Join(open, "probe.json"), answer{}); err == nil {
		t.Error("wrote into a world-writable directory")
	}
	if err := Write(filepath.Join(t.TempDir(), "missing", "probe.json"), answer{}); err == nil {
		t.Error("wrote into a directory that does not exist")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "probe.json")
	if err := Write(path, answer{"k", 1}); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o620); err != nil {
		t.Fatal(err)
	}
	if Read(path, &v) {
		t.Error("read a group-writable file")
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.json")
	if err := os.Symlink(path, link); err != nil {
		t.Fatal(err)
	}
	if Read(link, &v) {
		t.Error("read through a symlink")
	}
	if err := os.WriteFile(path, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if Read(path, &v) {
		t.Error("read a file that is not the answer's JSON")
	}
}
