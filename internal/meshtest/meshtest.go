// Package meshtest builds mesh nodes for tests: on one in-memory network
// ([memnet]) as a pair, a chain or any graph, or on loopback UDP. Everything
// it starts is closed by t.Cleanup (nodes first, then the network), and it
// creates its network, timers and goroutines in the calling goroutine, so a
// rig built inside a testing/synctest bubble runs on the bubble's virtual
// time.
//
// Tests that need a node built specially (a tapped socket, forged peers,
// other timers or queue sizes) pass options ([Timers], [Configure],
// [Network], [Seed]) rather than calling mesh.New themselves.
package meshtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
)

// Default timers of the nodes a rig starts, unless [Timers] says otherwise:
// fast enough that routes form in well under a second.
const (
	DefaultHello            = 100 * time.Millisecond
	DefaultNeighbourTimeout = 500 * time.Millisecond
	// DefaultWait bounds each wait of [Pair], [Chain] and [UDPPair] for the
	// nodes to reach each other.
	DefaultWait = 10 * time.Second
)

// Option changes how a rig builds its network or nodes.
type Option func(*options)

type options struct {
	seed      int64
	seeded    bool
	hello     time.Duration
	timeout   time.Duration
	configure func(i int, c *mesh.Config)
	network   func(*memnet.Network)
}

