package netsetup_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/vmrun/vmrun/internal/dhcpupstream"
	"github.com/vmrun/vmrun/internal/nested"
	"github.com/vmrun/vmrun/netsetup"
	"github.com/vmrun/vmrun/netsetup/internal/fakeguest"
)

// BenchmarkIPVtapDHCP times a guest's DHCP on ipvtap against the LAN's
// server's own answer: per iteration, a guest's DISCOVER, OFFER, REQUEST,
// ACK answered by vmrun (ns/op: DISCOVER sent → ACK in the guest's hands),
// then the same exchange of a client on the parent with the LAN's server
// (server-ns/op, not in ns/op); added-ns/op is the mean difference, what
// vmrun adds to the guest's DHCP (the target: at most 5 ms). On a veth LAN,
// and in the nested rig also on the Wi-Fi station.
func BenchmarkIPVtapDHCP(b *testing.B) {
	b.Run("veth", func(b *testing.B) { benchGuestDHCP(b, vethEnv(b)) })
	if nested.Inside() {
		b.Run("wifi", func(b *testing.B) { benchGuestDHCP(b, wifiEnv(b)) })
	}
}

func benchGuestDHCP(b *testing.B, e *ipvtapEnv) {
	ctx := ctxT(b, 5*time.Minute)
	p := e.planIPVtap(b, netsetup.Request{Name: "ipv-bench-dhcp", NoHostLink: true})
	a, err := e.apply(b, ctx, p, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := a.Undo(); err != nil {
			b.Error(err)
		}
	}()
	g := fakeguest.NewQueues(a.Files, a.MAC, true)
	defer g.Close()
	g.SetBroadcastFlag(false)              // udhcpc's default
	if _, err := g.DHCP(ctx); err != nil { // once vmrun holds the VM's lease
		b.Fatal(err)
	}
	var proxy, server time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := g.DHCP(ctx); err != nil {
			b.Fatal(err)
		}
		proxy += time.Since(start)
		b.StopTimer()
		d, err := serverDHCP(ctx, e, i)
		if err != nil {
			b.Fatal(err)
		}
		server += d
		b.StartTimer()
	}
	b.ReportMetric(float64(server.Nanoseconds())/float64(b.N), "server-ns/op")
	b.ReportMetric(float64((proxy-server).Nanoseconds())/float64(b.N), "added-ns/op")
}

// serverDHCP is the time of one DHCP exchange of a client on the parent
// with the LAN's server (a lease of its own, released again).
func serverDHCP(ctx context.Context, e *ipvtapEnv, i int) (time.Duration, error) {
	var d time.Duration
	err := e.host.Do(func() error {
		start := time.Now()
		c, err := dhcpupstream.Acquire(ctx, dhcpupstream.Config{Link: e.parent, ClientID: []byte(fmt.Sprintf("\x00vmrun-bench-%d", i%4))})
		if err != nil {
			return err
		}
		d = time.Since(start)
		return c.Release()
	})
	return d, err
}
