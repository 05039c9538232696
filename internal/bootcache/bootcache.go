// Package bootcache keeps a probe's answer in a small JSON file under
// vmrun's runtime root, so that only the first start after a boot (or after
// whatever else the caller's key names) pays for the probe. A file is used
// only when it and its directory belong to this user (or the directory to
// root) and nobody else may write them; it is replaced whole (a temporary
// file renamed over it), so a reader never sees half an answer.
package bootcache

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"syscall"
)

// BootID is this boot's id, "" when it cannot be read (then nothing may
// be cached: the boot cannot be told apart).
func BootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// Read unmarshals the file at path into v; false when there is none, it or
// its directory is not trusted, or it does not hold v's JSON.
func Read(path string, v any) bool {
	if path == "" || !trusted(filepath.Dir(path), true) || !trusted(path, false) {
		return false
	}
	b, err := os.ReadFile(path)
	return err == nil && json.Unmarshal(b, v) == nil
}

// Write keeps v's JSON in path, when path's directory exists and is
// trusted; the file is readable by its owner only.
func Write(path string, v any) error {
	dir := filepath.Dir(path)
	if !trusted(dir, true) {
		return errors.New("untrusted directory")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+"-*.tmp") // mode 0600
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
	}
	return err
}

// trusted reports whether path (a directory when dir, else a regular
// file, not a symlink) belongs to this process's user — or, for a
// directory, to root — and only its owner may write it.
func trusted(path string, dir bool) bool {
	fi, err := os.Lstat(path)
	if err != nil || fi.IsDir() != dir || (!dir && !fi.Mode().IsRegular()) {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || fi.Mode().Perm()&0o022 != 0 {
		return false
	}
	euid := uint32(os.Geteuid())
	return st.Uid == euid || (dir && st.Uid == 0)
}
