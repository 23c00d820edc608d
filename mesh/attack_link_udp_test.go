package mesh_test

// Attacks of issue 9 on the link layer, on real UDP sockets (loopback):
// frames forged from a neighbour's own address, and a neighbour that
// attracts traffic with another node's signed entry and drops it. The
// memnet versions are TestForgedLinkFramesChangeNothing (linkauth_test.go)
// and TestRerouteAroundDroppingRelay (reroute_test.go).

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/mesh/internal/wire"
)

// tapConn is a node's UDP socket that keeps the latest authenticated frame
// of each type it exchanges with one address, as an on-path observer
// would see them: sent (the node's own, to replay) and received (the
// peer's, for their epoch and sequence numbers).
type tapConn struct {
	net.PacketConn
	peer string

	mu         sync.Mutex
	sent, recv map[byte][]byte // by frame type, FlagAuth cleared
}

func newTapConn(c net.PacketConn, peer net.Addr) *tapConn {
	return &tapConn{PacketConn: c, peer: peer.String(), sent: map[byte][]byte{}, recv: map[byte][]byte{}}
}

func (c *tapConn) keep(m map[byte][]byte, p []byte, a net.Addr) {
	if a.String() != c.peer || len(p) < 2+wire.AuthLen || p[1]&wire.FlagAuth == 0 {
		return
	}
	c.mu.Lock()
	m[p[1]&^wire.FlagAuth] = bytes.Clone(p)
	c.mu.Unlock()
}

func (c *tapConn) ReadFrom(p []byte) (int, net.Addr, error) {
	k, a, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		c.keep(c.recv, p[:k], a)
	}
	return k, a, err
}

func (c *tapConn) WriteTo(p []byte, a net.Addr) (int, error) {
	c.keep(c.sent, p, a)
	return c.PacketConn.WriteTo(p, a)
}

// frame returns the latest authenticated frame of type typ sent (or
// received), nil if none yet.
func (c *tapConn) frame(sent bool, typ byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if sent {
		return bytes.Clone(c.sent[typ])
	}
	return bytes.Clone(c.recv[typ])
}

// dataHeader parses the DATA frame inside authenticated frame b (the MAC
// covers a frame, it does not hide it).
func dataHeader(t testing.TB, b []byte) wire.DataHeader {
	t.Helper()
	h, _, err := wire.ParseData(wire.Inner(bytes.Clone(b)))
	if err != nil {
		t.Fatalf("a captured DATA frame: %v", err)
	}
	return h
}

// linkDrops are V's counters of frames dropped by link authentication.
type linkDrops struct{ BadMAC, Unauthenticated, Replayed, UnknownSource, Moved uint64 }

func linkDropsOf(n *mesh.Node) linkDrops {
	s := n.Stats()
	return linkDrops{s.BadMAC, s.Unauthenticated, s.Replayed, s.UnknownSource, s.Moved}
}

func (a linkDrops) minus(b linkDrops) linkDrops {
	return linkDrops{a.BadMAC - b.BadMAC, a.Unauthenticated - b.Unauthenticated, a.Replayed - b.Replayed,
		a.UnknownSource - b.UnknownSource, a.Moved - b.Moved}
}

// neighbourOf returns n's entry for sid (ok false: not a neighbour).
func neighbourOf(n *mesh.Node, sid identity.SID) (mesh.Neighbour, bool) {
	for _, nb := range n.Neighbours() {
		if nb.SID == sid {
			return nb, true
		}
	}
	return mesh.Neighbour{}, false
}

