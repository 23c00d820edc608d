package mesh_test

import (
	"context"
	"encoding/binary"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/mesh/internal/wire"
)

// transfer sends count numbered datagrams from node a to node b and checks
// each arrives once; it returns how many arrived.
func transfer(t testing.TB, a, b *mesh.Node, count, size int) int {
	t.Helper()
	pa, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	pb, err := b.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	to := pb.LocalAddr()
	// The sender keeps at most 256 datagrams ahead of the receiver, as a
	// transport above would: relays drop what overflows their queues.
	progress := make(chan int, count)
	go func() {
		msg := make([]byte, size)
		got := 0
		for i := 0; i < count; i++ {
			for i-got >= 256 {
				select {
				case got = <-progress:
				case <-time.After(5 * time.Second):
					return
				}
			}
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := pa.WriteTo(msg, to); err != nil {
				return
			}
		}
	}()
	seen := make(map[uint32]bool)
	buf := make([]byte, 70000)
	pb.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(seen) < count {
		k, _, err := pb.ReadFrom(buf)
		if err != nil {
			break
		}
		id := binary.BigEndian.Uint32(buf)
		if k != size || seen[id] {
			t.Fatalf("datagram %d: %d bytes, seen before: %v", id, k, seen[id])
		}
		seen[id] = true
		progress <- len(seen)
	}
	return len(seen)
}

func TestChainRoutes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := meshtest.New(t, 5, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}, memnet.LinkConfig{})
		r := m.WaitRoute(0, 4, 4, 1, 10*time.Second)
		if r.Metric != 4*256 {
			t.Errorf("4 clean hops: metric %d, want %d", r.Metric, 4*256)
		}
		for i := 1; i < 5; i++ {
			m.WaitRoute(0, i, i, 1, 5*time.Second)
			m.WaitRoute(4, 4-i, i, 3, 5*time.Second)
		}
		if got := transfer(t, m.Nodes[0], m.Nodes[4], 2000, 1000); got != 2000 {
			for i, n := range m.Nodes {
				t.Logf("node %d: %+v", i, n.Stats())
			}
			t.Fatalf("%d of 2000 datagrams crossed 4 hops", got)
		}
		if s := m.Nodes[2].Stats(); s.Relayed == 0 {
			t.Fatalf("middle node relayed nothing: %+v", s)
		}
	})
}

func TestChainLossy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := meshtest.New(t, 5, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}, memnet.LinkConfig{})
		for i := 0; i < 4; i++ {
			m.SetLink(i, i+1, memnet.LinkConfig{Loss: 0.1, Delay: time.Millisecond})
		}
		m.WaitRoute(0, 4, 4, 1, 15*time.Second)
		if got := transfer(t, m.Nodes[0], m.Nodes[4], 3000, 1000); got != 3000 {
			for i, n := range m.Nodes {
				t.Logf("node %d: %+v", i, n.Stats())
			}
			t.Fatalf("%d of 3000 datagrams crossed 4 hops at 10%% loss each", got)
		}
		var retx uint64
		for _, n := range m.Nodes {
			retx += n.Stats().Retransmits
		}
		t.Logf("per-hop retransmissions over 4 lossy hops: %d", retx)
	})
}

func TestDiamondFailover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A=0, B=1, C=2, D=3: A-B-D and A-C-D.
		m := meshtest.New(t, 4, [][2]int{{0, 1}, {1, 3}, {0, 2}, {2, 3}}, memnet.LinkConfig{})
		r := m.WaitRoute(0, 3, 2, -1, 10*time.Second)
		via := 1
		if r.NextHop == m.Nodes[2].SID() {
			via = 2
		}
		other := 3 - via
		m.WaitRoute(0, other, 1, other, 5*time.Second)
		t0 := time.Now()
		m.Nodes[via].Close()
		m.WaitRoute(0, 3, 2, other, 10*time.Second)
		t.Logf("A moved its route to D from node %d to node %d in %v", via, other, time.Since(t0).Round(time.Millisecond))
		if got := transfer(t, m.Nodes[0], m.Nodes[3], 500, 1000); got != 500 {
			t.Fatalf("%d of 500 after failover", got)
		}
	})
}

