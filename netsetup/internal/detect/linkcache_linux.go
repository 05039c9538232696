package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"

	"github.com/vmrun/vmrun/internal/bootcache"
)

// The kernel's answer to which link types it can create (Caps.Macvtap,
// Caps.IPVtap) changes only when a module is loaded or unloaded, or at
// boot; probing it costs a throwaway namespace and a few links on every
// start. So Host keeps the answer in a small file (the cache path it is
// given, under vmrun's runtime root), keyed by the boot and the list of
// loaded modules, and probes again only when the key differs. The file is
// used only when it and its directory belong to this user (or the
// directory to root) and nobody else may write them; it is written only
// after a probe in the throwaway namespace that a module load did not
// overlap.

// linkCacheKey says which kernel, in which state, an answer is for.
type linkCacheKey struct {
	BootID  string `json:"boot_id"` // /proc/sys/kernel/random/boot_id
	Modules string `json:"modules"` // moduleFingerprint
}

// linkCache is the file's content.
type linkCache struct {
	linkCacheKey
	Macvtap bool `json:"macvtap"`
	IPVtap  bool `json:"ipvtap"`
}

// currentLinkCacheKey reads the key of the running kernel; ok is false when
// the boot cannot be told apart (no boot_id): nothing may be cached then.
func currentLinkCacheKey() (k linkCacheKey, ok bool) {
	k.BootID = bootcache.BootID()
	mods, err := os.ReadFile("/proc/modules")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return k, false
	}
	// No /proc/modules: a kernel without loadable modules.
	k.Modules = moduleFingerprint(mods)
	return k, k.BootID != ""
}

// moduleFingerprint digests the names of the loaded modules, in the
// kernel's order, from /proc/modules; not their use counts or states,
// which change when links are made.
func moduleFingerprint(procModules []byte) string {
	h := sha256.New()
	for line := range bytes.Lines(procModules) {
		name, _, _ := bytes.Cut(line, []byte(" "))
		h.Write(bytes.TrimSpace(name))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// readLinkCache returns the answer kept in path for key; ok is false when
// there is none, it is for another key, or the file is not trusted.
func readLinkCache(path string, key linkCacheKey) (macvtap, ipvtap, ok bool) {
	var c linkCache
	if !bootcache.Read(path, &c) || c.linkCacheKey != key {
		return false, false, false
	}
	return c.Macvtap, c.IPVtap, true
}

// writeLinkCache keeps the answer for key in path, when path's directory
// exists and is trusted.
func writeLinkCache(path string, key linkCacheKey, macvtap, ipvtap bool) error {
	return bootcache.Write(path, linkCache{linkCacheKey: key, Macvtap: macvtap, IPVtap: ipvtap})
}