// TestAttackForgedLinkFramesUDP is point 1 of issue 9 (forged link frames)
// on real sockets: V and its neighbour N are nodes in the test process on
// loopback UDP sockets, with a tunnel N - V that echoes. For 5 s frames are
// sent to V from N's own socket (so from N's exact address, with no raw
// socket needed): plain DATA (to a bound port and to the routing port),
// ACK, SKIP and PROBEACK; the same with a zeroed trailer and with N's key
// id, a fresh counter and a random tag; a PROBE with a random tag; and
// N's latest genuine DATA and
// ACK, captured on N's socket, sent again. The echoes keep coming within
// 1 s, N stays V's neighbour at its address with the same MTU, nothing
// forged is delivered or routed, and V's counters rose by exactly what was
// sent.
func TestAttackForgedLinkFramesUDP(t *testing.T) {
	t.Parallel()
	d := 5 * time.Second
	if testing.Short() {
		d = time.Second
	}
	const rounds = 40 // of forged frames a second
	v := udpNode(t, attackCfg(t))
	vaddr := v.LocalAddr()
	ncfg := attackCfg(t, vaddr)
	nconn := newTapConn(ncfg.Conn, vaddr)
	ncfg.Conn = nconn
	n := udpNode(t, ncfg)
	naddr := n.LocalAddr().String()
	tun := newEchoTunnel(t, n, v)
	// A port on V the forged DATA is addressed to: nothing may arrive.
	pc, err := v.Bind(1)
	if err != nil {
		t.Fatal(err)
	}
	var delivered atomic.Int64
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		buf := make([]byte, 65536)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			delivered.Add(1)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-readDone })

	// Genuine frames of both directions, and MTU probing over (its last
	// round is within a few seconds of the link coming up).
	deadline := time.Now().Add(10 * time.Second)
	for nconn.frame(true, wire.TypeData) == nil || nconn.frame(true, wire.TypeAck) == nil || nconn.frame(false, wire.TypeData) == nil {
		if time.Now().After(deadline) {
			t.Fatal("no authenticated DATA and ACK between N and V within 10 s")
		}
		tun.run(context.Background(), 1, 0)
	}
	var before mesh.Neighbour
	for stable := 0; stable < 10; {
		nb, ok := neighbourOf(v, n.SID())
		if !ok {
			t.Fatal("N is not V's neighbour")
		}
		if nb.MTU == before.MTU {
			stable++
		} else {
			stable = 0
		}
		before = nb
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	nData := dataHeader(t, nconn.frame(true, wire.TypeData))  // N's link epoch and seq
	vData := dataHeader(t, nconn.frame(false, wire.TypeData)) // V's
	ga, err := wire.ParseAuth(nconn.frame(true, wire.TypeData))
	if err != nil {
		t.Fatal(err)
	}
	keyID := ga.KeyID
	stranger := mesh.FreshIDs(t, 1, 0xB1)[0]
	origin := wire.RouteEntry{Origin: stranger.SID(), Seq: 1, Metric: 256, Hops: 1, MTU: 1500, HasSig: true}
	copy(origin.Sig[:], stranger.Sign(wire.SignedOrigin(stranger.SID(), 1)))
	data := func(port uint16, seq uint64, payload []byte) []byte {
		h := wire.DataHeader{Epoch: nData.Epoch, Seq: seq, Base: nData.Seq, TTL: 1, Dst: v.SID(), Src: n.SID(), DstPort: port, SrcPort: port}
		return append(wire.AppendData(nil, &h), payload...)
	}
	// Plain frames: each would change V's link or deliver if V took it.
	plain := func(i int) [][]byte {
		seq := nData.Seq + 1 + uint64(i)
		return [][]byte{
			data(1, seq, []byte("forged")),
			data(mesh.RoutingPort, seq, wire.AppendRouteMsg(nil, &wire.RouteMsg{Entries: []wire.RouteEntry{origin}})),
			wire.AppendAck(nil, &wire.Ack{Epoch: vData.Epoch, Cum: vData.Seq + 1<<20}),
			wire.AppendSkip(nil, nData.Epoch, nData.Seq+1<<20),
			wire.AppendProbeAck(nil, uint32(i), 60000),
		}
	}
	zeroTrailer := func(f []byte) []byte {
		b := append(bytes.Clone(f), make([]byte, wire.AuthLen)...)
		b[1] |= wire.FlagAuth
		return b
	}
	var ctr uint64 = 1 << 40
	randomTag := func(f []byte) []byte {
		ctr++
		b := wire.AppendAuthHeader(bytes.Clone(f), keyID, ctr)
		tag := make([]byte, wire.TagLen)
		rand.Read(tag)
		return append(b, tag...)
	}
	replays := [][]byte{nconn.frame(true, wire.TypeData), nconn.frame(true, wire.TypeAck)}

	c0 := linkDropsOf(v)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	echoes := make(chan echoResult, 1)
	const interval = 100 * time.Millisecond
	go func() { echoes <- tun.run(ctx, int(d/interval), interval) }()
	var want linkDrops
	start := time.Now()
	sent, err := pace(ctx, rounds, d, func(i int) error {
		var frames [][]byte
		for _, f := range plain(i) {
			frames = append(frames, f, zeroTrailer(f), randomTag(f))
			want.Unauthenticated++
			want.BadMAC += 2
		}
		// A PROBE under a wrong tag (a plain one is allowed: it is
		// answered, and changes nothing).
		frames = append(frames, randomTag(wire.AppendProbe(nil, uint32(i), 1472)))
		want.BadMAC++
		frames = append(frames, replays...)
		want.Replayed += uint64(len(replays))
		for _, f := range frames {
			if _, err := nconn.PacketConn.WriteTo(f, vaddr); err != nil {
				return err
			}
		}
		return nil
	})
	took := time.Since(start)
	if err != nil {
		t.Fatalf("forging: %v", err)
	}
	res := <-echoes
	// What was sent last is read by now: one more echo went through V's
	// read loop after it.
	tun.run(context.Background(), 1, 0)
	got := linkDropsOf(v).minus(c0)
	after, ok := neighbourOf(v, n.SID())
	t.Logf("%d rounds of %d forged frames in %v from N's address %s; V: %+v (want %+v); delivered on port 1: %d; N at %v, MTU %d (was %d)",
		sent, len(plain(0))*3+1+len(replays), took.Round(time.Millisecond), naddr, got, want, delivered.Load(), after.Addr, after.MTU, before.MTU)
	checkEchoes(t, "tunnel N - V while frames are forged from N's address", res)
	if sent < int(d.Seconds()*rounds) {
		t.Errorf("%d rounds sent, want %.0f", sent, d.Seconds()*rounds)
	}
	if got != want {
		t.Errorf("V's counters rose by %+v, want %+v", got, want)
	}
	if !ok {
		t.Fatal("N is no longer V's neighbour")
	}
	if after.Addr.String() != naddr {
		t.Errorf("N is V's neighbour at %v, want %s", after.Addr, naddr)
	}
	if !after.Up.Equal(before.Up) {
		t.Errorf("V's link to N was made again: up since %v, was %v", after.Up, before.Up)
	}
	if after.MTU != before.MTU {
		t.Errorf("the link's MTU at V went from %d to %d", before.MTU, after.MTU)
	}
	if delivered.Load() != 0 {
		t.Errorf("%d forged DATA frames delivered on V's port 1", delivered.Load())
	}
	for _, r := range v.Routes() {
		if r.SID == stranger.SID() {
			t.Errorf("V took the forged route to %s: %+v", stranger.SID().Short(), r)
		}
	}
}

