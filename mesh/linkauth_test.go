package mesh

// Link keys and authenticated frames: forged, replayed and moved frames
// injected through the node's packet handler (inject calls n.handle as the
// read loop does), and a neighbour restarting under the same address.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

func TestLinkKeysAgree(t *testing.T) {
	a, b := forgedID(t), forgedID(t)
	ea, _ := newEph()
	eb, _ := newEph()
	ka, err := deriveLinkKeys(a.SID(), ea, b.SID(), ephPublic(eb))
	if err != nil {
		t.Fatal(err)
	}
	kb, err := deriveLinkKeys(b.SID(), eb, a.SID(), ephPublic(ea))
	if err != nil {
		t.Fatal(err)
	}
	if ka.txID != kb.rxID || ka.rxID != kb.txID || ka.txID == ka.rxID {
		t.Fatalf("key ids: a tx %x rx %x, b tx %x rx %x", ka.txID, ka.rxID, kb.txID, kb.rxID)
	}
	frame := append(wire.AppendData(nil, &wire.DataHeader{Seq: 1, TTL: 1}), "payload"...)
	sealed := ka.seal(bytes.Clone(frame), 7)
	af, err := wire.ParseAuth(sealed)
	if err != nil || !kb.open(&af) {
		t.Fatalf("b does not open a's frame: %v", err)
	}
	if ka.open(&af) {
		t.Fatal("a's frame opens under a's own receive key: directions share a key")
	}
	// Another ephemeral of b's (a new link): other keys.
	eb2, _ := newEph()
	kb2, err := deriveLinkKeys(b.SID(), eb2, a.SID(), ephPublic(ea))
	if err != nil {
		t.Fatal(err)
	}
	if kb2.open(&af) {
		t.Fatal("a frame of the old link opens under the new keys")
	}
	// A low-order point gives an all-zero secret: refused.
	if _, err := deriveLinkKeys(a.SID(), ea, b.SID(), wire.EphKey{}); err == nil {
		t.Fatal("keys derived from the zero key")
	}
}

func TestReplayWindow(t *testing.T) {
	var r replayState
	steps := []struct {
		ctr  uint64
		want bool
	}{
		{0, false}, // never sent
		{1, true}, {1, false},
		{5, true}, {3, true}, {3, false}, {2, true}, {5, false},
		{5 + replayWindow - 1, true}, {5, false}, {6, true}, {6, false},
		{6 + replayWindow, true}, {6, false}, // 6 fell out of the window
		{7, true}, {7, false}, {5 + replayWindow - 1, false}, {6 + replayWindow - 1, true},
		{1 << 40, true}, {1<<40 - replayWindow + 1, true}, {1<<40 - replayWindow, false},
	}
	for i, s := range steps {
		if got := r.accept(s.ctr); got != s.want {
			t.Fatalf("step %d: accept(%d) = %v, want %v", i, s.ctr, got, s.want)
		}
	}
}

// linkState is what a frame from a neighbour could change at the node.
type linkState struct {
	rxStarted           bool
	rxEpoch             uint32
	rxCum, rxTop        uint64
	rxSeen              int
	txBase, txNext      uint64
	txPeerCum           uint64
	mtu                 int32
	addr                string
	delivered, routes   int
	lastHeard           int64
	keys                *linkKeys
	routeSeq, routeCost string
}

func stateOf(t *testing.T, n *Node, sid identity.SID) linkState {
	t.Helper()
	n.mu.RLock()
	nb := n.bySID[sid]
	n.mu.RUnlock()
	if nb == nil {
		t.Fatalf("%s is no neighbour", sid.Short())
	}
	l := nb.link
	l.mu.Lock()
	s := linkState{rxStarted: l.rx.started, rxEpoch: l.rx.epoch, rxCum: l.rx.cum, rxTop: l.rx.top, rxSeen: l.rx.seenCount,
		txBase: l.tx.base, txNext: l.tx.nextSeq, txPeerCum: l.tx.peerCum}
	l.mu.Unlock()
	s.mtu = nb.mtu.Load()
	s.addr = nb.address().String()
	s.delivered = int(n.Stats().Delivered)
	s.routes = len(n.Routes())
	s.lastHeard = nb.lastHeard.Load()
	s.keys = nb.keys.Load()
	return s
}

