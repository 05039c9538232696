// Package kvmcheck tells whether KVM works on this host with the CPU model
// vmrun gives QEMU, probing once per boot: a /dev/kvm that opens may still
// be unusable (nested virtualization without the CPU features QEMU's
// -cpu host needs makes QEMU abort as the vCPUs are reset). The probe
// (launcher.ProbeKVM) starts QEMU, which costs tens of milliseconds, so
// its answer is kept in the runtime root (CacheFile), keyed by the boot,
// the QEMU binary, the /dev/kvm device node and the probe's arguments; a
// module reload recreates /dev/kvm and a QEMU upgrade replaces the binary,
// either of which makes the next start probe again. The file is used only
// when it and its directory belong to this user (or the directory to
// root) and nobody else may write them, as netsetup's probe cache is.
package kvmcheck

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vmrun/vmrun/internal/bootcache"
	"github.com/vmrun/vmrun/launcher"
)

// CacheFile is the name, under vmrun's runtime root, of the file keeping
// the probe's answer for this boot.
const CacheFile = ".kvm-probe.json"

// Timeout bounds one probe: QEMU starts and quits in well under a second
// even on a loaded host; one that does not is not a usable KVM either (and
// the answer is not kept).
const Timeout = 10 * time.Second

// key says which boot, QEMU, /dev/kvm and probe an answer is for.
type key struct {
	BootID string `json:"boot_id"` // /proc/sys/kernel/random/boot_id
	QEMU   string `json:"qemu"`    // path and identity (fileID)
	KVM    string `json:"kvm"`     // /dev/kvm's identity (fileID)
	Args   string `json:"args"`    // launcher.KVMProbeArgs
}

// cache is the file's content: Why is "" when KVM works.
type cache struct {
	key
	Why string `json:"why"`
}

// Works reports whether KVM works with qemu: "" when it does (or when it
// cannot be told: no /dev/kvm, which launcher.KVMUsable reports), else
// QEMU's reason. It reads the answer kept under root for this boot, or
// probes and keeps the answer there.
func Works(root, qemu string) string {
	k, keyed := currentKey(qemu)
	return works(filepath.Join(root, CacheFile), k, keyed, func() (string, bool) { return launcher.ProbeKVM(qemu, Timeout) })
}

// works returns the answer kept in path for k, when keyed, or probe's,
// which it keeps there when it is final.
func works(path string, k key, keyed bool, probe func() (why string, final bool)) string {
	if keyed {
		if why, ok := read(path, k); ok {
			return why
		}
	}
	why, final := probe()
	if keyed && final {
		_ = write(path, k, why) // a cache: a failure costs the next start a probe
	}
	return why
}

// currentKey returns the key for qemu now; ok is false when the boot, the
// binary or /dev/kvm cannot be told apart: nothing may be cached then.
func currentKey(qemu string) (k key, ok bool) {
	k.BootID = bootcache.BootID()
	abs, err := filepath.Abs(qemu)
	if err != nil {
		return k, false
	}
	qid, qok := fileID(abs)
	kid, kok := fileID("/dev/kvm")
	k.QEMU, k.KVM = abs+" "+qid, kid
	k.Args = strings.Join(launcher.KVMProbeArgs(), " ")
	return k, k.BootID != "" && qok && kok
}

// fileID names the file at path (following symlinks, as exec does): its
// device, inode, size, modification and change times, or for a device
// node its device number in place of the size.
func fileID(path string) (string, bool) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	return fmt.Sprintf("dev %d ino %d size %d rdev %d mtime %d.%09d ctime %d.%09d", st.Dev, st.Ino, st.Size, st.Rdev,
		st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec), true
}

// read returns the answer kept in path for k; ok is false when there is
// none, it is for another key, or the file is not trusted.
func read(path string, k key) (why string, ok bool) {
	var c cache
	if !bootcache.Read(path, &c) || c.key != k {
		return "", false
	}
	return c.Why, true
}

// write keeps the answer for k in path, when path's directory exists and
// is trusted.
func write(path string, k key, why string) error {
	return bootcache.Write(path, cache{key: k, Why: why})
}
