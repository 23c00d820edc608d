package msp

import (
	"context"
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
