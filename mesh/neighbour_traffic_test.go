package mesh_test

// Per-neighbour traffic counters and the inbound loss estimate, on one
// memnet link that loses frames in one direction only.

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// mustNeighbour returns n's entry for sid.
func mustNeighbour(t *testing.T, n *mesh.Node, sid identity.SID) mesh.Neighbour {
	t.Helper()
	nb, ok := neighbourOf(n, sid)
	if !ok {
		t.Fatalf("%s has no neighbour %s", n.SID().Short(), sid.Short())
	}
	return nb
}

func TestNeighbourTraffic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := meshtest.Pair(t, memnet.LinkConfig{Delay: 5 * time.Millisecond}, meshtest.Timers(100*time.Millisecond, 3*time.Second))
		a, b := m.Nodes[0], m.Nodes[1]
		// a → b loses 15% of its datagrams; b → a none.
		m.Net.SetLink(m.Conns[0].LocalAddr(), m.Conns[1].LocalAddr(), memnet.LinkConfig{Loss: 0.15, Delay: 5 * time.Millisecond})
		abBefore := mustNeighbour(t, a, b.SID())
		baBefore := mustNeighbour(t, b, a.SID())

		pa, err := a.Bind(100)
		if err != nil {
			t.Fatal(err)
		}
		defer pa.Close()
		pb, err := b.Bind(100)
		if err != nil {
			t.Fatal(err)
		}
		defer pb.Close()
		const count, size = 400, 1000
		go func() {
			buf := make([]byte, size)
			pa.SetWriteDeadline(time.Now().Add(30 * time.Second))
			for range count {
				if _, err := pa.WriteTo(buf, pb.LocalAddr()); err != nil {
					return
				}
			}
		}()
		buf := make([]byte, 2048)
		pb.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := range count {
			if _, _, err := pb.ReadFrom(buf); err != nil {
				t.Fatalf("datagram %d: %v", i, err)
			}
		}
		time.Sleep(500 * time.Millisecond) // the last ACKs arrive
		synctest.Wait()

		ab, ba := mustNeighbour(t, a, b.SID()), mustNeighbour(t, b, a.SID())
		t.Logf("a→b: out %d frames %d bytes (before %d, %d), loss out %.3f, loss in %.3f", ab.FramesOut, ab.BytesOut, abBefore.FramesOut, abBefore.BytesOut, ab.Loss, ab.LossIn)
		t.Logf("b←a: in %d frames %d bytes (before %d, %d), loss in %.3f; out %d frames %d bytes", ba.FramesIn, ba.BytesIn, baBefore.FramesIn, baBefore.BytesIn, ba.LossIn, ba.FramesOut, ba.BytesOut)
		if got := ba.BytesIn - baBefore.BytesIn; got < count*size {
			t.Errorf("b counted %d bytes in from a, want at least the %d of the datagrams", got, count*size)
		}
		if got := ba.FramesIn - baBefore.FramesIn; got < count {
			t.Errorf("b counted %d frames in from a, want at least %d", got, count)
		}
		// a sent more than b received: the lost frames and their resends.
		if ab.FramesOut <= ba.FramesIn || ab.BytesOut <= ba.BytesIn {
			t.Errorf("a sent b %d frames (%d bytes), b received %d (%d): the loss did not show", ab.FramesOut, ab.BytesOut, ba.FramesIn, ba.BytesIn)
		}
		// b → a loses nothing: what b sent, a received (ACKs, routing
		// messages), but for a frame or two on its way (periodic routing
		// traffic goes on).
		if d := int64(ba.FramesOut) - int64(ab.FramesIn); d < 0 || d > 2 || ba.BytesOut < ab.BytesIn {
			t.Errorf("lossless b→a: b sent %d frames (%d bytes), a received %d (%d)", ba.FramesOut, ba.BytesOut, ab.FramesIn, ab.BytesIn)
		}
		if ba.LossIn < 0.05 || ba.LossIn > 0.3 {
			t.Errorf("b's loss in from a %.3f, want about 0.15", ba.LossIn)
		}
		if ab.LossIn != 0 {
			t.Errorf("a's loss in from b %.3f over a lossless direction, want 0", ab.LossIn)
		}
		if ab.Loss == 0 {
			t.Errorf("a's loss out towards b is 0 over a lossy direction")
		}
	})
}
