package msp

import (
	"context"
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
)

// budgetTap is an MDP port whose WriteToWithin records the budgets it is
// given (and sends as WriteTo does).
type budgetTap struct {
	*mesh.PacketConn
	mu      sync.Mutex
	budgets []time.Duration
}

func (b *budgetTap) WriteToWithin(p []byte, addr net.Addr, budget time.Duration) (int, error) {
	b.mu.Lock()
	b.budgets = append(b.budgets, budget)
	b.mu.Unlock()
	return b.PacketConn.WriteTo(p, addr)
}

// TestDatagramBudgetToTransport: a datagram with a budget goes through
// the transport's WriteToWithin with that budget; one without, and the
// session's own packets, through WriteTo.
func TestDatagramBudgetToTransport(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, b, _ := memNodes(t, memnet.LinkConfig{Delay: time.Millisecond})
		var tap *budgetTap
		l, s, _ := sessionOver(t, ctx, a, b, 5303, Config{}, func(pc *mesh.PacketConn) Transport {
			tap = &budgetTap{PacketConn: pc}
			return tap
		})
		for _, budget := range []time.Duration{100 * time.Millisecond, 0, 7 * time.Millisecond} {
			if err := s.SendDatagram([]byte("x"), budget); err != nil {
				t.Fatal(err)
			}
			if _, _, err := l.ReceiveDatagram(ctx); err != nil {
				t.Fatal(err)
			}
		}
		tap.mu.Lock()
		defer tap.mu.Unlock()
		if len(tap.budgets) != 2 || tap.budgets[0] != 100*time.Millisecond || tap.budgets[1] != 7*time.Millisecond {
			t.Fatalf("WriteToWithin budgets %v, want [100ms 7ms]", tap.budgets)
		}
	})
}

// plainTransport hides every method of a transport but Transport's (a
// mesh port's WriteToWithin among them).
type plainTransport struct{ Transport }

// TestDatagramLateAtReceiver: a datagram whose budget is below half the
// least round trip the session measured is dropped on arrival and counted
// Late, over a transport that does not enforce budgets.
func TestDatagramLateAtReceiver(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, b, _ := memNodes(t, memnet.LinkConfig{Delay: 20 * time.Millisecond})
		l, s, _ := sessionOver(t, ctx, a, b, 5305, Config{}, func(pc *mesh.PacketConn) Transport { return plainTransport{pc} })
		time.Sleep(3 * time.Second) // keepalives give both ends RTT samples
		ls := l.Sessions()[0]
		if rtt := ls.Stats().MinRTT; rtt < 40*time.Millisecond {
			t.Fatalf("listener's minRTT %v", rtt)
		}
		for range 10 {
			if err := s.SendDatagram([]byte("late"), 5*time.Millisecond); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.SendDatagram([]byte("on time"), time.Second); err != nil {
			t.Fatal(err)
		}
		_, p, err := l.ReceiveDatagram(ctx)
		if err != nil || string(p) != "on time" {
			t.Fatalf("got %q, %v", p, err)
		}
		if st := ls.DatagramStats(); st.Late != 10 || st.Received != 1 {
			t.Fatalf("listener's session: %+v, want 10 late, 1 received", st)
		}
	})
}

// lossyRun is what one run of datagrams over a lossy link saw.
type lossyRun struct {
	sent, arrived int
	worst         time.Duration // the latest arrival, after its sending
	meshLate      uint64        // datagrams the sender's mesh gave up (mesh.Stats.Late)
	linkLost      uint64
}

