package qmp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// step is one line of a recorded QMP transcript: "-> " what the client
// sent ("[fd]" at the end: with one fd by SCM_RIGHTS), "<- " what QEMU
// answered or announced.
type step struct {
	send bool // the client's
	fd   bool
	line string
}

func readTranscript(t *testing.T, name string) []step {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var steps []step
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		st := step{send: strings.HasPrefix(l, "-> "), line: l[3:]}
		if st.send && strings.HasSuffix(st.line, " [fd]") {
			st.fd, st.line = true, strings.TrimSuffix(st.line, " [fd]")
		}
		steps = append(steps, st)
	}
	return steps
}

// replay serves one connection as the transcript's QEMU: each client
// line must match the next "->" (as JSON, fd included); the "<-" lines
// after it are sent back. It reports the first mismatch on errc.
func replay(conn *net.UnixConn, steps []step, errc chan<- error) {
	defer conn.Close()
	var pending []byte
	var pendingFD bool
	readLine := func() (string, bool, error) {
		for {
			if i := bytes.IndexByte(pending, '\n'); i >= 0 {
				l, fd := string(pending[:i]), pendingFD
				pending, pendingFD = pending[i+1:], false
				return l, fd, nil
			}
			buf, oob := make([]byte, 4096), make([]byte, 64)
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				return "", false, err
			}
			if oobn > 0 {
				msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
				for _, m := range msgs {
					fds, _ := syscall.ParseUnixRights(&m)
					for _, fd := range fds {
						syscall.Close(fd)
						pendingFD = true
					}
				}
			}
			pending = append(pending, buf[:n]...)
		}
	}
	for i, st := range steps {
		if !st.send {
			if _, err := conn.Write([]byte(st.line + "\n")); err != nil {
				errc <- err
				return
			}
			continue
		}
		got, fd, err := readLine()
		if err != nil {
			errc <- err
			return
		}
		if !sameCommand(got, st.line) || fd != st.fd {
			errc <- &mismatch{i, got, fd, st}
			return
		}
	}
	errc <- nil
}

type mismatch struct {
	i     int
	got   string
	gotFD bool
	want  step
}

func (m *mismatch) Error() string {
	return fmt.Sprintf("transcript step %d: want %s (fd %v)\n  got %s (fd %v)", m.i, m.want.line, m.want.fd, m.got, m.gotFD)
}

// sameCommand compares two QMP commands as JSON (absent and empty
// arguments are the same).
func sameCommand(a, b string) bool {
	var x, y struct {
		Execute   string         `json:"execute"`
		Arguments map[string]any `json:"arguments"`
	}
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	if len(x.Arguments) == 0 && len(y.Arguments) == 0 {
		return x.Execute == y.Execute
	}
	return x.Execute == y.Execute && reflect.DeepEqual(x.Arguments, y.Arguments)
}

// TestNICVerbsAgainstTranscript drives the NIC verbs through a NIC
// replacement as QEMU 7.2 answered it (recorded from a real run: tap fd
// passed with getfd, new netdev, device_del with its two DEVICE_DELETED
// events, device_add on the free root port, netdev_del of the old one).
func TestNICVerbsAgainstTranscript(t *testing.T) {
	steps := readTranscript(t, "swap-nic.transcript")
	path := filepath.Join(t.TempDir(), "qmp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	errc := make(chan error, 1)
	go func() {
		conn, err := ln.AcceptUnix()
		if err != nil {
			errc <- err
			return
		}
		replay(conn, steps, errc)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Connect(ctx, path, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tap, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			select {
			case rerr := <-errc:
				t.Fatalf("%s: %v (the fake QEMU: %v)", what, err, rerr)
			default:
				t.Fatalf("%s: %v", what, err)
			}
		}
	}
	must("getfd", c.GetFD(ctx, "net1-q0", tap))
	must("netdev_add", c.NetdevAdd(ctx, Args{"type": "tap", "id": "net1", "fd": "net1-q0", "vhost": false}))
	must("device_del", c.DeviceDel(ctx, "nic0"))
	awaitDeleted(ctx, t, c, "nic0")
	must("device_add", c.DeviceAdd(ctx, Args{"driver": "virtio-net-pci", "id": "nic1", "netdev": "net1",
		"bus": "vmrun-rp1", "mac": "52:54:00:12:34:56", "romfile": ""}))
	must("netdev_del", c.NetdevDel(ctx, "net0"))
	select {
	case err := <-errc:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the fake QEMU did not see the whole transcript")
	}
}

// awaitDeleted reads events until the DEVICE_DELETED naming id.
func awaitDeleted(ctx context.Context, t *testing.T, c *Client, id string) {
	t.Helper()
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatal("events ended before DEVICE_DELETED")
			}
			if ev.Name == EventDeviceDeleted && ev.String("device") == id {
				return
			}
		case <-ctx.Done():
			t.Fatalf("no DEVICE_DELETED for %s", id)
		}
	}
}

// TestGetFDNeedsAFile: a nil file is refused before anything is sent.
func TestGetFDNeedsAFile(t *testing.T) {
	c := &Client{}
	if err := c.GetFD(context.Background(), "x", nil); err == nil {
		t.Fatal("GetFD with no file succeeded")
	}
}