func TestLossyDirectLinkAvoided(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 0-1 direct but 30% lossy; 0-2-1 clean.
		m := meshtest.New(t, 3, [][2]int{{0, 1}, {0, 2}, {2, 1}}, memnet.LinkConfig{})
		m.SetLink(0, 1, memnet.LinkConfig{Loss: 0.3})
		// Link quality is a moving average: wait until node 0 has measured it.
		deadline := time.Now().Add(20 * time.Second)
		for {
			cost := 0
			for _, nb := range m.Nodes[0].Neighbours() {
				if nb.SID == m.Nodes[1].SID() {
					cost = nb.Cost
					t.Logf("lossy neighbour: delivery %.2f cost %d", nb.Delivery, nb.Cost)
				}
			}
			if cost > 512 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("a 30%%-lossy link still costs %d after 20 s", cost)
			}
			time.Sleep(500 * time.Millisecond)
		}
		r := m.WaitRoute(0, 1, 2, 2, 5*time.Second)
		t.Logf("route to 1: %+v", r)
		// And it stays there.
		for i := 0; i < 20; i++ {
			time.Sleep(100 * time.Millisecond)
			for _, r := range m.Nodes[0].Routes() {
				if r.SID == m.Nodes[1].SID() && r.NextHop != m.Nodes[2].SID() {
					t.Fatalf("route went back to the lossy link: %+v", r)
				}
			}
		}
		if got := transfer(t, m.Nodes[0], m.Nodes[1], 500, 1000); got != 500 {
			t.Fatalf("%d of 500", got)
		}
		if s := m.Nodes[2].Stats(); s.Relayed < 500 {
			t.Fatalf("node 2 relayed %d frames, want the traffic", s.Relayed)
		}
	})
}

func TestRouteGoneAfterNodeDies(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := meshtest.New(t, 4, [][2]int{{0, 1}, {1, 2}, {2, 3}}, memnet.LinkConfig{})
		m.WaitRoute(0, 3, 3, 1, 10*time.Second)
		m.Nodes[3].Close()
		deadline := time.Now().Add(10 * time.Second)
		for {
			found := false
			for _, r := range m.Nodes[0].Routes() {
				found = found || r.SID == m.Nodes[3].SID()
			}
			if !found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("route to a dead node still there after 10 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := m.Nodes[0].WaitReachable(ctx, m.Nodes[3].SID()); err == nil {
			t.Fatal("dead node still reachable")
		}
	})
}

// TestRoutingThroughFullQueue: a relay whose queue towards a slow next hop
// is kept full by traffic it forwards (and drops) still gets its routing
// messages through, ahead of the data, so routes stay up under load.
// Dropped like relayed data, they used to be lost for as long as the
// queue stayed full: the far node's entries expired after AdvertHold and
// it had no routes for the rest of the load. And when the loaded link's
// cost rose, the next hop's entry turned unfeasible and the first node
// retracted its route instead of keeping it while it asked for a new
// sequence number.
func TestRoutingThroughFullQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 50 ms hellos: entries expire after AdvertHold = 2.1 s unrefreshed.
		const hello = 50 * time.Millisecond
		m := meshtest.New(t, 3, [][2]int{{0, 1}, {1, 2}}, memnet.LinkConfig{},
			meshtest.Timers(hello, 5*time.Second),
			meshtest.Configure(func(_ int, c *mesh.Config) { c.LinkWindow, c.LinkQueue = 16, 16 }))
		m.WaitRoute(2, 0, 2, 1, 10*time.Second)
		m.WaitRoute(0, 2, 2, 1, 10*time.Second)
		// 1 MB/s from the relay to node 2 (a window of 16 frames waits 16 ms
		// there), and the relay's queue stays full.
		m.Net.SetLink(m.Conns[1].LocalAddr(), m.Conns[2].LocalAddr(), memnet.LinkConfig{Bandwidth: 1e6, QueueBytes: 1 << 20})
		// 4 MB/s from node 0 to the relay: four times what the relay can
		// pass on. On virtual time an unlimited link would take no time at
		// all, and the sender would never let the clock move.
		m.Net.SetLink(m.Conns[0].LocalAddr(), m.Conns[1].LocalAddr(), memnet.LinkConfig{Bandwidth: 4e6, QueueBytes: 1 << 20})
		p, err := m.Nodes[0].Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		to := mesh.Addr{SID: m.Nodes[2].SID(), Port: 9}
		drops0 := m.Nodes[1].Stats().RelayDrops
		has := func(from, to int) bool {
			for _, r := range m.Nodes[from].Routes() {
				if r.SID == m.Nodes[to].SID() {
					return true
				}
			}
			return false
		}
		// Sample both ends' routes while the load runs.
		done := make(chan struct{})
		type tally struct{ samples, missing20, missing02 int }
		res := make(chan tally, 1)
		go func() {
			var c tally
			tick := time.NewTicker(25 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					res <- c
					return
				case <-tick.C:
				}
				c.samples++
				if !has(2, 0) {
					c.missing20++
				}
				if !has(0, 2) {
					c.missing02++
				}
			}
		}()
		msg := make([]byte, 1000)
		writeErrs := 0
		// 1.5 AdvertHold periods: without routing messages getting through,
		// every entry node 2 has expires in that time.
		for end := time.Now().Add(3 * mesh.AdvertHold * hello / 2); time.Now().Before(end); {
			p.SetWriteDeadline(time.Now().Add(time.Second))
			if _, err := p.WriteTo(msg, to); err != nil {
				writeErrs++ // no route
				time.Sleep(time.Millisecond)
			}
		}
		close(done)
		c := <-res
		drops := m.Nodes[1].Stats().RelayDrops - drops0
		t.Logf("relay dropped %d frames; of %d samples node 2 had no route to node 0 in %d, node 0 none to node 2 in %d; %d writes failed; routes lost at node 2: %d",
			drops, c.samples, c.missing20, c.missing02, writeErrs, m.Nodes[2].Stats().RoutesLost)
		if drops == 0 {
			t.Fatal("the relay dropped nothing: its queue was never full, so nothing was tested")
		}
		// A route may flap on a machine busy with other tests, but not be gone
		// for a tenth of the time.
		if c.missing20*10 > c.samples || c.missing02*10 > c.samples {
			t.Errorf("routes missing under load: node 2 to 0 in %d and node 0 to 2 in %d of %d samples", c.missing20, c.missing02, c.samples)
		}
	})
}

