package mesh

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// memMesh is a set of nodes on one in-memory network.
type memMesh struct {
	t     testing.TB
	net   *memnet.Network
	nodes []*Node
	conns []*memnet.Conn
}

// newMemMesh starts count nodes; links lists which node knows which as a
// configured peer (both directions then come up). Links not listed are cut.
func newMemMesh(t testing.TB, count int, links [][2]int, cfg Config) *memMesh {
	t.Helper()
	seed := time.Now().UnixNano()
	t.Logf("memnet seed %d", seed)
	m := &memMesh{t: t, net: memnet.New(seed)}
	m.net.SetDefault(memnet.LinkConfig{Cut: true})
	for i := 0; i < count; i++ {
		m.conns = append(m.conns, m.net.Listen())
	}
	peers := make([][]net.Addr, count)
	for _, l := range links {
		a, b := m.conns[l[0]].LocalAddr(), m.conns[l[1]].LocalAddr()
		m.net.SetLinkBoth(a, b, memnet.LinkConfig{})
		peers[l[0]] = append(peers[l[0]], b)
	}
	for i := 0; i < count; i++ {
		id, err := identity.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		c := cfg
		c.Identity, c.Conn, c.Peers = id, m.conns[i], peers[i]
		if c.HelloInterval == 0 {
			c.HelloInterval = 100 * time.Millisecond
			c.NeighbourTimeout = 500 * time.Millisecond
		}
		n, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		m.nodes = append(m.nodes, n)
	}
	t.Cleanup(func() {
		for _, n := range m.nodes {
			n.Close()
		}
		m.net.Close()
	})
	return m
}

// setLink changes the link between nodes a and b (both directions).
func (m *memMesh) setLink(a, b int, cfg memnet.LinkConfig) {
	m.net.SetLinkBoth(m.conns[a].LocalAddr(), m.conns[b].LocalAddr(), cfg)
}