// dropperM is the attacker M of point 2: a raw neighbour of A on its own
// loopback socket, joined with link keys. It acknowledges every DATA frame
// A sends it, takes C's signed entry from A's routing messages, drops the
// rest, and every 50 ms sends a hello and C's entry at the lowest metric a
// node other than C may claim (256: C one clean hop beyond M).
type dropperM struct {
	s       *floodSock
	id      *identity.Identity
	link    *mesh.AttackLink
	to      net.Addr
	toSID   identity.SID
	target  identity.SID
	entry   atomic.Pointer[wire.RouteEntry] // C's, as A sent it
	dropped atomic.Uint64
	acked   atomic.Uint64
}

func (m *dropperM) handle(b []byte) {
	f := m.link.Open(bytes.Clone(b))
	if typ, err := wire.Type(f); f == nil || err != nil || typ != wire.TypeData {
		return
	}
	h, payload, err := wire.ParseData(f)
	if err != nil {
		return
	}
	m.s.c.WriteTo(m.link.Seal(wire.AppendAck(nil, &wire.Ack{Epoch: h.Epoch, Cum: h.Seq + 1})), m.to)
	m.acked.Add(1)
	if h.Dst != m.id.SID() {
		m.dropped.Add(1)
		return
	}
	if h.DstPort != mesh.RoutingPort {
		return
	}
	var rm wire.RouteMsg
	if wire.ParseRouteMsg(payload, &rm) != nil {
		return
	}
	for _, e := range rm.Entries {
		if e.Origin == m.target && e.HasSig {
			if old := m.entry.Load(); old == nil || old.Seq < e.Seq {
				m.entry.Store(&e)
			}
		}
	}
}

func (m *dropperM) sendLoop(ctx context.Context, epoch uint32, helloSeq uint64) {
	tk := time.NewTicker(50 * time.Millisecond)
	defer tk.Stop()
	var dataSeq uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		helloSeq++
		h := wire.Hello{SID: m.id.SID(), To: m.toSID, Epoch: epoch, Seq: helloSeq, MTU: 1500, Echo: m.s.echo(), Eph: m.link.Eph()}
		h.Cookie[0] = 1
		m.s.c.WriteTo(wire.AppendHello(nil, h, m.id), m.to)
		// Until M has C's entry its routing messages are empty: A takes
		// M's link keys as confirmed, and sends M DATA, only once an
		// authenticated frame came from M.
		msg := &wire.RouteMsg{HasIHU: true, IHU: 255}
		if e := m.entry.Load(); e != nil {
			lie := *e
			lie.Metric, lie.Hops = 256, 1
			msg.Entries = []wire.RouteEntry{lie}
		}
		dataSeq++
		dh := wire.DataHeader{Epoch: epoch, Seq: dataSeq, Base: dataSeq, TTL: 1, Dst: m.toSID, Src: m.id.SID(), DstPort: mesh.RoutingPort, SrcPort: mesh.RoutingPort}
		m.s.c.WriteTo(m.link.Seal(wire.AppendRouteMsg(wire.AppendData(nil, &dh), msg)), m.to)
	}
}

