package mesh_test

import (
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// TestDelaySpikeFewTimerResends: when the neighbour's ACKs are late (a
// delay spike, not a loss), the per-hop timer resends one frame per expiry,
// not a batch of the oldest: the receiver sees few duplicates, and every
// datagram still arrives exactly once.
func TestDelaySpikeFewTimerResends(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clean := memnet.LinkConfig{Delay: 5 * time.Millisecond}
		r := newTimerRig(t, clean, meshtest.Timers(100*time.Millisecond, 3*time.Second))
		a, b, nw, send, recv, pb := r.a, r.b, r.nw, r.send, r.recv, r.pb
		// The link's RTT is learnt on a clean link.
		send(100)
		recv(100)
		time.Sleep(time.Second)
		before, dupBefore := a.Stats().Timeouts, b.Stats().Duplicates
		// Then b's ACKs take 200 ms instead of 5: a's timer (RTO about
		// 15 ms) expires several times before the first of them arrives.
		nw.SetLink(b.LocalAddr(), a.LocalAddr(), memnet.LinkConfig{Delay: 200 * time.Millisecond})
		const n = 300
		send(n)
		recv(n)
		time.Sleep(2 * time.Second)
		timeouts, dups := a.Stats().Timeouts-before, b.Stats().Duplicates-dupBefore
		t.Logf("delay spike: %d timer resends, %d duplicates at the receiver", timeouts, dups)
		if timeouts == 0 {
			t.Errorf("no timer resends: the spike did not outlast the RTO")
		}
		if timeouts > 10 || dups > 10 {
			t.Errorf("%d timer resends, %d duplicates for one 200 ms spike: want at most 10 each", timeouts, dups)
		}
		// Exactly once: nothing more follows.
		pb.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if k, _, err := pb.ReadFrom(make([]byte, 2048)); err == nil {
			t.Errorf("extra datagram of %d bytes", k)
		}
	})
}

// TestTailLossFoundByProbe: frames lost at the tail of a burst, with
// nothing sent after them, are found when the timer's single probe is
// answered (every frame sent before it and still missing is lost), not one
// retransmission timeout each.
func TestTailLossFoundByProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clean := memnet.LinkConfig{Delay: 5 * time.Millisecond}
		r := newTimerRig(t, clean, meshtest.Timers(time.Second, 5*time.Second))
		a, b, nw, send, recv := r.a, r.b, r.nw, r.send, r.recv
		send(100)
		recv(100)
		time.Sleep(100 * time.Millisecond)
		// The last 20 frames of a burst are lost, and nothing follows them.
		nw.SetLink(a.LocalAddr(), b.LocalAddr(), memnet.LinkConfig{Delay: 5 * time.Millisecond, Loss: 1})
		before := a.Stats()
		const n = 20
		send(n)
		synctest.Wait()
		nw.SetLink(a.LocalAddr(), b.LocalAddr(), clean)
		start := time.Now()
		recv(n)
		took := time.Since(start)
		after := a.Stats()
		timeouts, fast := after.Timeouts-before.Timeouts, after.FastRetransmits-before.FastRetransmits
		t.Logf("%d frames lost at the tail: all arrived %v later; %d timer resends, %d found by the probe's ACK", n, took, timeouts, fast)
		// One RTO (15 ms at this RTT), the probe's round trip and the
		// rest's one way: well under one RTO per frame.
		if took > 60*time.Millisecond || timeouts > 2 {
			t.Errorf("tail of %d lost frames recovered in %v with %d timer resends: want under 60 ms and at most 2", n, took, timeouts)
		}
	})
}

// timerRig is a pair of nodes on one memnet link, with a port bound on
// each; send writes n datagrams from a to b, recv reads n at b.
type timerRig struct {
	a, b       *mesh.Node
	nw         *memnet.Network
	pb         *mesh.PacketConn
	send, recv func(n int)
}

func newTimerRig(t *testing.T, cfg memnet.LinkConfig, opts ...meshtest.Option) timerRig {
	t.Helper()
	m := meshtest.Pair(t, cfg, opts...)
	r := timerRig{a: m.Nodes[0], b: m.Nodes[1], nw: m.Net}
	pa, err := r.a.Bind(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close() })
	r.pb, err = r.b.Bind(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.pb.Close() })
	payload, buf := make([]byte, 1000), make([]byte, 2048)
	var to net.Addr = r.pb.LocalAddr()
	r.send = func(n int) {
		t.Helper()
		pa.SetWriteDeadline(time.Now().Add(10 * time.Second))
		for i := range n {
			if _, err := pa.WriteTo(payload, to); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
		}
	}
	r.recv = func(n int) {
		t.Helper()
		r.pb.SetReadDeadline(time.Now().Add(10 * time.Second))
		for i := range n {
			if _, _, err := r.pb.ReadFrom(buf); err != nil {
				t.Fatalf("read %d of %d: %v", i, n, err)
			}
		}
	}
	return r
}
