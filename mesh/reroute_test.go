package mesh

// Routing around a relay that drops, end to end: MSP sessions over nodes
// on memnet, and M, a neighbour made of raw bytes (a dropper) that speaks
// just enough of the link protocol to be one: it sends hellos, acknowledges
// every DATA frame, re-advertises C's genuine signed route entry at the
// lowest plausible metric, and drops what it is given to relay.

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
	"github.com/servald/servald/msp"
)

// dropper is the attacker M: a raw neighbour of one node.
type dropper struct {
	r      *rawPeer
	id     *identity.Identity
	victim *Node // whose signed entry M re-advertises

	mu   sync.Mutex
	echo wire.Cookie // the node's cookie for M's address; guarded by mu

	dataSeq  uint64 // M's DATA frames (routing messages); used by the sender goroutine only
	helloSeq uint64 // used by the sender goroutine only
	dropped  atomic.Uint64
	stop     chan struct{}
	wg       sync.WaitGroup
}

// newDropper joins a raw endpoint on nw to n (linked to it alone) and
// starts M's goroutines: every interval a hello and a routing message
// announcing victim one hop beyond M.
func newDropper(t *testing.T, nw *memnet.Network, n, victim *Node, interval time.Duration) *dropper {
	t.Helper()
	c := nw.Listen()
	nw.SetLinkBoth(c.LocalAddr(), n.LocalAddr(), memnet.LinkConfig{})
	d := &dropper{r: &rawPeer{t: t, c: c, to: n.LocalAddr(), n: n}, id: forgedID(t), victim: victim, stop: make(chan struct{})}
	d.helloSeq = 2
	d.echo = d.r.join(d.id, wire.Hello{SID: d.id.SID(), To: n.SID(), Epoch: 7, Seq: d.helloSeq, MTU: 1500})
	d.r.linkKeys() // before readLoop reads r's socket
	d.wg.Add(2)
	go d.readLoop()
	go d.sendLoop(n.SID(), interval)
	t.Cleanup(func() {
		close(d.stop)
		c.Close()
		d.wg.Wait()
	})
	return d
}

// readLoop acknowledges every DATA frame and drops it; it takes a new
// cookie when the node's secret rotated.
func (d *dropper) readLoop() {
	defer d.wg.Done()
	buf := make([]byte, 65536)
	for {
		k, _, err := d.r.c.ReadFrom(buf)
		if err != nil {
			return
		}
		b := d.r.unwrap(buf[:k])
		switch typ, _ := wire.Type(b); typ {
		case wire.TypeData:
			h, _, err := wire.ParseData(b)
			if err != nil {
				continue
			}
			d.r.c.WriteTo(d.r.link(wire.AppendAck(nil, &wire.Ack{Epoch: h.Epoch, Cum: h.Seq + 1})), d.r.to)
			if h.Dst != d.id.SID() {
				d.dropped.Add(1)
			}
		case wire.TypeCookie:
			if cookie, _, err := wire.ParseCookie(b); err == nil {
				d.mu.Lock()
				d.echo = cookie
				d.mu.Unlock()
			}
		}
	}
}

func (d *dropper) sendLoop(to identity.SID, interval time.Duration) {
	defer d.wg.Done()
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-tk.C:
		}
		d.mu.Lock()
		echo := d.echo
		d.mu.Unlock()
		d.helloSeq++
		d.r.c.WriteTo(wire.AppendHello(nil, wire.Hello{SID: d.id.SID(), To: to, Epoch: 7, Seq: d.helloSeq, MTU: 1500, Echo: echo}, d.id), d.r.to)
		// The victim's genuine entry, as a neighbour of it would have
		// heard it, at the lowest metric a non-origin may claim.
		vr := d.victim.router
		vr.mu.Lock()
		e := wire.RouteEntry{Origin: d.victim.SID(), Seq: vr.selfSeq, Metric: minHopCost, Hops: 1, MTU: 1500, HasSig: true, Sig: vr.selfSig}
		vr.mu.Unlock()
		d.dataSeq++
		h := wire.DataHeader{Epoch: 7, Seq: d.dataSeq, Base: d.dataSeq, TTL: 1, Dst: to, Src: d.id.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}
		m := &wire.RouteMsg{HasIHU: true, IHU: 255, Entries: []wire.RouteEntry{e}}
		d.r.c.WriteTo(d.r.link(wire.AppendRouteMsg(wire.AppendData(nil, &h), m)), d.r.to)
	}
}

