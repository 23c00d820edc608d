package msp

// A stream across a lossy link: per-hop retransmission (mesh) should absorb
// nearly all the loss, so the end-to-end layer (arq) resends little.

import (
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// memNodes starts two mesh nodes on memnet whose link has cfg each way; a
// knows b as a peer. They are neighbours when it returns.
func memNodes(t testing.TB, cfg memnet.LinkConfig) (a, b *mesh.Node, nw *memnet.Network) {
	t.Helper()
	m := meshtest.Pair(t, cfg, meshtest.Timers(100*time.Millisecond, 3*time.Second))
	return m.Nodes[0], m.Nodes[1], m.Net
}

// hashSinkResult is what a sink read from one stream.
type hashSinkResult struct {
	n   int64
	sum [32]byte
	err error
}

// hashSink hashes everything each accepted stream carries and reports it.
func hashSink(l *Listener) <-chan hashSinkResult {
	out := make(chan hashSinkResult, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			out <- hashSinkResult{err: err}
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Minute))
		h := sha256.New()
		n, err := io.Copy(h, c)
		var r hashSinkResult
		r.n, r.err = n, err
		copy(r.sum[:], h.Sum(nil))
		out <- r
	}()
	return out
}

func TestLossyStreamPerHopAbsorbsLoss(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		size := 16 << 20
		if testing.Short() {
			size = 2 << 20
		}
		a, b, nw := memNodes(t, memnet.LinkConfig{Loss: 0.2, Delay: 5 * time.Millisecond})
		l, err := listenMesh(b, 5000, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		results := hashSink(l)

		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		s, err := dialMesh(ctx, a, b.SID(), 5000, Config{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()

		data := make([]byte, size)
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		want := sha256.Sum256(data)
		a0, b0 := a.Stats(), b.Stats()
		start := time.Now()
		st.SetWriteDeadline(time.Now().Add(2 * time.Minute))
		if _, err := st.Write(data); err != nil {
			t.Fatalf("write: %v (session %+v)", err, s.Stats())
		}
		if err := st.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		var r hashSinkResult
		select {
		case r = <-results:
		case <-ctx.Done():
			t.Fatalf("sink got nothing in time (session %+v)", s.Stats())
		}
		elapsed := time.Since(start)
		if r.err != nil || r.n != int64(size) || r.sum != want {
			t.Fatalf("sink read %d of %d bytes (err %v), hash match %v", r.n, size, r.err, r.sum == want)
		}

		a1, b1 := a.Stats(), b.Stats()
		e2e := s.Stats()
		perHop := (a1.Retransmits - a0.Retransmits) + (b1.Retransmits - b0.Retransmits)
		ab, ba := nw.LinkStats(a.LocalAddr(), b.LocalAddr()), nw.LinkStats(b.LocalAddr(), a.LocalAddr())
		t.Logf("%d MiB in %v (%.1f MiB/s) over 20%% loss each way, 5 ms delay",
			size>>20, elapsed.Round(time.Millisecond), float64(size)/(1<<20)/elapsed.Seconds())
		t.Logf("link a->b: sent %d, lost %d; b->a: sent %d, lost %d", ab.Sent, ab.Lost, ba.Sent, ba.Lost)
		t.Logf("per hop: %d retransmits (a %d: fast %d, timeouts %d, abandoned %d; b %d: fast %d, timeouts %d, abandoned %d); duplicates at b %d",
			perHop, a1.Retransmits-a0.Retransmits, a1.FastRetransmits-a0.FastRetransmits, a1.Timeouts-a0.Timeouts, a1.Abandoned-a0.Abandoned,
			b1.Retransmits-b0.Retransmits, b1.FastRetransmits-b0.FastRetransmits, b1.Timeouts-b0.Timeouts, b1.Abandoned-b0.Abandoned,
			b1.Duplicates-b0.Duplicates)
		t.Logf("end to end: %d packets sent, %d declared lost (%d spurious), %d PTOs, %d bytes retransmitted of %d sent",
			e2e.PacketsSent, e2e.PacketsLost, e2e.SpuriousRetransmits, e2e.PTOs, e2e.BytesRetransmitted, e2e.BytesSent)
		t.Logf("end to end: srtt %v, minRTT %v, reordering window %v, cwnd cuts %d (undone %d)", e2e.SRTT, e2e.MinRTT, e2e.ReorderWindow, e2e.CongestionEvents, e2e.CwndUndos)
		t.Logf("ratio: per-hop retransmits / end-to-end packets lost (declared and never acknowledged) = %d / %d; end-to-end bytes resent %.3f%% of bytes sent",
			perHop, e2e.PacketsLost-e2e.SpuriousRetransmits, 100*float64(e2e.BytesRetransmitted)/float64(max(e2e.BytesSent, 1)))
		if ab.Lost == 0 || ba.Lost == 0 || perHop == 0 {
			t.Fatalf("no loss seen (lost %d/%d, %d per-hop retransmits): the link settings were not applied", ab.Lost, ba.Lost, perHop)
		}
		// The point of per-hop reliability: the end-to-end layer sees (nearly)
		// none of the loss. Packets it declares lost and then sees acknowledged
		// were late (held back by a per-hop retransmission), not lost; those
		// never acknowledged are what the mesh lost. A wide margin, so only a
		// broken per-hop layer trips it.
		if lost := e2e.PacketsLost - e2e.SpuriousRetransmits; lost*20 > perHop {
			t.Errorf("end to end lost %d packets against %d per-hop retransmits: per-hop retransmission did not absorb the loss", lost, perHop)
		}
		// Late packets cost end-to-end retransmissions; they must stay a small
		// share of the traffic (a few percent here; under the race detector,
		// whose slowness turns into queueing delay, up to about 13%).
		if e2e.BytesRetransmitted*5 > e2e.BytesSent {
			t.Errorf("end to end resent %d of %d bytes", e2e.BytesRetransmitted, e2e.BytesSent)
		}
	})
}
