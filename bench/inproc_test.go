package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/servald/servald/bench/udprelay"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// BenchmarkInprocLossy splits the gap between memnet and real processes:
// one msp stream between two mesh nodes of this process (mesh and msp
// defaults, as the CLI builds them), over a link of 10 ms each way, MTU
// 1500, at 0% and 10% loss, once over memnet and once over real UDP
// sockets on loopback through a udprelay with the same settings. No TCP
// legs, no other processes: if udp-MB/s is near memnet-MB/s, the loss is
// in the processes (TCP legs, scheduling); if not, in real sockets and
// timers. Metrics: udp-MB/s, memnet-MB/s, memnet-x (memnet / udp). A
// target for -cpuprofile:
//
//	go test -run '^$' -bench 'InprocLossy/loss=10%/udp' -benchtime 1x -cpuprofile cpu.out ./bench/
func BenchmarkInprocLossy(b *testing.B) {
	for _, loss := range []float64{0, 0.10} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			var u, m []float64
			b.Run("udp", func(b *testing.B) {
				a, z := udpPair(b, udprelay.Link{Loss: loss, Delay: 10 * time.Millisecond, MTU: 1500})
				u = inprocGoodput(b, a, z)
				b.ReportMetric(median(u), "udp-MB/s")
			})
			b.Run("memnet", func(b *testing.B) {
				a, z := memPair(b, memnet.LinkConfig{Loss: loss, Delay: 10 * time.Millisecond})
				m = inprocGoodput(b, a, z)
				b.ReportMetric(median(m), "memnet-MB/s")
				if len(u) > 0 {
					b.ReportMetric(median(m)/median(u), "memnet-x")
				}
			})
		})
	}
}

// inprocGoodput runs the target on z and measures transfers from a.
func inprocGoodput(b *testing.B, a, z *mesh.Node) []float64 {
	b.Helper()
	tg := &target{}
	zp, err := z.Bind(5000)
	if err != nil {
		b.Fatal(err)
	}
	l := msp.Listen(zp, z.Identity(), 5000, msp.Config{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); tg.serve(c) }()
		}
	}()
	b.Cleanup(func() { l.Close(); <-done })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := a.WaitReachable(ctx, z.SID()); err != nil {
		b.Fatal(err)
	}
	s := dialPort(b, ctx, a, z, 5000)
	defer s.Close()
	var v []float64
	cpu0, t0 := cpuSeconds(os.Getpid())
	wall0 := time.Now()
	for b.Loop() {
		c, err := s.OpenStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		v = append(v, must(b, "msp stream")(goodputOn(c, transferTime)))
		c.Close()
	}
	if cpu1, t1 := cpuSeconds(os.Getpid()); t0 == nil && t1 == nil {
		// Whether the transfer was short of CPU (the machine is shared) or
		// waiting on the protocol: 2 cores is 2.0.
		b.ReportMetric((cpu1-cpu0)/time.Since(wall0).Seconds(), "cores-used")
	}
	// The whole picture, with -v.
	b.Logf("MB/s %.3g", v)
	b.Logf("session at A %+v", s.Stats())
	b.Logf("node A %+v", a.Stats())
	b.Logf("node Z %+v", z.Stats())
	return v
}

func newNode(b *testing.B, c net.PacketConn, peers []net.Addr) *mesh.Node {
	b.Helper()
	// Mesh's default timers, as servald runs them.
	return meshtest.Start(b, c, peers, meshtest.Configure(func(_ int, c *mesh.Config) {
		c.HelloInterval, c.NeighbourTimeout = 0, 0
	}))
}

func waitPair(b *testing.B, a, z *mesh.Node) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.WaitReachable(ctx, z.SID()); err != nil {
		b.Fatal(err)
	}
	if err := z.WaitReachable(ctx, a.SID()); err != nil {
		b.Fatal(err)
	}
}

// udpPair is two nodes on loopback UDP, a sending through a relay to z.
func udpPair(b *testing.B, l udprelay.Link) (a, z *mesh.Node) {
	b.Helper()
	cz, err := mesh.ListenUDP("127.0.0.1:0", false)
	if err != nil {
		b.Fatal(err)
	}
	z = newNode(b, cz, nil)
	r := newRelay(b, z.LocalAddr().String(), l, 1)
	ca, err := mesh.ListenUDP("127.0.0.1:0", false)
	if err != nil {
		b.Fatal(err)
	}
	ra, err := net.ResolveUDPAddr("udp", r.Addr())
	if err != nil {
		b.Fatal(err)
	}
	a = newNode(b, ca, []net.Addr{ra})
	waitPair(b, a, z)
	socks := []string{a.LocalAddr().String(), z.LocalAddr().String(), r.Addr()}
	drops0 := udpDrops(b, socks)
	b.Cleanup(func() {
		b.Logf("relay %+v; mean lateness %v", r.Stats(), meanLate(r.Stats()))
		b.Logf("kernel drops on the nodes' and the relay's front sockets: %d", udpDrops(b, socks)-drops0)
	})
	return a, z
}