// avoidCounts are a router's marks made and reports ignored.
func avoidCounts(n *Node) (marks, ignored uint64) {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	return n.router.failMarks, n.router.noProgressIgnored
}

// echoServe echoes every stream of l.
func echoServe(l *msp.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(c, c)
			c.Close()
		}()
	}
}

// echoer sends numbered 64-byte echoes on a stream and records when each
// comes back.
type echoer struct {
	c    io.ReadWriter
	mu   sync.Mutex
	sent map[uint64]time.Time
	rtt  map[uint64]time.Duration
	next uint64
}

func newEchoer(c io.ReadWriter) *echoer {
	e := &echoer{c: c, sent: map[uint64]time.Time{}, rtt: map[uint64]time.Duration{}}
	go func() {
		b := make([]byte, 64)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			i := binary.BigEndian.Uint64(b)
			e.mu.Lock()
			e.rtt[i] = time.Since(e.sent[i])
			e.mu.Unlock()
		}
	}()
	return e
}

// run sends an echo every interval for d and returns the numbers sent.
func (e *echoer) run(t *testing.T, interval, d time.Duration) (first, end uint64) {
	t.Helper()
	e.mu.Lock()
	first = e.next
	e.mu.Unlock()
	tk := time.NewTicker(interval)
	defer tk.Stop()
	for stop := time.Now().Add(d); time.Now().Before(stop); <-tk.C {
		b := make([]byte, 64)
		e.mu.Lock()
		i := e.next
		e.next++
		e.sent[i] = time.Now()
		e.mu.Unlock()
		binary.BigEndian.PutUint64(b, i)
		if _, err := e.c.Write(b); err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
	}
	e.mu.Lock()
	end = e.next
	e.mu.Unlock()
	return first, end
}

// answered counts the echoes in [first, end) that came back within limit,
// and returns the longest round trip among them.
func (e *echoer) answered(first, end uint64, limit time.Duration) (int, time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ok, worst := 0, time.Duration(0)
	for i := first; i < end; i++ {
		if rtt, got := e.rtt[i]; got && rtt <= limit {
			ok++
			worst = max(worst, rtt)
		}
	}
	return ok, worst
}

// rerouteMesh is A - B - D - C, an honest path of three hops, and M, the
// dropper, beside A (it claims C one hop beyond it: 2 hops, clearly
// cheaper). A listener on C echoes.
type rerouteMesh struct {
	m          *memMesh
	a, b, c    *Node
	listenPort uint16
}

const (
	rA, rB, rD, rC = 0, 1, 2, 3
	echoPort       = 7
)

func newRerouteMesh(t *testing.T) *rerouteMesh {
	m := newMemMesh(t, 4, [][2]int{{rA, rB}, {rB, rD}, {rD, rC}}, Config{})
	m.waitRoute(rA, rC, 3, rB, 20*time.Second)
	pc, err := m.nodes[rC].Bind(echoPort)
	if err != nil {
		t.Fatal(err)
	}
	l := msp.Listen(pc, m.nodes[rC].Identity(), echoPort, msp.Config{})
	t.Cleanup(func() { l.Close() })
	go echoServe(l)
	return &rerouteMesh{m: m, a: m.nodes[rA], b: m.nodes[rB], c: m.nodes[rC]}
}

// dial opens a session from A to C's echo listener and a stream in it.
func (rm *rerouteMesh) dial(t *testing.T, within time.Duration) (*msp.Session, io.ReadWriteCloser) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	pc, err := rm.a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	s, err := msp.Dialer{Identity: rm.a.Identity()}.Dial(ctx, pc, rm.c.SID(), echoPort)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