// authCounters are the counters of frames dropped by link authentication.
type authCounters struct{ BadMAC, Unauthenticated, Replayed, UnknownSource, Malformed, Moved uint64 }

func authDrops(n *Node) authCounters {
	s := n.Stats()
	return authCounters{s.BadMAC, s.Unauthenticated, s.Replayed, s.UnknownSource, s.Malformed, s.Moved}
}

func (a authCounters) minus(b authCounters) authCounters {
	return authCounters{a.BadMAC - b.BadMAC, a.Unauthenticated - b.Unauthenticated, a.Replayed - b.Replayed,
		a.UnknownSource - b.UnknownSource, a.Malformed - b.Malformed, a.Moved - b.Moved}
}

// keyedNeighbour starts a node with a raw neighbour that has sent one
// authenticated DATA frame (seq 0, epoch 5) to the node's port 1, read
// there: the node holds confirmed keys for it and has started its link
// towards it.
func keyedNeighbour(t *testing.T) (*memnet.Network, *Node, *rawPeer, *identity.Identity, *PacketConn) {
	t.Helper()
	nw := forgedNet(t)
	n := forgedNode(t, nw.Listen())
	r, rid, _ := rawNeighbour(t, nw, n, 5)
	pc, err := n.Bind(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	r.send(append(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: 0, Base: 0, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), "first"...))
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if k, _, err := pc.ReadFrom(buf); err != nil || string(buf[:k]) != "first" {
		t.Fatalf("authenticated DATA not delivered: %q, %v", buf[:k], err)
	}
	r.barrier()
	n.mu.RLock()
	nb := n.bySID[rid.SID()]
	n.mu.RUnlock()
	if !nb.ready() {
		t.Fatal("the node's keys are not confirmed by an authenticated frame")
	}
	return nw, n, r, rid, pc
}

// foreignKeys returns keys of a link between other ephemerals that use
// the key ids of r's: frames sealed with them carry r's key id and a
// wrong tag.
func foreignKeys(t *testing.T, r *rawPeer, n *Node) *linkKeys {
	t.Helper()
	e1, _ := newEph()
	e2, _ := newEph()
	k, err := deriveLinkKeys(r.auth.sid, e1, n.SID(), ephPublic(e2))
	if err != nil {
		t.Fatal(err)
	}
	real := r.linkKeys()
	k.txID, k.rxID = real.txID, real.rxID
	return k
}

