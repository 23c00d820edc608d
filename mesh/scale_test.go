package mesh

import (
	"testing"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// Fixes found by the scale benchmarks (scale_bench_test.go).

// TestHeldRoutingFrameKeepsOnlyItsBytes: a routing message that arrives
// ahead of a lost frame is held until the gap fills (link_recv.go), and it
// used to be held in the read loop's 64 KiB buffer: 64 held per link, over
// the 1500 link ends of BenchmarkMesh500, pinned gigabytes. Held, it keeps a
// copy of its own size.
func TestHeldRoutingFrameKeepsOnlyItsBytes(t *testing.T) {
	m := newMemMesh(t, 2, [][2]int{{0, 1}}, Config{HelloInterval: time.Minute, NeighbourTimeout: 2 * time.Minute})
	a, b := m.nodes[0], m.nodes[1]
	m.waitRoute(0, 1, 1, 1, 10*time.Second)
	a.mu.RLock()
	l := a.bySID[b.SID()].link
	a.mu.RUnlock()

	l.mu.Lock()
	epoch, seq := l.rx.epoch, l.rx.cum+10 // a gap below it: held
	l.mu.Unlock()
	h := wire.DataHeader{Epoch: epoch, Seq: seq, Base: seq - 10, TTL: 1, Dst: a.SID(), Src: b.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}
	frame := wire.AppendRouteMsg(wire.AppendData(nil, &h), &wire.RouteMsg{HasIHU: true, IHU: 255})
	bp := a.bufs.get(maxDatagram) // as the read loop reads
	*bp = append((*bp)[:0], frame...)
	l.receiveData(bp)

	l.mu.Lock()
	defer l.mu.Unlock()
	for _, f := range l.rx.ctlHeld {
		if f.seq == seq {
			if string(*f.bp) != string(frame) {
				t.Fatalf("held frame changed: % x, want % x", *f.bp, frame)
			}
			if cap(*f.bp) > smallBuf {
				t.Fatalf("a held frame of %d bytes keeps a buffer of %d", len(frame), cap(*f.bp))
			}
			return
		}
	}
	t.Fatalf("frame %d not held (held: %d frames)", seq, len(l.rx.ctlHeld))
}

// TestLostSignatureAskedAgain: a node that lost the routing message
// carrying an origin's signature (its verifier's queue was full: the
// message was acknowledged on the link, then dropped) hears the origin
// from then on without the signature, which proves nothing. It asks the
// neighbour, which sends the signature again at once; before, the origin
// stayed unknown there until the neighbour's next full table with
// signatures (every sigEvery*dumpEvery = 48 hello intervals) or the
// origin's next sequence number (60).
func TestLostSignatureAskedAgain(t *testing.T) {
	m := newMemMesh(t, 3, [][2]int{{0, 1}, {1, 2}}, Config{HelloInterval: time.Second, NeighbourTimeout: 5 * time.Second})
	a, b, o := m.nodes[0], m.nodes[1], m.nodes[2]
	m.waitRoute(0, 2, 2, 1, 10*time.Second)
	// A forgets O, as if the message with its signature had been lost.
	a.mu.RLock()
	nbB := a.bySID[b.SID()]
	a.mu.RUnlock()
	a.router.mu.Lock()
	delete(a.router.routes, o.SID())
	delete(a.router.adverts[nbB], o.SID())
	a.router.mu.Unlock()
	if _, found := reachable(a, o.SID()); found {
		t.Fatal("A still routes to O")
	}
	// B's table without signatures, as its periodic ones are.
	b.mu.RLock()
	nbA := b.bySID[a.SID()]
	b.mu.RUnlock()
	b.router.sendTable(nbA, false)
	m.waitRoute(0, 2, 2, 1, 5*time.Second)
}