// TestRerouteAroundDroppingRelay: a session A -> C runs over the honest
// path; M appears and attracts A's traffic to C with C's own signed entry
// at the lowest plausible metric, acknowledging per hop and dropping. The
// session stalls, A avoids M for C, and of echoes sent every 100 ms for
// 10 s from the moment the route moved to M, at least 90% come back within
// a second. Then the mark runs out (A's clock of marks is moved on): the
// route goes back to M, the session stalls again, and M is avoided twice
// as long.
func TestRerouteAroundDroppingRelay(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s of echoes")
	}
	rm := newRerouteMesh(t)
	s, st := rm.dial(t, 10*time.Second)
	e := newEchoer(st)
	if first, end := e.run(t, 100*time.Millisecond, 300*time.Millisecond); e.waitAnswered(t, first, end) != int(end-first) {
		t.Fatal("echoes lost on the honest path")
	}

	d := newDropper(t, rm.m.net, rm.a, rm.c, 50*time.Millisecond)
	r := rm.m.waitRoute(rA, rC, 2, -1, 5*time.Second)
	if r.NextHop != d.id.SID() {
		t.Fatalf("the route to C does not go through M: %+v", r)
	}
	first, end := e.run(t, 100*time.Millisecond, 10*time.Second)
	ok := e.waitAnswered(t, first, end)
	stats := s.Stats()
	marks, ignored := avoidCounts(rm.a)
	t.Logf("M dropped %d frames; %d stalls; %d marks, %d reports ignored", d.dropped.Load(), stats.Stalls, marks, ignored)
	if d.dropped.Load() == 0 {
		t.Fatal("M dropped nothing: it attracted no traffic, the test shows nothing")
	}
	if ok*10 < int(end-first)*9 {
		t.Fatalf("%d of %d echoes answered, want at least 90%%", ok, end-first)
	}
	if marks != 1 || stats.Stalls == 0 {
		t.Fatalf("%d marks, %d stalls: want one mark, made by a stall", marks, stats.Stalls)
	}
	rm.m.waitRoute(rA, rC, 3, rB, time.Second)
	mk := markOf(rm.a, rm.c.SID(), d.id.SID())
	if mk == nil || mk.hold != failHold {
		t.Fatalf("mark of M: %+v", mk)
	}

	// The mark runs out: M gets C's traffic again, drops it, and is
	// avoided for twice as long. (The echo stream idles meanwhile: its
	// keepalives stall too.)
	rm.a.router.mu.Lock()
	rm.a.router.now = func() time.Time { return time.Now().Add(failHold) }
	rm.a.router.mu.Unlock()
	rm.m.waitRoute(rA, rC, 2, -1, 5*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if marks, _ := avoidCounts(rm.a); marks == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("M not marked again after its mark ran out")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if mk := markOf(rm.a, rm.c.SID(), d.id.SID()); mk == nil || mk.hold != 2*failHold {
		t.Fatalf("second mark of M: %+v, want a hold of %v", mk, 2*failHold)
	}
	rm.m.waitRoute(rA, rC, 3, rB, 2*time.Second)
	if first, end := e.run(t, 100*time.Millisecond, 500*time.Millisecond); e.waitAnswered(t, first, end) != int(end-first) {
		t.Fatal("echoes lost after the second reroute")
	}
}

// TestDialAroundDroppingRelay: M attracts A's traffic to C before any
// session exists; the dial's handshake goes unanswered, the dial reports
// it, and the session opens over the honest path within a few seconds.
func TestDialAroundDroppingRelay(t *testing.T) {
	rm := newRerouteMesh(t)
	d := newDropper(t, rm.m.net, rm.a, rm.c, 50*time.Millisecond)
	if r := rm.m.waitRoute(rA, rC, 2, -1, 5*time.Second); r.NextHop != d.id.SID() {
		t.Fatalf("the route to C does not go through M: %+v", r)
	}
	start := time.Now()
	_, st := rm.dial(t, 5*time.Second)
	t.Logf("dialled in %v; M dropped %d frames", time.Since(start), d.dropped.Load())
	e := newEchoer(st)
	if first, end := e.run(t, 100*time.Millisecond, 500*time.Millisecond); e.waitAnswered(t, first, end) != int(end-first) {
		t.Fatal("echoes lost after the dial")
	}
	if marks, _ := avoidCounts(rm.a); marks != 1 || d.dropped.Load() == 0 {
		t.Fatalf("%d marks, M dropped %d frames: want one mark, and M's drops", marks, d.dropped.Load())
	}
}