func TestForgedLinkFramesChangeNothing(t *testing.T) {
	_, n, r, rid, _ := keyedNeighbour(t)
	from := r.c.LocalAddr()
	// The node sends its routing table to r, which never acknowledges it:
	// a forged ACK would have frames in flight to mark done.
	deadline := time.Now().Add(5 * time.Second)
	for stateOf(t, n, rid.SID()).txNext == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the node sent r nothing")
		}
		time.Sleep(time.Millisecond)
	}
	wrong := foreignKeys(t, r, n)
	var wrongCtr uint64 = 1 << 32
	forge := func(frame []byte) []byte { wrongCtr++; return wrong.seal(bytes.Clone(frame), wrongCtr) }
	flipped := func(frame []byte) []byte {
		b := r.link(frame)
		b[len(b)-wire.AuthLen-1] ^= 1 // the last byte of the frame, after its tag was made
		return b
	}
	trailerless := func(frame []byte) []byte {
		b := append(bytes.Clone(frame), make([]byte, wire.AuthLen)...)
		b[1] |= wire.FlagAuth
		return b
	}

	n.mu.RLock()
	nb := n.bySID[rid.SID()]
	n.mu.RUnlock()
	data := append(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: 1, Base: 1, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), "forged"...)
	reset := append(wire.AppendData(nil, &wire.DataHeader{Epoch: 99, Seq: 500, Base: 500, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), "reset"...)
	origin := originEntries(t, 1)
	route := wire.AppendRouteMsg(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: 1, Base: 1, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}),
		&wire.RouteMsg{Entries: origin})
	ack := wire.AppendAck(nil, &wire.Ack{Epoch: nb.link.epoch, Cum: 1 << 20})
	skip := wire.AppendSkip(nil, 5, 1000)
	probeAck := wire.AppendProbeAck(nil, 32768, 32768)
	probe := wire.AppendProbe(nil, 1472, 1472-wire.AuthLen)

	before := stateOf(t, n, rid.SID())
	time.Sleep(2 * time.Millisecond) // so that liveness refreshed by a forged frame would show
	tests := []struct {
		name  string
		frame []byte
		want  authCounters
	}{
		{"plain DATA", data, authCounters{Unauthenticated: 1}},
		{"DATA under another key", forge(data), authCounters{BadMAC: 1}},
		{"DATA changed after its tag", flipped(data), authCounters{BadMAC: 1}},
		{"DATA flagged without a trailer", trailerless(data), authCounters{BadMAC: 1}},
		{"DATA of another epoch under another key", forge(reset), authCounters{BadMAC: 1}},
		{"plain routing message", route, authCounters{Unauthenticated: 1}},
		{"routing message under another key", forge(route), authCounters{BadMAC: 1}},
		{"plain ACK of everything", ack, authCounters{Unauthenticated: 1}},
		{"ACK under another key", forge(ack), authCounters{BadMAC: 1}},
		{"ACK changed after its tag", flipped(ack), authCounters{BadMAC: 1}},
		{"plain SKIP", skip, authCounters{Unauthenticated: 1}},
		{"SKIP under another key", forge(skip), authCounters{BadMAC: 1}},
		{"plain PROBEACK of 32768", probeAck, authCounters{Unauthenticated: 1}},
		{"PROBEACK under another key", forge(probeAck), authCounters{BadMAC: 1}},
		{"PROBE under another key", forge(probe), authCounters{BadMAC: 1}},
		{"flag on a 2-byte frame", []byte{wire.Magic, wire.TypeData | wire.FlagAuth}, authCounters{Malformed: 1}},
	}
	for _, tt := range tests {
		c0 := authDrops(n)
		inject(n, tt.frame, from)
		settle(t, n)
		if got := authDrops(n).minus(c0); got != tt.want {
			t.Errorf("%s: counters moved by %+v, want %+v", tt.name, got, tt.want)
		}
		if got := stateOf(t, n, rid.SID()); got != before {
			t.Fatalf("%s changed the link:\n%+v\nwas\n%+v", tt.name, got, before)
		}
	}
	if nb.mtu.Load() != baseMTU {
		t.Fatalf("MTU %d, want %d", nb.mtu.Load(), baseMTU)
	}

	// Control: the same ACK under r's key is taken, so the frames above
	// were dropped for their MAC, not for what they say; replayed, it is
	// dropped for its counter.
	good := r.link(wire.AppendAck(nil, &wire.Ack{Epoch: nb.link.epoch, Cum: before.txNext}))
	c0 := authDrops(n)
	inject(n, good, from)
	if got := stateOf(t, n, rid.SID()); got.txPeerCum != before.txNext || got.txBase != before.txNext {
		t.Fatalf("an authenticated ACK did not acknowledge: %+v", got)
	}
	after := stateOf(t, n, rid.SID())
	inject(n, good, from)
	if got := authDrops(n).minus(c0); got != (authCounters{Replayed: 1}) {
		t.Fatalf("replayed ACK: counters moved by %+v", got)
	}
	if got := stateOf(t, n, rid.SID()); got != after {
		t.Fatalf("a replayed ACK changed the link:\n%+v\nwas\n%+v", got, after)
	}
}