func collect(opts []Option) options {
	o := options{hello: DefaultHello, timeout: DefaultNeighbourTimeout}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Seed fixes the memnet seed; without it a random seed is used and logged.
func Seed(seed int64) Option {
	return func(o *options) { o.seed, o.seeded = seed, true }
}

// Timers sets every node's hello interval and neighbour timeout.
func Timers(hello, neighbourTimeout time.Duration) Option {
	return func(o *options) { o.hello, o.timeout = hello, neighbourTimeout }
}

// Configure calls f with node i's config just before mesh.New, after the
// rig has filled in Identity, Conn, Peers and the timers; f may change any
// field (wrap Conn in a tap, set queue sizes, a logger, another identity).
// Several Configure options run in order.
func Configure(f func(i int, c *mesh.Config)) Option {
	return func(o *options) {
		prev := o.configure
		o.configure = func(i int, c *mesh.Config) {
			if prev != nil {
				prev(i, c)
			}
			f(i, c)
		}
	}
}

// Network calls f with the fresh network before any node starts (to set
// its MTU or queue bounds, say). Only [New], [Pair] and [Chain] use it.
func Network(f func(*memnet.Network)) Option {
	return func(o *options) { o.network = f }
}

// Start starts one node on conn that sends hellos to peers, closed when the
// test ends. Configure options see it as node 0.
func Start(t testing.TB, conn net.PacketConn, peers []net.Addr, opts ...Option) *mesh.Node {
	t.Helper()
	o := collect(opts)
	return o.start(t, 0, conn, peers)
}

func (o *options) start(t testing.TB, i int, conn net.PacketConn, peers []net.Addr) *mesh.Node {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := mesh.Config{Identity: id, Conn: conn, Peers: peers, HelloInterval: o.hello, NeighbourTimeout: o.timeout}
	if o.configure != nil {
		o.configure(i, &c)
	}
	n, err := mesh.New(c)
	if err != nil {
		conn.Close()
		t.Fatalf("meshtest: node %d: %v", i, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// Mesh is a set of nodes on one in-memory network.
type Mesh struct {
	t testing.TB
	// Net is the network; tests may change its links and read its stats.
	Net *memnet.Network
	// Nodes are the nodes, in the order of the edges' indices.
	Nodes []*mesh.Node
	// Conns are the nodes' endpoints: Conns[i] is Nodes[i]'s socket.
	Conns []*memnet.Conn
}

// New starts count nodes on a fresh network. Each edge {a, b} is a link
// with cfg in both directions, and node a knows node b as a configured
// peer; every pair of nodes not joined by an edge is cut. It does not wait
// for routes: see [Mesh.WaitConverged] and [Mesh.WaitRoute].
func New(t testing.TB, count int, edges [][2]int, cfg memnet.LinkConfig, opts ...Option) *Mesh {
	t.Helper()
	o := collect(opts)
	if !o.seeded {
		o.seed = rand.Int64()
	}
	t.Logf("memnet seed %d", o.seed)
	m := &Mesh{t: t, Net: memnet.New(o.seed)}
	t.Cleanup(func() { m.Net.Close() }) // runs after the nodes' cleanups
	m.Net.SetDefault(memnet.LinkConfig{Cut: true})
	if o.network != nil {
		o.network(m.Net)
	}
	for range count {
		m.Conns = append(m.Conns, m.Net.Listen())
	}
	peers := make([][]net.Addr, count)
	for _, e := range edges {
		a, b := m.Conns[e[0]].LocalAddr(), m.Conns[e[1]].LocalAddr()
		m.Net.SetLinkBoth(a, b, cfg)
		peers[e[0]] = append(peers[e[0]], b)
	}
	for i := range count {
		m.Nodes = append(m.Nodes, o.start(t, i, m.Conns[i], peers[i]))
	}
	return m
}

// Pair starts two nodes joined by a link with cfg each way (node 0 knows
// node 1 as a peer) and waits until each reaches the other.
func Pair(t testing.TB, cfg memnet.LinkConfig, opts ...Option) *Mesh {
	t.Helper()
	m := New(t, 2, [][2]int{{0, 1}}, cfg, opts...)
	m.WaitConverged(DefaultWait)
	return m
}

// Chain starts n nodes in a line, 0-1-...-(n-1), every link with cfg each
// way (each node knows the next as a peer), and waits until every node
// reaches every other.
func Chain(t testing.TB, n int, cfg memnet.LinkConfig, opts ...Option) *Mesh {
	t.Helper()
	m := New(t, n, ChainEdges(n), cfg, opts...)
	m.WaitConverged(DefaultWait)
	return m
}

// ChainEdges returns the edges of a line of n nodes.
func ChainEdges(n int) [][2]int {
	var e [][2]int
	for i := 0; i+1 < n; i++ {
		e = append(e, [2]int{i, i + 1})
	}
	return e
}

// SetLink changes the link between nodes a and b, both directions.
func (m *Mesh) SetLink(a, b int, cfg memnet.LinkConfig) {
	m.Net.SetLinkBoth(m.Conns[a].LocalAddr(), m.Conns[b].LocalAddr(), cfg)
}

// WaitConverged waits until every node has a route to every other, failing
// the test after within.
func (m *Mesh) WaitConverged(within time.Duration) {
	m.t.Helper()
	WaitConverged(m.t, within, m.Nodes...)
}

// WaitRoute waits until node from routes to node to with the given hop
// count (0: any) and next hop (-1: any), failing the test after within.
func (m *Mesh) WaitRoute(from, to, hops, via int, within time.Duration) mesh.Route {
	m.t.Helper()
	var viaSID *identity.SID
	if via >= 0 {
		s := m.Nodes[via].SID()
		viaSID = &s
	}
	return WaitRoute(m.t, m.Nodes[from], m.Nodes[to].SID(), hops, viaSID, within)
}

// WaitRoute waits until n routes to sid with the given hop count (0: any)
// and next hop (nil: any), failing the test after within.
func WaitRoute(t testing.TB, n *mesh.Node, sid identity.SID, hops int, via *identity.SID, within time.Duration) mesh.Route {
	t.Helper()
	tm := time.NewTimer(within)
	defer tm.Stop()
	// Changed wakes the wait on most route changes; the ticker catches
	// those it does not signal (a metric or next hop moving).
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ch := n.Changed()
		for _, r := range n.Routes() {
			if r.SID == sid && (hops == 0 || r.Hops == hops) && (via == nil || r.NextHop == *via) {
				return r
			}
		}
		select {
		case <-ch:
		case <-tick.C:
		case <-tm.C:
			want := "any hop"
			if via != nil {
				want = "via " + via.Short()
			}
			t.Fatalf("meshtest: %s has no route to %s (hops %d, %s) after %v; routes: %v", n.SID().Short(), sid.Short(), hops, want, within, n.Routes())
			return mesh.Route{}
		}
	}
}

// WaitConverged waits until each of nodes reaches every other, failing the
// test after within.
func WaitConverged(t testing.TB, within time.Duration, nodes ...*mesh.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for i, a := range nodes {
		for j, b := range nodes {
			if i == j {
				continue
			}
			if err := a.WaitReachable(ctx, b.SID()); err != nil {
				t.Fatalf("meshtest: node %d does not reach node %d within %v: %v", i, j, within, err)
			}
		}
	}
}

// UDPPair starts two nodes on loopback UDP sockets (127.0.0.1:0), node a
// knowing node b as a peer, and waits until each reaches the other. Real
// sockets do not run on synctest's virtual time: call it outside a bubble.
func UDPPair(t testing.TB, opts ...Option) (a, b *mesh.Node) {
	t.Helper()
	o := collect(opts)
	b = o.start(t, 1, udp(t), nil)
	a = o.start(t, 0, udp(t), []net.Addr{b.LocalAddr()})
	WaitConverged(t, DefaultWait, a, b)
	return a, b
}

// UDPNode starts one node on a loopback UDP socket (127.0.0.1:0) that sends
// hellos to peers.
func UDPNode(t testing.TB, peers []net.Addr, opts ...Option) *mesh.Node {
	t.Helper()
	return Start(t, udp(t), peers, opts...)
}

func udp(t testing.TB) net.PacketConn {
	t.Helper()
	c, err := mesh.ListenUDP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(fmt.Errorf("meshtest: %w", err))
	}
	return c
}