// waitRoute waits until node from routes to node to with the given hop
// count (0: any) and next hop (-1: any).
func (m *memMesh) waitRoute(from, to, hops, via int, within time.Duration) Route {
	m.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, r := range m.nodes[from].Routes() {
			if r.SID == m.nodes[to].SID() && (hops == 0 || r.Hops == hops) && (via < 0 || r.NextHop == m.nodes[via].SID()) {
				return r
			}
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("node %d has no route to node %d (hops %d via %d) after %v; routes: %v", from, to, hops, via, within, m.nodes[from].Routes())
		}
		select {
		case <-m.nodes[from].Changed():
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// transfer sends count numbered datagrams from node a to node b and checks
// each arrives once; it returns how many arrived.
func transfer(t testing.TB, a, b *Node, count, size int) int {
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
	m := newMemMesh(t, 5, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}, Config{})
	r := m.waitRoute(0, 4, 4, 1, 10*time.Second)
	if r.Metric != 4*256 {
		t.Errorf("4 clean hops: metric %d, want %d", r.Metric, 4*256)
	}
	for i := 1; i < 5; i++ {
		m.waitRoute(0, i, i, 1, 5*time.Second)
		m.waitRoute(4, 4-i, i, 3, 5*time.Second)
	}
	if got := transfer(t, m.nodes[0], m.nodes[4], 2000, 1000); got != 2000 {
		for i, n := range m.nodes {
			t.Logf("node %d: %+v", i, n.Stats())
		}
		t.Fatalf("%d of 2000 datagrams crossed 4 hops", got)
	}
	if s := m.nodes[2].Stats(); s.Relayed == 0 {
		t.Fatalf("middle node relayed nothing: %+v", s)
	}
}

func TestChainLossy(t *testing.T) {
	m := newMemMesh(t, 5, [][2]int{{0, 1}, {1, 2}, {2, 3}, {3, 4}}, Config{})
	for i := 0; i < 4; i++ {
		m.setLink(i, i+1, memnet.LinkConfig{Loss: 0.1, Delay: time.Millisecond})
	}
	m.waitRoute(0, 4, 4, 1, 15*time.Second)
	if got := transfer(t, m.nodes[0], m.nodes[4], 3000, 1000); got != 3000 {
		for i, n := range m.nodes {
			t.Logf("node %d: %+v", i, n.Stats())
		}
		t.Fatalf("%d of 3000 datagrams crossed 4 hops at 10%% loss each", got)
	}
	var retx uint64
	for _, n := range m.nodes {
		retx += n.Stats().Retransmits
	}
	t.Logf("per-hop retransmissions over 4 lossy hops: %d", retx)
}

func TestDiamondFailover(t *testing.T) {
	// A=0, B=1, C=2, D=3: A-B-D and A-C-D.
	m := newMemMesh(t, 4, [][2]int{{0, 1}, {1, 3}, {0, 2}, {2, 3}}, Config{})
	r := m.waitRoute(0, 3, 2, -1, 10*time.Second)
	via := 1
	if r.NextHop == m.nodes[2].SID() {
		via = 2
	}
	other := 3 - via
	m.waitRoute(0, other, 1, other, 5*time.Second)
	t0 := time.Now()
	m.nodes[via].Close()
	m.waitRoute(0, 3, 2, other, 10*time.Second)
	t.Logf("A moved its route to D from node %d to node %d in %v", via, other, time.Since(t0).Round(time.Millisecond))
	if got := transfer(t, m.nodes[0], m.nodes[3], 500, 1000); got != 500 {
		t.Fatalf("%d of 500 after failover", got)
	}
}

func TestLossyDirectLinkAvoided(t *testing.T) {
	// 0-1 direct but 30% lossy; 0-2-1 clean.
	m := newMemMesh(t, 3, [][2]int{{0, 1}, {0, 2}, {2, 1}}, Config{})
	m.setLink(0, 1, memnet.LinkConfig{Loss: 0.3})
	// Link quality is a moving average: wait until node 0 has measured it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		cost := 0
		for _, nb := range m.nodes[0].Neighbours() {
			if nb.SID == m.nodes[1].SID() {
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
	r := m.waitRoute(0, 1, 2, 2, 5*time.Second)
	t.Logf("route to 1: %+v", r)
	// And it stays there.
	for i := 0; i < 20; i++ {
		time.Sleep(100 * time.Millisecond)
		for _, r := range m.nodes[0].Routes() {
			if r.SID == m.nodes[1].SID() && r.NextHop != m.nodes[2].SID() {
				t.Fatalf("route went back to the lossy link: %+v", r)
			}
		}
	}
	if got := transfer(t, m.nodes[0], m.nodes[1], 500, 1000); got != 500 {
		t.Fatalf("%d of 500", got)
	}
	if s := m.nodes[2].Stats(); s.Relayed < 500 {
		t.Fatalf("node 2 relayed %d frames, want the traffic", s.Relayed)
	}
}

func TestRouteGoneAfterNodeDies(t *testing.T) {
	m := newMemMesh(t, 4, [][2]int{{0, 1}, {1, 2}, {2, 3}}, Config{})
	m.waitRoute(0, 3, 3, 1, 10*time.Second)
	m.nodes[3].Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		found := false
		for _, r := range m.nodes[0].Routes() {
			found = found || r.SID == m.nodes[3].SID()
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
	if err := m.nodes[0].WaitReachable(ctx, m.nodes[3].SID()); err == nil {
		t.Fatal("dead node still reachable")
	}
}

var _ = fmt.Sprint

// TestRoutingThroughFullQueue: a relay whose queue towards a slow next hop
// is kept full by traffic it forwards (and drops) still gets its routing
// messages through, ahead of the data, so routes stay up under load.
// Dropped like relayed data, they used to be lost for as long as the
// queue stayed full: the far node's entries expired after advertHold and
// it had no routes for the rest of the load. And when the loaded link's
// cost rose, the next hop's entry turned unfeasible and the first node
// retracted its route instead of keeping it while it asked for a new
// sequence number.
func TestRoutingThroughFullQueue(t *testing.T) {
	// 50 ms hellos: entries expire after advertHold = 2.1 s unrefreshed.
	cfg := Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: 5 * time.Second, LinkWindow: 16, LinkQueue: 16}
	m := newMemMesh(t, 3, [][2]int{{0, 1}, {1, 2}}, cfg)
	m.waitRoute(2, 0, 2, 1, 10*time.Second)
	m.waitRoute(0, 2, 2, 1, 10*time.Second)
	// 1 MB/s from the relay to node 2 (a window of 16 frames waits 16 ms
	// there), and the relay's queue stays full.
	m.net.SetLink(m.conns[1].LocalAddr(), m.conns[2].LocalAddr(), memnet.LinkConfig{Bandwidth: 1e6, QueueBytes: 1 << 20})
	p, err := m.nodes[0].Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	to := Addr{SID: m.nodes[2].SID(), Port: 9}
	drops0 := m.nodes[1].Stats().RelayDrops
	has := func(from, to int) bool {
		for _, r := range m.nodes[from].Routes() {
			if r.SID == m.nodes[to].SID() {
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
	// 1.5 advertHold periods: without routing messages getting through,
	// every entry node 2 has expires in that time.
	for end := time.Now().Add(3 * advertHold * cfg.HelloInterval / 2); time.Now().Before(end); {
		p.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := p.WriteTo(msg, to); err != nil {
			writeErrs++ // no route
			time.Sleep(time.Millisecond)
		}
	}
	close(done)
	c := <-res
	drops := m.nodes[1].Stats().RelayDrops - drops0
	t.Logf("relay dropped %d frames; of %d samples node 2 had no route to node 0 in %d, node 0 none to node 2 in %d; %d writes failed; routes lost at node 2: %d",
		drops, c.samples, c.missing20, c.missing02, writeErrs, m.nodes[2].Stats().RoutesLost)
	if drops == 0 {
		t.Fatal("the relay dropped nothing: its queue was never full, so nothing was tested")
	}
	// A route may flap on a machine busy with other tests, but not be gone
	// for a tenth of the time.
	if c.missing20*10 > c.samples || c.missing02*10 > c.samples {
		t.Errorf("routes missing under load: node 2 to 0 in %d and node 0 to 2 in %d of %d samples", c.missing20, c.missing02, c.samples)
	}
}

// TestMTUProbeRetried: a link whose first probe rounds all fail (here the
// network passes nothing above 1300 bytes at first, as if the probes or
// their answers were lost) still finds its MTU once probes get through:
// after the full rounds the smallest probe size is retried.
func TestMTUProbeRetried(t *testing.T) {
	nw := memnet.New(time.Now().UnixNano())
	defer nw.Close()
	nw.SetMTU(1300)
	a, b := nw.Listen(), nw.Listen()
	nw.SetLinkBoth(a.LocalAddr(), b.LocalAddr(), memnet.LinkConfig{})
	const hello = 20 * time.Millisecond
	var nodes []*Node
	for _, c := range []struct {
		conn  *memnet.Conn
		peers []net.Addr
	}{{a, []net.Addr{b.LocalAddr()}}, {b, nil}} {
		id, err := identity.Generate(nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := New(Config{Identity: id, Conn: c.conn, Peers: c.peers, HelloInterval: hello, NeighbourTimeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		nodes = append(nodes, n)
	}
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
	time.Sleep((fullProbeRounds + 2) * hello) // the full rounds are over
	if m := mtu(); m != baseMTU {
		t.Fatalf("MTU %d with nothing above 1300 bytes passing, want %d", m, baseMTU)
	}
	nw.SetMTU(1500)
	for deadline := time.Now().Add(probeRounds * hello * 4); mtu() != probeSizes[len(probeSizes)-1]-wire.AuthLen; {
		if time.Now().After(deadline) {
			t.Fatalf("MTU still %d after the network passed 1500 bytes", mtu())
		}
		time.Sleep(hello / 2)
	}
}
