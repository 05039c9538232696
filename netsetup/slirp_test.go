package netsetup

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"

	"github.com/vmrun/vmrun/internal/testutil"
)

// TestSlirpHasIPv6 checks what the user-mode notice says about QEMU's
// slirp against QEMU itself: with vmrun's options (a plain -netdev user),
// slirp answers a router solicitation with a router advertisement for
// fec0::/64. No guest: this test plays the guest NIC over a UDP socket
// netdev that shares a hub with the user netdev.
func TestSlirpHasIPv6(t *testing.T) {
	qemu := testutil.RequireQEMU(t)
	me, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer me.Close()
	// QEMU's end: a free loopback port, found by binding and releasing it.
	probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	qport := probe.LocalAddr().(*net.UDPAddr).Port
	probe.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-M", "none", "-nodefaults", "-display", "none",
		"-netdev", "user,id=u0",
		"-netdev", "hubport,id=h0,hubid=0,netdev=u0",
		"-netdev", fmt.Sprintf("socket,id=s0,udp=127.0.0.1:%d,localaddr=127.0.0.1:%d", me.LocalAddr().(*net.UDPAddr).Port, qport),
		"-netdev", "hubport,id=h1,hubid=0,netdev=s0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	src := net.ParseIP("fe80::5054:ff:fe12:3456")
	dst := net.ParseIP("ff02::2")
	rs, err := (&icmp.Message{Type: ipv6.ICMPTypeRouterSolicitation, Body: &icmp.RawBody{
		Data: append([]byte{0, 0, 0, 0, 1, 1}, mac...), // reserved; source link-layer address option
	}}).Marshal(icmp.IPv6PseudoHeader(src, dst))
	if err != nil {
		t.Fatal(err)
	}
	frame := append([]byte{0x33, 0x33, 0, 0, 0, 2}, mac...)
	frame = append(frame, 0x86, 0xdd)
	ip6 := make([]byte, 40)
	ip6[0] = 0x60
	binary.BigEndian.PutUint16(ip6[4:], uint16(len(rs)))
	ip6[6], ip6[7] = 58, 255 // ICMPv6, hop limit 255
	copy(ip6[8:], src)
	copy(ip6[24:], dst)
	frame = append(append(frame, ip6...), rs...)

	qemuAddr := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: qport}
	buf := make([]byte, 2048)
	// Solicit until the advertisement comes (QEMU may not listen yet when
	// the first one goes); each read waits a second for an answer.
	for attempt := 1; ; attempt++ {
		if ctx.Err() != nil {
			t.Fatalf("no router advertisement from slirp after %d solicitations (QEMU stderr: %s)", attempt, stderr.String())
		}
		if _, err := me.WriteToUDP(frame, qemuAddr); err != nil {
			t.Fatal(err)
		}
		_ = me.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := me.ReadFromUDP(buf)
			if err != nil {
				break // no answer within the second: solicit again
			}
			if prefix, ok := raPrefix(buf[:n]); ok {
				if prefix != "fec0::/64" {
					t.Fatalf("slirp advertises %s, want fec0::/64", prefix)
				}
				return
			}
		}
	}
}

// raPrefix returns the prefix information of an Ethernet frame carrying an
// ICMPv6 router advertisement.
func raPrefix(f []byte) (string, bool) {
	if len(f) < 14+40+16 || f[12] != 0x86 || f[13] != 0xdd || f[14+6] != 58 {
		return "", false
	}
	m, err := icmp.ParseMessage(58, f[14+40:])
	if err != nil || m.Type != ipv6.ICMPTypeRouterAdvertisement {
		return "", false
	}
	body, ok := m.Body.(*icmp.RawBody)
	if !ok || len(body.Data) < 12 {
		return "", false
	}
	// Options follow the 12 bytes of hop limit, flags, lifetime, timers.
	for opts := body.Data[12:]; len(opts) >= 8 && opts[1] > 0; opts = opts[int(opts[1])*8:] {
		if opts[0] == 3 && len(opts) >= 32 { // prefix information
			return net.IP(opts[16:32]).String() + "/" + strconv.Itoa(int(opts[2])), true
		}
		if int(opts[1])*8 > len(opts) {
			break
		}
	}
	return "", false
}