// routeVia waits up to within until n's route to dst goes through next.
func routeVia(t testing.TB, n *mesh.Node, dst, next identity.SID, within time.Duration) mesh.Route {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, r := range n.Routes() {
			if r.SID == dst && r.NextHop == next {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's route to %s does not go through %s within %v: %+v", n.SID().Short(), dst.Short(), next.Short(), within, n.Routes())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAttackDroppingNeighbourUDP is point 2 of issue 9 (a neighbour that
// attracts traffic and drops it) on real sockets: A - B - D - C, honest
// nodes in the test process on loopback UDP sockets, and M (dropperM), the
// test on one more socket, a neighbour of A. M re-advertises C's genuine
// signed entry, taken from A's routing messages to it, one clean hop
// beyond it: 2 hops against the honest path's 3 (a two-hop honest path
// would only tie; see TestRerouteAroundDroppingRelay). A's route to C
// moves to M; of echoes through a session A - C sent every 100 ms for 10 s
// from then, at least 90% come back within 1 s: the session reports no
// progress, A's router marks M failing for C (mesh/avoid.go), and A's
// route to C is back through B.
func TestAttackDroppingNeighbourUDP(t *testing.T) {
	if testing.Short() {
		t.Skip("10 s of echoes")
	}
	t.Parallel()
	c := udpNode(t, attackCfg(t))
	dn := udpNode(t, attackCfg(t, c.LocalAddr()))
	b := udpNode(t, attackCfg(t, dn.LocalAddr()))
	a := udpNode(t, attackCfg(t, b.LocalAddr()))
	tun := newEchoTunnel(t, a, c)
	if r := routeVia(t, a, c.SID(), b.SID(), 20*time.Second); r.Hops != 3 {
		t.Fatalf("A's route to C: %+v, want 3 hops", r)
	}

	mid := mesh.FreshIDs(t, 1, 0xB2)[0]
	s := floodSocks(t, 1, a.LocalAddr(), true)[0]
	const epoch = 9
	_, hseq, link := joinAs(t, s, a.LocalAddr(), a.SID(), mid, epoch)
	m := &dropperM{s: s, id: mid, link: link, to: a.LocalAddr(), toSID: a.SID(), target: c.SID()}
	h := m.handle
	s.handle.Store(&h)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.sendLoop(ctx, epoch, hseq) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	s.waitFor(t, "routing message with C's signed entry", func() bool { return m.entry.Load() != nil })
	r := routeVia(t, a, c.SID(), mid.SID(), 10*time.Second)
	e := m.entry.Load()
	t.Logf("A's route to C through M: %+v (C's entry from A: seq %d, metric %d, hops %d)", r, e.Seq, e.Metric, e.Hops)
	s0 := a.Stats()
	st0 := tun.sess.Stats()
	marks0, _ := mesh.AvoidCounts(a)
	const interval = 100 * time.Millisecond
	d := 10 * time.Second
	ectx, ecancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer ecancel()
	res := tun.run(ectx, int(d/interval), interval)
	s1 := a.Stats()
	stalls := tun.sess.Stats().Stalls - st0.Stalls
	marks, ignored := mesh.AvoidCounts(a)
	var nextHop identity.SID
	for _, r := range a.Routes() {
		if r.SID == c.SID() {
			nextHop = r.NextHop
		}
	}
	t.Logf("M acknowledged %d frames and dropped %d; A's route to C at the end through %s (B %s, M %s); A: Relayed +%d, Delivered +%d",
		m.acked.Load(), m.dropped.Load(), nextHop.Short(), b.SID().Short(), mid.SID().Short(), s1.Relayed-s0.Relayed, s1.Delivered-s0.Delivered)
	t.Logf("session A - C: Stalls +%d; A's router: %d marks (+%d), %d reports of no progress ignored", stalls, marks, marks-marks0, ignored)
	t.Logf("echoes A - C for %v from the route's move to M: %s", d, res)
	if m.dropped.Load() == 0 {
		t.Fatal("M dropped nothing: it attracted no traffic, the test shows nothing")
	}
	if res.ok*10 < res.sent*9 {
		t.Errorf("%s; want at least 90%% within %v", res, echoLimit)
	}
	if stalls == 0 || marks-marks0 != 1 {
		t.Errorf("session stalls +%d, marks +%d: want the session's report of no progress to mark M once", stalls, marks-marks0)
	}
	if nextHop != b.SID() {
		t.Errorf("A's route to C goes through %s at the end, want B %s", nextHop.Short(), b.SID().Short())
	}
}