// runLossy sends count 1000-byte datagrams, one a millisecond, with
// budget, over a link with 10% loss and delay each way (virtual time,
// so latencies are exact), through the mesh port's WriteToWithin or, with
// plain, through WriteTo alone; no datagram may arrive twice.
func runLossy(t *testing.T, delay, budget time.Duration, count int, plain bool) lossyRun {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, b, nw := memNodes(t, memnet.LinkConfig{Loss: 0.1, Delay: delay})
	l, s, _ := sessionOver(t, ctx, a, b, 5304, Config{}, func(pc *mesh.PacketConn) Transport {
		if plain {
			return plainTransport{pc}
		}
		return pc
	})
	if _, ok := s.ep.tr.(budgetWriter); !ok && !plain {
		t.Fatalf("%T has no WriteToWithin", s.ep.tr)
	}
	type arrival struct {
		seq     int
		latency time.Duration
	}
	got := make(chan arrival, count)
	go func() {
		defer close(got)
		for {
			_, p, err := l.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			sent := time.Unix(0, int64(binary.BigEndian.Uint64(p[8:])))
			got <- arrival{int(binary.BigEndian.Uint64(p)), time.Since(sent)}
		}
	}()
	late0 := a.Stats().Late
	p := make([]byte, 1000)
	for i := range count {
		binary.BigEndian.PutUint64(p, uint64(i))
		binary.BigEndian.PutUint64(p[8:], uint64(time.Now().UnixNano()))
		if err := s.SendDatagram(p, budget); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the mesh gives a frame up within about this
	l.Close()
	r := lossyRun{sent: count}
	seen := map[int]bool{}
	for a := range got {
		if seen[a.seq] {
			t.Fatalf("datagram %d delivered twice", a.seq)
		}
		seen[a.seq] = true
		r.worst = max(r.worst, a.latency)
	}
	r.arrived = len(seen)
	r.meshLate = a.Stats().Late - late0
	r.linkLost = nw.LinkStats(a.LocalAddr(), b.LocalAddr()).Lost
	t.Logf("budget %v (WriteTo only: %v): %d of %d datagrams arrived, the latest %v after it was sent; the link lost %d frames; the mesh gave %d up as late; receiver's session late %d",
		budget, plain, r.arrived, count, r.worst, r.linkLost, r.meshLate, lateOf(l))
	if r.linkLost == 0 {
		t.Fatal("the link lost nothing: its settings were not applied")
	}
	return r
}

// TestDatagramDeadlineOverLossyLink: over a link with 10% loss and 10 ms
// delay each way, datagrams sent with a budget of 100 ms arrive no later
// than 100 ms + the one-way delay after they were sent, and at least 95%
// arrive.
func TestDatagramDeadlineOverLossyLink(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		const budget, delay = 100 * time.Millisecond, 10 * time.Millisecond
		r := runLossy(t, delay, budget, 2000, false)
		if r.worst > budget+delay {
			t.Errorf("a datagram arrived %v after it was sent: more than %v + %v", r.worst, budget, delay)
		}
		if r.arrived < r.sent*95/100 {
			t.Errorf("only %d of %d datagrams arrived", r.arrived, r.sent)
		}
	})
}

// TestDatagramDeadlineTight: with a budget of 25 ms over the same link (10
// ms each way: room for no per-hop retransmission), what arrives arrives
// within 25 ms + the delay, the lost ones are given up as late by the
// mesh; without the budget (WriteTo alone) retransmitted ones arrive later
// than that: the deadline is what keeps them out.
func TestDatagramDeadlineTight(t *testing.T) {
	const budget, delay = 25 * time.Millisecond, 10 * time.Millisecond
	onVirtualTime(t, func(t *testing.T) {
		r := runLossy(t, delay, budget, 1000, false)
		if r.worst > budget+delay || r.meshLate == 0 || r.arrived < r.sent*80/100 {
			t.Errorf("with the budget: %+v", r)
		}
	})
	onVirtualTime(t, func(t *testing.T) {
		r := runLossy(t, delay, budget, 1000, true)
		if r.worst <= budget+delay {
			t.Errorf("without it, the latest arrived %v after sending: per-hop retransmission should have made some later than %v", r.worst, budget+delay)
		}
	})
}

// lateOf sums the Late counters of a listener's sessions.
func lateOf(l *Listener) uint64 {
	var n uint64
	for _, s := range l.Sessions() {
		n += s.DatagramStats().Late
	}
	return n
}
