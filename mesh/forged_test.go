package mesh

// Frames injected from the side: forged and replayed hellos, and malformed
// frames of every type, written as raw bytes from memnet endpoints that are
// not nodes. Each injection is followed by a barrier (a PROBE whose answer
// comes back only after the node's read loop has handled everything queued
// before it), so the counters are checked without waiting on the clock.

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// forgedNet returns a memnet Network with a logged seed, closed at the end.
func forgedNet(t *testing.T) *memnet.Network {
	t.Helper()
	seed := rand.Int64()
	t.Logf("memnet seed %d", seed)
	nw := memnet.New(seed)
	t.Cleanup(func() { nw.Close() })
	return nw
}

func forgedID(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// forgedNode starts a node on conn. Hellos are rare, so that only the ones
// a test provokes are sent.
func forgedNode(t *testing.T, conn net.PacketConn, peers ...net.Addr) *Node {
	t.Helper()
	return StartNode(t, Config{HelloInterval: time.Minute, NeighbourTimeout: 2 * time.Minute}, conn, peers)
}

// helloTap records the hellos a node sends.
type helloTap struct {
	net.PacketConn
	mu     sync.Mutex
	hellos [][]byte
	more   chan struct{}
}

func (c *helloTap) WriteTo(p []byte, addr net.Addr) (int, error) {
	k, err := c.PacketConn.WriteTo(p, addr)
	if typ, terr := wire.Type(p); terr == nil && typ == wire.TypeHello && err == nil {
		c.mu.Lock()
		c.hellos = append(c.hellos, bytes.Clone(p))
		c.mu.Unlock()
		select {
		case c.more <- struct{}{}:
		default:
		}
	}
	return k, err
}

func (c *helloTap) waitHellos(t *testing.T, n int) [][]byte {
	t.Helper()
	tm := time.NewTimer(5 * time.Second)
	defer tm.Stop()
	for {
		c.mu.Lock()
		got := append([][]byte(nil), c.hellos...)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.more:
		case <-tm.C:
			t.Fatalf("%d hellos sent, want %d", len(got), n)
		}
	}
}

// rawPeer is a memnet endpoint driven by the test.
type rawPeer struct {
	t      testing.TB
	c      *memnet.Conn
	to     net.Addr // the node under test
	n      *Node    // the node under test, if in this process: barrier waits for its verifier too
	nextID uint32
	auth   *rawAuth // r's side of its link keys, once it joined (linkauth_helpers_test.go)
}

// send writes b to the node; a DATA, ACK, SKIP or PROBEACK frame of a
// peer that joined goes authenticated under its link key.
func (r *rawPeer) send(b []byte) {
	r.t.Helper()
	if r.auth != nil && isLinkFrame(b) {
		b = r.link(b)
	}
	if _, err := r.c.WriteTo(b, r.to); err != nil {
		r.t.Fatalf("inject: %v", err)
	}
}

// barrier returns once the node has handled everything r sent before:
// the node answers PROBEs in its read loop, in arrival order.
func (r *rawPeer) barrier() {
	r.t.Helper()
	r.nextID++
	id := r.nextID | 0x80000000 // never a probe size the node could confuse
	r.send(wire.AppendProbe(nil, id, wire.ProbeLen))
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer r.c.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	for {
		k, _, err := r.c.ReadFrom(buf)
		if err != nil {
			r.t.Fatalf("barrier: no PROBEACK %d: %v", id, err)
		}
		typ, err := wire.Type(buf[:k])
		if err == nil && typ == wire.TypeHello {
			r.heard(buf[:k])
		}
		if err != nil || typ != wire.TypeProbeAck {
			continue
		}
		if got, _, err := wire.ParseProbeAck(buf[:k]); err == nil && got == id {
			if r.n != nil {
				settle(r.t, r.n)
			}
			return
		}
	}
}

// dropCounters are the counters of frames a node rejects.
type dropCounters struct {
	Malformed, UnknownSource, BadHello, StaleHello, CookiesSent uint64
}

func drops(n *Node) dropCounters {
	s := n.Stats()
	return dropCounters{s.Malformed, s.UnknownSource, s.BadHello, s.StaleHello, s.CookiesSent}
}

func TestForgedHelloDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn, cp := nw.Listen(), nw.Listen()
		n := forgedNode(t, cn)
		tap := &helloTap{PacketConn: cp, more: make(chan struct{}, 1)}
		p := forgedNode(t, tap, cn.LocalAddr())

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.WaitReachable(ctx, p.SID()); err != nil {
			t.Fatal(err)
		}
		if err := p.WaitReachable(ctx, n.SID()); err != nil {
			t.Fatal(err)
		}
		// p's first hello got a COOKIE; its second echoed it and made p a
		// neighbour of n; its third answered n's.
		hellos := tap.waitHellos(t, 3)
		first, latest := hellos[0], hellos[len(hellos)-1]
		h1, err := wire.ParseHello(first)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := wire.ParseHello(latest)
		if err != nil {
			t.Fatal(err)
		}
		if h1.Seq >= h2.Seq {
			t.Fatalf("hello seqs %d then %d do not grow", h1.Seq, h2.Seq)
		}

		attackerID := forgedID(t)
		x := &rawPeer{t: t, c: nw.Listen(), to: cn.LocalAddr(), n: n}
		defer x.c.Close()
		x.barrier() // p's hellos are handled too: they were queued before
		// The attacker receives at its address, so it can echo n's cookie
		// and get its hellos as far as the signature check.
		echo := askCookie(t, x.c, cn.LocalAddr(), attackerID)
		before := n.Neighbours()
		if len(before) != 1 || before[0].SID != p.SID() || before[0].Addr.String() != cp.LocalAddr().String() {
			t.Fatalf("neighbours before the attack: %+v", before)
		}
		d0 := drops(n)

		// p's SID with a newer Seq, but signed by the attacker.
		forged := wire.AppendHello(nil, wire.Hello{SID: p.SID(), Epoch: h2.Epoch, Seq: h2.Seq + 1000, MTU: h2.MTU, Echo: echo}, attackerID)
		// The attacker's own hello with one signature bit flipped.
		flipped := wire.AppendHello(nil, wire.Hello{SID: attackerID.SID(), Seq: 2, MTU: 1500, Echo: echo}, attackerID)
		flipped[len(flipped)-1] ^= 1
		// A new SID nobody holds the key of.
		var stranger identity.SID
		stranger[0] = 0x42
		unknown := wire.AppendHello(nil, wire.Hello{SID: stranger, Seq: 1, Echo: echo}, attackerID)

		// A replay from another address does not echo a cookie for that
		// address: it gets a COOKIE and nothing else.
		steps := []struct {
			name               string
			frame              []byte
			from               *memnet.Conn
			bad, stale, cookie uint64
		}{
			{"forged signature from another address", forged, x.c, 1, 0, 0},
			{"flipped signature bit", flipped, x.c, 1, 0, 0},
			{"forged signature for an unknown SID", unknown, x.c, 1, 0, 0},
			{"replay of the first hello from another address", first, x.c, 0, 0, 1},
			{"replay of the latest hello from another address", latest, x.c, 0, 0, 1},
			{"replay of the latest hello from the peer's own address", latest, cp, 0, 1, 0},
			{"replay of the first hello (no echo) from the peer's own address", first, cp, 0, 0, 1},
		}
		for _, st := range steps {
			b := drops(n)
			if _, err := st.from.WriteTo(st.frame, cn.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			x.barrier()
			a := drops(n)
			if a.BadHello-b.BadHello != st.bad || a.StaleHello-b.StaleHello != st.stale || a.CookiesSent-b.CookiesSent != st.cookie {
				t.Errorf("%s: BadHello +%d, StaleHello +%d, CookiesSent +%d; want +%d, +%d, +%d",
					st.name, a.BadHello-b.BadHello, a.StaleHello-b.StaleHello, a.CookiesSent-b.CookiesSent, st.bad, st.stale, st.cookie)
			}
			after := n.Neighbours()
			if len(after) != 1 || after[0].SID != p.SID() || after[0].Addr.String() != cp.LocalAddr().String() {
				t.Fatalf("%s: neighbour table changed: %+v", st.name, after)
			}
		}
		d1 := drops(n)
		if d1.BadHello-d0.BadHello != 3 || d1.StaleHello-d0.StaleHello != 1 {
			t.Errorf("in all: BadHello +%d, StaleHello +%d; want +3, +1", d1.BadHello-d0.BadHello, d1.StaleHello-d0.StaleHello)
		}

		// The attacker did not become a neighbour: its DATA is from nowhere.
		x.send(append(wire.AppendData(nil, &wire.DataHeader{TTL: 1, Dst: n.SID(), Src: p.SID(), DstPort: 1}), "spoofed"...))
		x.barrier()
		if got := drops(n).UnknownSource - d1.UnknownSource; got != 1 {
			t.Errorf("DATA from the attacker's address: UnknownSource +%d, want +1", got)
		}

		// The real link still works, in both directions.
		exchange(t, n, p, 9, "still here")

		// Control: a hello the attacker signs for its own SID is accepted, so
		// the frames above were rejected for what they are, not for the path.
		x.send(wire.AppendHello(nil, wire.Hello{SID: attackerID.SID(), Seq: 3, MTU: 1500, Echo: echo}, attackerID))
		x.barrier()
		if got := n.Neighbours(); len(got) != 2 {
			t.Fatalf("an honest hello from the attacker's address was not accepted: %+v", got)
		}
		t.Logf("node stats: %+v", n.Stats())
	})
}

