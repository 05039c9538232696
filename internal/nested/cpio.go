package nested

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioWriter writes a cpio archive in the "newc" format, the one the kernel
// unpacks into its rootfs (Documentation/driver-api/early-userspace/
// buffer-format.rst). Every entry is owned by root; the parent directories
// of each file are written before it (once).
type cpioWriter struct {
	w    io.Writer
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCPIOWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, ino: 1, dirs: map[string]bool{"/": true}}
}

// header writes one entry's header and name, padded to 4 bytes.
func (c *cpioWriter) header(name string, mode uint32, nlink uint32, size int64) {
	if c.err != nil {
		return
	}
	if size > 0xffffffff {
		c.err = fmt.Errorf("cpio: %s is larger than 4 GiB", name)
		return
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad(int64(len(hdr) + len(name) + 1))
}

func (c *cpioWriter) write(p []byte) {
	if c.err == nil {
		_, c.err = c.w.Write(p)
	}
}

// pad writes the zeros that align an n-byte record to 4 bytes.
func (c *cpioWriter) pad(n int64) {
	if r := n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

// mkdirAll writes directory entries for dir and its missing parents.
func (c *cpioWriter) mkdirAll(dir string) {
	if c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.header(strings.TrimPrefix(dir, "/"), 0o040755, 2, 0)
}

// file writes a regular file at the absolute path dst with the given
// permission bits, its parents first.
func (c *cpioWriter) file(dst string, perm os.FileMode, size int64, data io.Reader) {
	dst = path.Clean(dst)
	c.mkdirAll(path.Dir(dst))
	c.header(strings.TrimPrefix(dst, "/"), 0o100000|uint32(perm.Perm()), 1, size)
	if c.err != nil {
		return
	}
	n, err := io.Copy(c.w, io.LimitReader(data, size))
	if err == nil && n != size {
		err = fmt.Errorf("cpio: %s: size changed while writing (%d of %d bytes)", dst, n, size)
	}
	if err != nil {
		c.err = err
		return
	}
	c.pad(size)
}

// close writes the trailer and returns the first error.
func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 1, 0)
	return c.err
}

// writePayload writes the payload archive: /payload/run.sh from script and
// every file of files (read from the host).
func writePayload(w io.Writer, script string, files []File) error {
	c := newCPIOWriter(w)
	body := script
	if !strings.HasPrefix(body, "#!") {
		body = "#!/bin/sh\n" + body
	}
	c.file("/payload/run.sh", 0o755, int64(len(body)), strings.NewReader(body))
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Dst < sorted[j].Dst })
	for _, f := range sorted {
		if err := addFile(c, f); err != nil {
			return err
		}
	}
	return c.close()
}

func addFile(c *cpioWriter, f File) error {
	if !path.IsAbs(f.Dst) {
		return fmt.Errorf("payload file %s: destination %q is not an absolute path", f.Src, f.Dst)
	}
	in, err := os.Open(f.Src)
	if err != nil {
		return fmt.Errorf("payload file: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("payload file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("payload file %s: not a regular file", f.Src)
	}
	mode := f.Mode
	if mode == 0 {
		mode = st.Mode()
	}
	c.file(f.Dst, mode, st.Size(), in)
	if c.err != nil {
		return fmt.Errorf("payload file %s: %w", f.Src, c.err)
	}
	return nil
}