// TestMTUProbeRetried: a link whose first probe rounds all fail (here the
// network passes nothing above 1300 bytes at first, as if the probes or
// their answers were lost) still finds its MTU once probes get through:
// after the full rounds the smallest probe size is retried.
func TestMTUProbeRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hello = 20 * time.Millisecond
		m := meshtest.New(t, 2, [][2]int{{0, 1}}, memnet.LinkConfig{}, meshtest.Timers(hello, time.Second),
			meshtest.Network(func(nw *memnet.Network) { nw.SetMTU(1300) }))
		nodes, nw := m.Nodes, m.Net
		mtu := func() int {
			for _, r := range nodes[0].Routes() {
				if r.SID == nodes[1].SID() {
					return r.MTU
				}
			}
			return 0
		}
		deadline := time.Now().Add(5 * time.Second)
		for mtu() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("no route to the neighbour")
			}
			time.Sleep(hello)
		}
		time.Sleep((mesh.FullProbeRounds + 2) * hello) // the full rounds are over
		if m := mtu(); m != mesh.BaseMTU {
			t.Fatalf("MTU %d with nothing above 1300 bytes passing, want %d", m, mesh.BaseMTU)
		}
		nw.SetMTU(1500)
		for deadline := time.Now().Add(mesh.ProbeRounds * hello * 4); mtu() != mesh.SmallestProbe-wire.AuthLen; {
			if time.Now().After(deadline) {
				t.Fatalf("MTU still %d after the network passed 1500 bytes", mtu())
			}
			time.Sleep(hello / 2)
		}
	})
}

// TestPathMTUPropagates: on a 4-node chain whose links' MTUs rise after
// the routes are known (the network passes 1300 bytes, then 1500, as in
// TestMTUProbeRetried), the first node's route to the last carries the
// raised MTU within a few hello intervals of the last link's rise: a path
// MTU change goes along the chain as a triggered update, not one full
// table per hop (DumpEvery hello intervals each).
func TestPathMTUPropagates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hello = 50 * time.Millisecond
		m := meshtest.New(t, 4, [][2]int{{0, 1}, {1, 2}, {2, 3}}, memnet.LinkConfig{}, meshtest.Timers(hello, time.Minute),
			meshtest.Network(func(nw *memnet.Network) { nw.SetMTU(1300) }))
		mtu := func(from, to int) int {
			for _, r := range m.Nodes[from].Routes() {
				if r.SID == m.Nodes[to].SID() {
					return r.MTU
				}
			}
			return 0
		}
		waitMTU := func(want int, within time.Duration, pairs ...[2]int) {
			t.Helper()
			deadline := time.Now().Add(within)
			for _, p := range pairs {
				for mtu(p[0], p[1]) != want {
					if time.Now().After(deadline) {
						t.Fatalf("MTU of node %d's route to %d is %d, want %d", p[0], p[1], mtu(p[0], p[1]), want)
					}
					time.Sleep(hello / 10)
				}
			}
		}
		waitMTU(mesh.BaseMTU, 5*time.Second, [2]int{0, 3})
		time.Sleep((mesh.FullProbeRounds + 2) * hello) // the full probe rounds are over
		m.Net.SetMTU(1500)
		want := mesh.SmallestProbe - wire.AuthLen
		waitMTU(want, mesh.ProbeRounds*hello*4, [2]int{0, 1}, [2]int{1, 2}, [2]int{2, 3}) // every link probed
		waitMTU(want, 3*hello, [2]int{0, 3})
	})
}