func TestMalformedFramesCounted(t *testing.T) {
	nw := forgedNet(t)
	cn := nw.Listen()
	n := forgedNode(t, cn)
	// A neighbour made of raw bytes: its frames reach every decoder.
	r, rid, _ := rawNeighbour(t, nw, n, 5)
	if nbs := n.Neighbours(); len(nbs) != 1 || nbs[0].SID != rid.SID() {
		t.Fatalf("raw peer is not a neighbour: %+v", nbs)
	}

	hello := wire.AppendHello(nil, wire.Hello{SID: rid.SID(), Epoch: 5, Seq: 3, MTU: 1500}, rid)
	data := append(wire.AppendData(nil, &wire.DataHeader{Epoch: 5, Seq: 3, Base: 3, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 1}), "x"...)
	cut := func(b []byte, k int) []byte { return bytes.Clone(b[:k]) }
	plus := func(b []byte) []byte { return append(bytes.Clone(b), 0) }
	ack := wire.AppendAck(nil, &wire.Ack{Epoch: 1, Cum: 10, Ranges: []wire.Range{{Start: 12, End: 14}, {Start: 20, End: 21}}})
	overlong := append(cut(ack, 15), 0x81, 0x00, 0x00) // gap 1 in two bytes, length 0
	baseAbove := bytes.Clone(data)
	baseAbove[14+7]++ // Base = Seq+1
	probeAck := wire.AppendProbeAck(nil, 1, 100)
	skip := wire.AppendSkip(nil, 5, 1)

	const (
		malformed = "Malformed"
		badHello  = "BadHello"
		unchecked = ""
	)
	tests := []struct {
		name    string
		frame   []byte
		counter string
	}{
		{"empty datagram", []byte{}, malformed},
		{"magic only", []byte{wire.Magic}, malformed},
		{"bad magic", append([]byte{wire.Magic ^ 0xFF}, data[1:]...), malformed},
		{"unknown type", []byte{wire.Magic, 0xEE, 1, 2, 3}, malformed},
		{"type zero", []byte{wire.Magic, 0}, malformed},
		// A hello that does not decode is counted with the forged ones.
		{"hello header only", cut(hello, 2), badHello},
		{"hello truncated", cut(hello, wire.HelloLen-1), badHello},
		{"hello trailing byte", plus(hello), badHello},
		{"data header only", cut(data, 2), malformed},
		{"data truncated", cut(data, wire.DataHeaderLen-1), malformed},
		{"data base above seq", baseAbove, malformed},
		{"ack header only", cut(ack, 2), malformed},
		{"ack without range count", cut(ack, 14), malformed},
		{"ack truncated range", cut(ack, len(ack)-1), malformed},
		{"ack trailing byte", plus(ack), malformed},
		{"ack with an overlong number", overlong, malformed},
		{"probe truncated", []byte{wire.Magic, wire.TypeProbe, 0, 0, 0}, malformed},
		{"probe ack truncated", cut(probeAck, len(probeAck)-1), malformed},
		{"probe ack trailing byte", plus(probeAck), malformed},
		{"skip truncated", cut(skip, wire.SkipLen-1), malformed},
		{"skip trailing byte", plus(skip), malformed},
		// Type 6 was ROUTE; whether a garbled one is counted as Malformed
		// or BadRoute is the router's business. Here it only must not
		// break the node.
		{"route header only", []byte{wire.Magic, 6}, unchecked},
		{"route garbage", append([]byte{wire.Magic, 6}, bytes.Repeat([]byte{0xFF}, 300)...), unchecked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := drops(n)
			r.send(tt.frame)
			r.barrier()
			a := drops(n)
			got := dropCounters{a.Malformed - b.Malformed, a.UnknownSource - b.UnknownSource, a.BadHello - b.BadHello, a.StaleHello - b.StaleHello, a.CookiesSent - b.CookiesSent}
			var want dropCounters
			switch tt.counter {
			case malformed:
				want.Malformed = 1
			case badHello:
				want.BadHello = 1
			case unchecked:
				t.Logf("counted %+v", got)
				return
			}
			if got != want {
				t.Fatalf("counters moved by %+v, want %+v", got, want)
			}
		})
	}
	// The neighbour survived all of it and still delivers.
	if nbs := n.Neighbours(); len(nbs) != 1 || nbs[0].SID != rid.SID() {
		t.Fatalf("neighbour lost: %+v", nbs)
	}
	pc, err := n.Bind(1)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	good := append(wire.AppendData(nil, &wire.DataHeader{Epoch: 6, Seq: 0, Base: 0, TTL: 1, Dst: n.SID(), Src: rid.SID(), DstPort: 1, SrcPort: 2}), "intact"...)
	r.send(good)
	pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	k, from, err := pc.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "intact" || from != (Addr{SID: rid.SID(), Port: 2}) {
		t.Fatalf("after malformed frames: %q from %v, %v", buf[:k], from, err)
	}
	t.Logf("node stats: %+v", n.Stats())
}