// TestNoMarkWhenDestinationGone: on a chain A - B - C, C's link goes
// down while a session runs; the session stalls and says so, but B is the
// only way to C: nothing is marked.
func TestNoMarkWhenDestinationGone(t *testing.T) {
	m := newMemMesh(t, 3, [][2]int{{0, 1}, {1, 2}}, Config{NeighbourTimeout: 5 * time.Second, HelloInterval: 100 * time.Millisecond})
	m.waitRoute(0, 2, 2, 1, 20*time.Second)
	pc, err := m.nodes[2].Bind(echoPort)
	if err != nil {
		t.Fatal(err)
	}
	l := msp.Listen(pc, m.nodes[2].Identity(), echoPort, msp.Config{})
	defer l.Close()
	go echoServe(l)
	rm := &rerouteMesh{m: m, a: m.nodes[0], b: m.nodes[1], c: m.nodes[2]}
	s, st := rm.dial(t, 10*time.Second)
	e := newEchoer(st)
	e.run(t, 100*time.Millisecond, 200*time.Millisecond)
	m.setLink(1, 2, memnet.LinkConfig{Cut: true})
	e.run(t, 100*time.Millisecond, 2*time.Second)
	if s.Stats().Stalls == 0 {
		t.Fatalf("no stall reported: %+v", s.Stats())
	}
	marks, ignored := avoidCounts(m.nodes[0])
	if marks != 0 || ignored == 0 {
		t.Fatalf("%d marks, %d reports ignored: want none, and some", marks, ignored)
	}
	if r := m.waitRoute(0, 2, 2, 1, time.Second); r.NextHop != m.nodes[1].SID() {
		t.Fatalf("route changed: %+v", r)
	}
}

// waitAnswered waits up to a second past the last echo for the answers
// and returns how many of [first, end) came back within a second.
func (e *echoer) waitAnswered(t *testing.T, first, end uint64) int {
	t.Helper()
	time.Sleep(time.Second)
	ok, worst := e.answered(first, end, time.Second)
	t.Logf("%d of %d echoes answered within 1 s, the slowest in %v", ok, end-first, worst)
	return ok
}

// markOf copies n's mark of via towards origin (nil: none).
func markOf(n *Node, origin, via identity.SID) *failMark {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	m := n.router.failing[failKey{origin, via}]
	if m == nil {
		return nil
	}
	c := *m
	return &c
}

// memMesh is a set of nodes on one in-memory network (built through
// StartNode, that is internal/meshtest).
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
	nw := memnet.New(seed)
	t.Cleanup(func() { nw.Close() })
	nw.SetDefault(memnet.LinkConfig{Cut: true})
	conns := make([]*memnet.Conn, count)
	for i := range conns {
		conns[i] = nw.Listen()
	}
	peers := make([][]net.Addr, count)
	for _, l := range links {
		a, b := conns[l[0]].LocalAddr(), conns[l[1]].LocalAddr()
		nw.SetLinkBoth(a, b, memnet.LinkConfig{})
		peers[l[0]] = append(peers[l[0]], b)
	}
	if cfg.HelloInterval == 0 {
		cfg.HelloInterval, cfg.NeighbourTimeout = 100*time.Millisecond, 500*time.Millisecond
	}
	m := &memMesh{t: t, net: nw, conns: conns}
	for i := range conns {
		m.nodes = append(m.nodes, StartNode(t, cfg, conns[i], peers[i]))
	}
	return m
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

// setLink changes the link between nodes a and b (both directions).
func (m *memMesh) setLink(a, b int, cfg memnet.LinkConfig) {
	m.net.SetLinkBoth(m.conns[a].LocalAddr(), m.conns[b].LocalAddr(), cfg)
}