func TestReplayedLinkFramesChangeNothing(t *testing.T) {
	_, n, r, rid, pc := keyedNeighbour(t)
	from := r.c.LocalAddr()
	data := append(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: 1, Base: 0, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), "once"...)
	sealed := r.link(data)
	inject(n, sealed, from)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	if k, _, err := pc.ReadFrom(buf); err != nil || string(buf[:k]) != "once" {
		t.Fatalf("authenticated DATA not delivered: %q, %v", buf[:k], err)
	}
	skip := r.link(wire.AppendSkip(nil, 5, 2))
	inject(n, skip, from)
	before := stateOf(t, n, rid.SID())
	d0 := n.Stats()
	c0 := authDrops(n)
	for range 3 {
		inject(n, sealed, from)
		inject(n, skip, from)
	}
	if got := authDrops(n).minus(c0); got != (authCounters{Replayed: 6}) {
		t.Fatalf("replays: counters moved by %+v, want Replayed +6", got)
	}
	if got := stateOf(t, n, rid.SID()); got != before {
		t.Fatalf("replays changed the link:\n%+v\nwas\n%+v", got, before)
	}
	// Past the counter window (the same frame sealed again with a new
	// counter, as a retransmission is): the link's sequence numbers make
	// it a duplicate, not delivered again.
	inject(n, r.link(data), from)
	d1 := n.Stats()
	if d1.Duplicates != d0.Duplicates+1 || d1.Delivered != d0.Delivered {
		t.Fatalf("DATA sent again: Duplicates +%d, Delivered +%d; want +1, +0", d1.Duplicates-d0.Duplicates, d1.Delivered-d0.Delivered)
	}
}

func TestAddressMovesOnlyOnAuthenticatedFrame(t *testing.T) {
	nw, n, r, rid, pc := keyedNeighbour(t)
	home := r.c.LocalAddr().String()
	moved := nw.Listen() // r's new address after a NAT rebinding
	defer moved.Close()
	wrong := foreignKeys(t, r, n)
	frame := func(seq uint64, what string) []byte {
		return append(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: seq, Base: 0, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), what...)
	}
	old := r.link(frame(1, "old"))
	inject(n, old, r.c.LocalAddr())
	addrOf := func() string { return stateOf(t, n, rid.SID()).addr }
	unknown := wrong.seal(frame(2, "unknown"), 1<<34)
	unknown[len(unknown)-wire.AuthLen] ^= 0xFF // a key id that is nobody's

	tests := []struct {
		name  string
		frame []byte
		want  authCounters
	}{
		{"plain DATA", frame(2, "plain"), authCounters{UnknownSource: 1}},
		{"DATA with r's key id and a wrong tag", wrong.seal(frame(2, "wrong"), 1<<33), authCounters{BadMAC: 1}},
		{"replay of r's last frame", old, authCounters{Replayed: 1}},
		{"DATA with an unknown key id", unknown, authCounters{UnknownSource: 1}},
	}
	for _, tt := range tests {
		c0 := authDrops(n)
		inject(n, tt.frame, moved.LocalAddr())
		if got := authDrops(n).minus(c0); got != tt.want {
			t.Errorf("%s: counters moved by %+v, want %+v", tt.name, got, tt.want)
		}
		if got := addrOf(); got != home {
			t.Fatalf("%s moved r to %s", tt.name, got)
		}
	}

	// A fresh authenticated frame from the new address moves r there, and
	// the node's frames (the ACK of it) go there.
	c0 := authDrops(n)
	if _, err := moved.WriteTo(r.link(frame(2, "moved")), n.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	for {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("DATA from the new address not delivered: %v", err)
		}
		if string(buf[:k]) == "moved" {
			break
		}
	}
	if got := authDrops(n).minus(c0); got != (authCounters{Moved: 1}) {
		t.Fatalf("counters moved by %+v, want Moved +1", got)
	}
	if got := addrOf(); got != moved.LocalAddr().String() {
		t.Fatalf("r at %s, want %s", got, moved.LocalAddr())
	}
	moved.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		k, _, err := moved.ReadFrom(buf[:cap(buf)])
		if err != nil {
			t.Fatalf("no ACK to the new address: %v", err)
		}
		if typ, _ := wire.Type(buf[:k]); typ == wire.TypeAck|wire.FlagAuth {
			a, err := wire.ParseAuth(buf[:k])
			if err != nil || !r.linkKeys().open(&a) {
				t.Fatalf("the ACK to the new address does not pass r's key: %v", err)
			}
			break
		}
	}
}