// udpDrops sums the drops column of /proc/net/udp for the IPv4 sockets
// bound to addrs (the relay's back socket is not among them: it is not
// returned by the relay's API, and it only receives replies).
func udpDrops(b *testing.B, addrs []string) uint64 {
	b.Helper()
	raw, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		b.Logf("no /proc/net/udp: %v", err)
		return 0
	}
	want := map[string]bool{}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || !ap.Addr().Is4() {
			continue
		}
		ip := ap.Addr().As4()
		want[fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.Port())] = true
	}
	n, err := parseUDPDrops(string(raw), func(f []string) bool { return want[f[1]] })
	if err != nil {
		b.Logf("/proc/net/udp: %v", err)
	}
	return n
}

// memPair is two nodes on memnet joined by one link of cfg, MTU 1500.
func memPair(b *testing.B, cfg memnet.LinkConfig) (a, z *mesh.Node) {
	b.Helper()
	nw := memnet.New(1)
	b.Cleanup(func() { nw.Close() })
	nw.SetMTU(1500)
	ca, cz := nw.Listen(), nw.Listen()
	nw.SetLinkBoth(ca.LocalAddr(), cz.LocalAddr(), cfg)
	z = newNode(b, cz, []net.Addr{ca.LocalAddr()})
	a = newNode(b, ca, []net.Addr{cz.LocalAddr()})
	waitPair(b, a, z)
	return a, z
}

// BenchmarkInprocChain is BenchmarkRealChain without processes: 5 mesh
// nodes of this process on loopback UDP, each link through a udprelay
// (5 ms each way, MTU 1500), one msp stream from the first node to the
// last, lossless and at 10% loss each way on every link. Metrics:
// lossless-MB/s, lossy-MB/s, cores-used (this process, relays included).
// A target for -cpuprofile of the relayed path over real sockets.
func BenchmarkInprocChain(b *testing.B) {
	clean := udprelay.Link{Delay: 5 * time.Millisecond, MTU: 1500}
	lossy := clean
	lossy.Loss = 0.10
	const nodes = 5
	ns := make([]*mesh.Node, nodes)
	var relays []*udprelay.Relay
	for i := nodes - 1; i >= 0; i-- {
		c, err := mesh.ListenUDP("127.0.0.1:0", false)
		if err != nil {
			b.Fatal(err)
		}
		var peers []net.Addr
		if i < nodes-1 {
			r := newRelay(b, ns[i+1].LocalAddr().String(), clean, uint64(200+i))
			relays = append(relays, r)
			ra, err := net.ResolveUDPAddr("udp", r.Addr())
			if err != nil {
				b.Fatal(err)
			}
			peers = append(peers, ra)
		}
		ns[i] = newNode(b, c, peers)
	}
	waitPair(b, ns[0], ns[nodes-1])
	set := func(l udprelay.Link) {
		for _, r := range relays {
			if err := r.SetConfig(udprelay.Symmetric(l, 0)); err != nil {
				b.Fatal(err)
			}
		}
	}
	var c0, l0 []float64
	var cpuUsed, wall float64
	for _, tc := range []struct {
		name string
		link udprelay.Link
		out  *[]float64
	}{{"lossless", clean, &c0}, {"lossy", lossy, &l0}} {
		b.Run(tc.name, func(b *testing.B) {
			set(tc.link)
			cpu0, err0 := cpuSeconds(os.Getpid())
			t0 := time.Now()
			*tc.out = inprocGoodput(b, ns[0], ns[nodes-1])
			if cpu1, err1 := cpuSeconds(os.Getpid()); err0 == nil && err1 == nil {
				cpuUsed, wall = cpu1-cpu0, time.Since(t0).Seconds()
				b.ReportMetric(cpuUsed/wall, "cores-used")
			}
			b.ReportMetric(median(*tc.out), tc.name+"-MB/s")
			for i, n := range ns[1 : nodes-1] { // the relaying nodes, with -v
				b.Logf("relay node %d %+v", i+1, n.Stats())
			}
		})
	}
	set(clean)
}
