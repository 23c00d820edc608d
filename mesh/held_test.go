package mesh

import (
	"testing"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

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