// reopenable is a socket a node can close and another node with the
// same identity open again at the same address: a restart.
type reopenable struct {
	*memnet.Conn
	closed atomic.Bool
}

func (c *reopenable) ReadFrom(p []byte) (int, net.Addr, error) {
	k, from, err := c.Conn.ReadFrom(p)
	if c.closed.Load() {
		return 0, nil, net.ErrClosed
	}
	return k, from, err
}

func (c *reopenable) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.WriteTo(p, addr)
}

func (c *reopenable) Close() error {
	c.closed.Store(true)
	return c.Conn.SetReadDeadline(time.Now())
}

func TestNeighbourRestartRekeys(t *testing.T) {
	nw := forgedNet(t)
	ca, cb := nw.Listen(), nw.Listen()
	defer cb.Close()
	cfg := Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: 5 * time.Second}
	a := startNode(t, cfg, ca, cb.LocalAddr())
	bid := forgedID(t)
	cfgB := cfg
	cfgB.Identity = bid
	b1 := startNode(t, cfgB, &reopenable{Conn: cb}, ca.LocalAddr())
	reachBoth(t, a, b1)
	exchange(t, a, b1, 7, "before")
	keys1 := stateOf(t, a, bid.SID()).keys

	b1.Close()
	cb.SetReadDeadline(time.Time{})
	b2 := startNode(t, cfgB, &reopenable{Conn: cb}, ca.LocalAddr())
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := stateOf(t, a, bid.SID())
		if n.keys != nil && n.keys != keys1 && n.keys.confirmed.Load() { // nil between the restart and its hello to us
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a did not re-key its link to the restarted b")
		}
		time.Sleep(5 * time.Millisecond)
	}
	exchange(t, a, b2, 8, "after the restart")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b2.WaitReachable(ctx, a.SID()); err != nil {
		t.Fatal(err)
	}
	t.Logf("a: %+v", authDrops(a))
}

// BenchmarkLinkAuth is the per-frame cost of link authentication: seal at
// the sender, tag and counter check at the receiver, for a frame of the
// base MTU and one of the largest probe size.
func BenchmarkLinkAuth(b *testing.B) {
	a, c := forgedID(b), forgedID(b)
	ea, _ := newEph()
	ec, _ := newEph()
	ka, _ := deriveLinkKeys(a.SID(), ea, c.SID(), ephPublic(ec))
	kc, _ := deriveLinkKeys(c.SID(), ec, a.SID(), ephPublic(ea))
	var ctr uint64 // across runs: kc's replay window remembers
	for _, size := range []int{baseMTU, probeSizes[0] - wire.AuthLen} {
		b.Run(fmt.Sprintf("frame=%d", size), func(b *testing.B) {
			frame := make([]byte, size, size+wire.AuthLen)
			frame[0], frame[1] = wire.Magic, wire.TypeData
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				ctr++
				sealed := ka.seal(frame[:size], ctr)
				af, err := wire.ParseAuth(sealed)
				if err != nil || !kc.open(&af) || !kc.fresh(af.Counter) {
					b.Fatal("frame did not pass")
				}
			}
		})
	}
}
