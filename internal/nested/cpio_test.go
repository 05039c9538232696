package nested

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

type cpioEntry struct {
	name string
	mode uint32
	data string
}

// readCPIO parses a newc archive (up to its trailer).
func readCPIO(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var entries []cpioEntry
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		if len(b) < off+110 || string(b[off:off+6]) != "070701" {
			t.Fatalf("offset %d: no newc header", off)
		}
		field := func(i int) int {
			v, err := strconv.ParseUint(string(b[off+6+8*i:off+14+8*i]), 16, 32)
			if err != nil {
				t.Fatalf("offset %d field %d: %v", off, i, err)
			}
			return int(v)
		}
		mode, size, namesize := field(1), field(6), field(11)
		name := string(b[off+110 : off+110+namesize-1])
		if b[off+110+namesize-1] != 0 {
			t.Fatalf("%s: name not NUL-terminated", name)
		}
		dataOff := align(off + 110 + namesize)
		if name == "TRAILER!!!" {
			if dataOff != len(b) {
				t.Errorf("%d bytes after the trailer", len(b)-dataOff)
			}
			return entries
		}
		entries = append(entries, cpioEntry{name, uint32(mode), string(b[dataOff : dataOff+size])})
		off = align(dataOff + size)
	}
}

func TestWritePayload(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tool")
	if err := os.WriteFile(src, []byte("odd-sized\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	files := []File{
		{Src: src, Dst: "/usr/local/bin/tool", Mode: 0o755},
		{Src: src, Dst: "/payload/conf"},
	}
	if err := writePayload(&buf, "echo hi\n", files); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range readCPIO(t, buf.Bytes()) {
		got = append(got, e.name+" "+strconv.FormatUint(uint64(e.mode), 8)+" "+strconv.Quote(e.data))
	}
	want := []string{
		`payload 40755 ""`,
		`payload/run.sh 100755 "#!/bin/sh\necho hi\n"`,
		`payload/conf 100640 "odd-sized\n"`,
		`usr 40755 ""`,
		`usr/local 40755 ""`,
		`usr/local/bin 40755 ""`,
		`usr/local/bin/tool 100755 "odd-sized\n"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("archive:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// GNU cpio, when installed, must agree.
	if cpio, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command(cpio, "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("cpio -it: %v: %s", err, out)
		}
		if n := len(strings.Fields(string(out))); n != len(want) {
			t.Errorf("cpio -it lists %d entries, want %d:\n%s", n, len(want), out)
		}
	}
}

func TestWritePayloadErrors(t *testing.T) {
	dir := t.TempDir()
	for name, f := range map[string]File{
		"relative dst": {Src: "/etc/hostname", Dst: "payload/x"},
		"missing src":  {Src: filepath.Join(dir, "nope"), Dst: "/payload/x"},
		"directory":    {Src: dir, Dst: "/payload/x"},
	} {
		if err := writePayload(&bytes.Buffer{}, "", []File{f}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestArgs(t *testing.T) {
	got := strings.Join(Args("/k", "/i", 1024), " ")
	for _, want := range []string{"-machine q35,accel=tcg", "-m 1024", "-nodefaults", "-no-reboot",
		"-serial stdio", "-kernel /k", "-initrd /i", "panic=-1"} {
		if !strings.Contains(got, want) {
			t.Errorf("Args lacks %q: %s", want, got)
		}
	}
}
