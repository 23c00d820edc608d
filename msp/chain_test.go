package msp

// Streams across several hops: relays forward with per-hop retransmission
// on every link.

import (
	"context"
	"crypto/sha256"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// memChain starts count nodes on memnet in a chain, each knowing only its
// successor, every link with cfg. It returns when the first reaches the last.
func memChain(t testing.TB, count int, cfg memnet.LinkConfig) []*mesh.Node {
	t.Helper()
	m := meshtest.New(t, count, meshtest.ChainEdges(count), cfg, meshtest.Timers(100*time.Millisecond, 2*time.Second))
	meshtest.WaitRoute(t, m.Nodes[0], m.Nodes[count-1].SID(), count-1, nil, 20*time.Second)
	return m.Nodes
}

// sendThrough writes size bytes from a to b's listener and checks them.
func sendThrough(t testing.TB, a, b *mesh.Node, size int) (time.Duration, SessionStats) {
	t.Helper()
	l, err := listenMesh(b, 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	results := hashSink(l)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
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
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	want := sha256.Sum256(data)
	start := time.Now()
	st.SetWriteDeadline(time.Now().Add(3 * time.Minute))
	if _, err := st.Write(data); err != nil {
		t.Fatalf("write: %v", err)
	}
	st.(interface{ CloseWrite() error }).CloseWrite()
	select {
	case r := <-results:
		if r.err != nil || r.n != int64(size) || r.sum != want {
			t.Fatalf("sink read %d of %d bytes (err %v), hash match %v", r.n, size, r.err, r.sum == want)
		}
	case <-ctx.Done():
		t.Fatalf("transfer did not finish (session %+v)", s.Stats())
	}
	return time.Since(start), s.Stats()
}

// TestChainLossy: five nodes in a chain, 10% loss on every link: 16 MiB
// arrives byte-exact.
func TestChainLossy(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		size := 16 << 20
		if testing.Short() {
			size = 2 << 20
		}
		nodes := memChain(t, 5, memnet.LinkConfig{Loss: 0.1, Delay: time.Millisecond})
		d, st := sendThrough(t, nodes[0], nodes[4], size)
		var perHop, relayed uint64
		for _, n := range nodes {
			perHop += n.Stats().Retransmits
			relayed += n.Stats().Relayed
		}
		t.Logf("%d MiB over 4 hops at 10%% loss each in %v (%.1f MiB/s); per-hop retransmits %d, relayed frames %d; end to end lost %d packets, resent %d of %d bytes",
			size>>20, d.Round(time.Millisecond), float64(size)/(1<<20)/d.Seconds(), perHop, relayed, st.PacketsLost, st.BytesRetransmitted, st.BytesSent)
		if perHop == 0 || relayed == 0 {
			t.Fatal("no per-hop retransmission or no relaying: the chain was not exercised")
		}
	})
}

// BenchmarkChainGoodput: a 4-hop chain with 5 ms delay per link, lossless
// and at 10% loss per link; the lossy figure is reported as a fraction of
// the lossless one (target >= 50%). Each iteration moves the same stream
// over both chains, one right after the other, and the figures are the
// medians over iterations (scripts/bench runs 3): on a shared machine
// one transfer's speed moves by half from run to run, and a ratio of two
// transfers far apart in time measures the machine more than the stack.
func BenchmarkChainGoodput(b *testing.B) {
	const size = 128 << 20 // long enough that slow start is a small part
	clean := memChain(b, 5, memnet.LinkConfig{Delay: 5 * time.Millisecond})
	lossy := memChain(b, 5, memnet.LinkConfig{Loss: 0.1, Delay: 5 * time.Millisecond})
	mbs := func(d time.Duration) float64 { return float64(size) / d.Seconds() / 1e6 }
	var cleanMBs, lossyMBs, ratios []float64
	for b.Loop() {
		dc, _ := sendThrough(b, clean[0], clean[4], size)
		dl, st := sendThrough(b, lossy[0], lossy[4], size)
		b.Logf("lossless %v, 10%% loss %v; lossy sender %+v", dc.Round(time.Millisecond), dl.Round(time.Millisecond), st)
		cleanMBs = append(cleanMBs, mbs(dc))
		lossyMBs = append(lossyMBs, mbs(dl))
		ratios = append(ratios, dc.Seconds()/dl.Seconds())
	}
	median := func(v []float64) float64 {
		slices.Sort(v)
		return v[len(v)/2]
	}
	b.ReportMetric(median(cleanMBs), "lossless-MB/s")
	b.ReportMetric(median(lossyMBs), "lossy-MB/s")
	b.ReportMetric(median(ratios), "of-lossless")
	b.ReportMetric(slices.Min(ratios), "min-of-lossless")
}
