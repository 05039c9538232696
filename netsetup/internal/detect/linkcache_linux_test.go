package detect

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestModuleFingerprint: the names of the loaded modules, not their use
// counts or states, make the fingerprint.
func TestModuleFingerprint(t *testing.T) {
	base := "macvtap 28672 0 - Live 0x0000000000000000\nmacvlan 32768 1 macvtap, Live 0x0000000000000000\n"
	used := "macvtap 28672 3 - Live 0x0000000000000000\nmacvlan 32768 1 macvtap, Live 0xffffffffc0a00000\n"
	loaded := "ipvtap 16384 0 - Loading 0x0000000000000000\n" + base
	if moduleFingerprint([]byte(base)) != moduleFingerprint([]byte(used)) {
		t.Error("a use count changed the fingerprint")
	}
	if moduleFingerprint([]byte(base)) == moduleFingerprint([]byte(loaded)) {
		t.Error("a module load left the fingerprint alone")
	}
	if moduleFingerprint(nil) == moduleFingerprint([]byte(base)) {
		t.Error("no modules and two modules share a fingerprint")
	}
}

// TestLinkCacheFile: the answer is read back for its key only, and only
// from a file (and directory) that nobody else may write.
func TestLinkCacheFile(t *testing.T) {
	key := linkCacheKey{BootID: "b1", Modules: "m1"}
	newCache := func(t *testing.T) string {
		t.Helper()
		path := filepath.Join(t.TempDir(), "cache.json")
		if err := writeLinkCache(path, key, true, false); err != nil {
			t.Fatal(err)
		}
		return path
	}
	t.Run("hit", func(t *testing.T) {
		path := newCache(t)
		if mv, iv, ok := readLinkCache(path, key); !ok || !mv || iv {
			t.Fatalf("read back %v %v %v, want true false true", mv, iv, ok)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("cache file mode %v (%v), want 0600", fi.Mode(), err)
		}
	})
	for _, tc := range []struct {
		name   string
		key    linkCacheKey
		change func(t *testing.T, path string)
	}{
		{"another boot", linkCacheKey{BootID: "b2", Modules: "m1"}, nil},
		{"a module loaded", linkCacheKey{BootID: "b1", Modules: "m2"}, nil},
		{"no file", key, func(t *testing.T, path string) { must(t, os.Remove(path)) }},
		{"no cache", key, nil},
		{"file writable by others", key, func(t *testing.T, path string) { must(t, os.Chmod(path, 0o666)) }},
		{"directory writable by others", key, func(t *testing.T, path string) { must(t, os.Chmod(filepath.Dir(path), 0o777)) }},
		{"a symlink", key, func(t *testing.T, path string) {
			must(t, os.Rename(path, path+".real"))
			must(t, os.Symlink(path+".real", path))
		}},
		{"not JSON", key, func(t *testing.T, path string) { must(t, os.WriteFile(path, []byte("{"), 0o600)) }},
		{"another user's file", key, func(t *testing.T, path string) {
			testutil.RequireRoot(t)
			must(t, os.Chown(path, 65534, 65534))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := newCache(t)
			if tc.change != nil {
				tc.change(t, path)
			}
			if tc.name == "no cache" {
				path = ""
			}
			if mv, iv, ok := readLinkCache(path, tc.key); ok {
				t.Fatalf("read %v %v from the cache, want nothing", mv, iv)
			}
		})
	}
	t.Run("untrusted directory: not written", func(t *testing.T) {
		dir := t.TempDir()
		must(t, os.Chmod(dir, 0o777))
		if err := writeLinkCache(filepath.Join(dir, "cache.json"), key, true, true); err == nil {
			t.Fatal("written into a directory others may write")
		}
	})
}

// TestLinkTypesCached: the first start probes and keeps the answer; the
// next takes it from the file without probing (shown by an answer planted
// in the file, the opposite of the kernel's), until the key changes.
func TestLinkTypesCached(t *testing.T) {
	testutil.RequireRoot(t)
	key, ok := currentLinkCacheKey()
	if !ok {
		testutil.Skipf(t, "this kernel has no boot_id: nothing is cached")
	}
	path := filepath.Join(t.TempDir(), "cache.json")
	start := time.Now()
	mv, iv := linkTypes(path)
	probed := time.Since(start)
	var c linkCache
	b, err := os.ReadFile(path)
	if err != nil {
		// The probe itself may load macvtap or ipvtap: then the answer is
		// kept by the next start.
		mv, iv = linkTypes(path)
		if b, err = os.ReadFile(path); err != nil {
			t.Fatalf("no cache after two probes: %v", err)
		}
	}
	must(t, json.Unmarshal(b, &c))
	if c.linkCacheKey != key || c.Macvtap != mv || c.IPVtap != iv {
		t.Fatalf("cache %+v, want key %+v and the probe's answer %v %v", c, key, mv, iv)
	}
	c.Macvtap, c.IPVtap = !mv, !iv
	plant := func() {
		b, err := json.Marshal(c)
		must(t, err)
		must(t, os.WriteFile(path, b, 0o600))
	}
	plant()
	start = time.Now()
	if gmv, giv := linkTypes(path); gmv != !mv || giv != !iv {
		t.Fatalf("second start: %v %v, want the file's %v %v (no probe)", gmv, giv, !mv, !iv)
	}
	t.Logf("probe %v, cached %v", probed, time.Since(start))
	c.BootID = "another boot"
	plant()
	if gmv, giv := linkTypes(path); gmv != mv || giv != iv {
		t.Fatalf("after a reboot: %v %v, want the probe's %v %v", gmv, giv, mv, iv)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
