package mesh

// A node restarted under the same SID from a new address: its peer takes
// the new incarnation's first fresh hello at once, replacing the old
// neighbour entry, while a replay of the old incarnation's hello changes
// nothing.

import (
	"context"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// restartTimers: hellos every 100 ms, and a neighbour timeout long enough
// (5 s) that waiting for the old entry to expire shows as a failure.
var restartTimers = Config{HelloInterval: 100 * time.Millisecond, NeighbourTimeout: 5 * time.Second}

// waitRestarted waits until x has a as a neighbour at address at, with a
// link keyed both ways, checking at every step that x never has more than
// want neighbours (a and the others). It returns how long that took.
func waitRestarted(t *testing.T, x *Node, a *Node, at string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		nbs := x.Neighbours()
		if len(nbs) > want {
			t.Fatalf("x has %d neighbours, want %d (the old entry kept beside the new): %+v", len(nbs), want, nbs)
		}
		if st := stateOf(t, x, a.SID()); st.addr == at && st.keys != nil && st.keys.confirmed.Load() {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("x did not take a's new incarnation at %s within %v: neighbours %+v", at, within, nbs)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestRestartOnNewAddressReplacesNeighbour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cx := nw.Listen()
		x := startNode(t, restartTimers, cx)
		y := startNode(t, restartTimers, nw.Listen(), cx.LocalAddr()) // beyond x, for a's routes through it
		cfgA := restartTimers
		cfgA.Identity = forgedID(t)
		a1 := startNode(t, cfgA, nw.Listen(), cx.LocalAddr())
		reachBoth(t, x, a1)
		reachBoth(t, y, a1)
		exchange(t, x, a1, 7, "first incarnation")
		time.Sleep(5 * restartTimers.HelloInterval) // past the start's full tables
		keys1 := stateOf(t, x, a1.SID()).keys
		a1.Close()
		// A restart takes a moment (and hello sequence numbers start from
		// the clock, which in the bubble stands still until slept).
		time.Sleep(time.Millisecond)

		c2 := nw.Listen()
		start := time.Now()
		a2 := startNode(t, cfgA, c2, cx.LocalAddr())
		took := waitRestarted(t, x, a2, c2.LocalAddr().String(), 2, time.Second)
		t.Logf("x took the restarted a in %v (virtual time)", took)
		if took >= restartTimers.HelloInterval {
			t.Errorf("x took %v to hear the restarted a, want less than one hello interval (%v)", took, restartTimers.HelloInterval)
		}
		if stateOf(t, x, a2.SID()).keys == keys1 {
			t.Fatal("x kept the first incarnation's link keys")
		}
		t0 := time.Now()
		exchange(t, x, a2, 8, "second incarnation")
		if d := time.Since(t0); d >= restartTimers.HelloInterval {
			t.Errorf("the datagrams took %v each way, want well under a hello interval", d)
		}
		if nbs := x.Neighbours(); len(nbs) != 2 {
			t.Fatalf("x has neighbours %+v, want a and y", nbs)
		}
		// x gives the new incarnation its routes at once, as to a new
		// neighbour (not at its next full table, up to 12 hello intervals
		// away): a reaches y through x, y reaches a.
		ctx, cancel := context.WithTimeout(context.Background(), 2*restartTimers.HelloInterval)
		defer cancel()
		if err := a2.WaitReachable(ctx, y.SID()); err != nil {
			t.Fatalf("the restarted a does not reach y through x within 2 hello intervals: %v", err)
		}
		t.Logf("the restarted a reaches y %v after it started (virtual time)", time.Since(start))
		if err := y.WaitReachable(ctx, a2.SID()); err != nil {
			t.Fatalf("y does not reach the restarted a within 2 hello intervals: %v", err)
		}
		exchange(t, y, a2, 9, "two hops, second incarnation")
	})
}

// elicitHello has node sign a first-contact hello (to zero) that echoes
// x's cookie for m's address, as anyone at m can: m asks both for a
// cookie, then answers node with a COOKIE that echoes node's one and
// carries x's. It returns that hello, which passes x's cookie check from m.
func elicitHello(t *testing.T, m *memnet.Conn, node, x *Node) []byte {
	t.Helper()
	stranger := forgedID(t)
	xCookie := askCookie(t, m, x.LocalAddr(), stranger)
	nodeCookie := askCookie(t, m, node.LocalAddr(), stranger)
	if _, err := m.WriteTo(wire.AppendCookie(nil, xCookie, nodeCookie), node.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	m.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer m.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	for {
		k, from, err := m.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no hello from %s: %v", node.SID().Short(), err)
		}
		if typ, _ := wire.Type(buf[:k]); typ != wire.TypeHello || from.String() != node.LocalAddr().String() {
			continue
		}
		h, err := wire.ParseHello(buf[:k])
		if err != nil || h.SID != node.SID() || h.To != (identity.SID{}) || h.Echo != xCookie {
			t.Fatalf("elicited hello %+v, %v", h, err)
		}
		return append([]byte(nil), buf[:k]...)
	}
}

// elicitedMovesNothing has node (x's neighbour, who) sign a first-contact
// hello for m's address (elicitHello) and hands it to x from m: it must be
// counted StaleHello and change nothing.
func elicitedMovesNothing(t *testing.T, m *memnet.Conn, node, x *Node, who string) {
	t.Helper()
	v := viewOf(t, x, node.SID())
	s0 := x.Stats()
	inject(x, elicitHello(t, m, node, x), m.LocalAddr())
	settle(t, x)
	if got := x.Stats().StaleHello - s0.StaleHello; got != 1 {
		t.Errorf("%s's elicited hello from m: StaleHello +%d, want +1", who, got)
	}
	if got := viewOf(t, x, node.SID()); got != v {
		t.Fatalf("%s's elicited hello from m changed its neighbour entry: %+v, was %+v", who, got, v)
	}
}

// neighbourView is what a replayed hello must not change.
type neighbourView struct {
	addr  string
	keys  *linkKeys
	epoch uint32
	count int
}

func viewOf(t *testing.T, x *Node, sid identity.SID) neighbourView {
	t.Helper()
	st := stateOf(t, x, sid)
	x.mu.RLock()
	nb := x.bySID[sid]
	x.mu.RUnlock()
	count := len(x.Neighbours())
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return neighbourView{addr: st.addr, keys: st.keys, epoch: nb.epoch, count: count}
}

// TestRestartReplayChangesNothing: after a restarts on a new address, the
// hellos its first incarnation sent to x, replayed from a third address
// or from the old one, change nothing; neither does a first-contact hello
// of either incarnation that an attacker had it sign for the attacker's
// address (the same epoch as the one x holds is no restart).
func TestRestartReplayChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cx, m := nw.Listen(), nw.Listen()
		x := startNode(t, restartTimers, cx)
		cfgA := restartTimers
		cfgA.Identity = forgedID(t)
		c1 := nw.Listen()
		tap := &helloTap{PacketConn: c1, more: make(chan struct{}, 1)}
		a1 := startNode(t, cfgA, tap, cx.LocalAddr())
		reachBoth(t, x, a1)
		exchange(t, x, a1, 7, "first incarnation")

		// The first incarnation, alive: its first-contact hello for m's
		// address does not move it to m.
		elicitedMovesNothing(t, m, a1, x, "a1")

		captured := tap.waitHellos(t, 1)
		a1.Close()
		time.Sleep(time.Millisecond)
		c2 := nw.Listen()
		a2 := startNode(t, cfgA, c2, cx.LocalAddr())
		waitRestarted(t, x, a2, c2.LocalAddr().String(), 1, time.Second)
		v := viewOf(t, x, a2.SID())

		third := nw.Listen()
		var stale uint64
		for i, h := range captured {
			for _, from := range []net.Addr{third.LocalAddr(), c1.LocalAddr()} {
				s0 := x.Stats()
				inject(x, h, from)
				settle(t, x)
				s1 := x.Stats()
				dStale, dCookie := s1.StaleHello-s0.StaleHello, s1.CookiesSent-s0.CookiesSent
				if dStale+dCookie != 1 || s1.BadHello != s0.BadHello {
					t.Errorf("hello %d of a1 replayed from %s: StaleHello +%d, CookiesSent +%d, BadHello +%d; want one of the first two +1",
						i, from, dStale, dCookie, s1.BadHello-s0.BadHello)
				}
				if from == third.LocalAddr() && dCookie != 1 {
					t.Errorf("hello %d of a1 replayed from a third address passed the cookie check", i)
				}
				stale += dStale
				if got := viewOf(t, x, a2.SID()); got != v {
					t.Fatalf("hello %d of a1 replayed from %s changed a's neighbour entry: %+v, was %+v", i, from, got, v)
				}
			}
		}
		if stale == 0 {
			t.Errorf("none of a1's %d hellos replayed from its old address reached the freshness check", len(captured))
		}
		t.Logf("%d hellos of a1 replayed from two addresses, %d stopped as stale", len(captured), stale)

		// The second incarnation's own first-contact hello for m's address
		// does not move it either.
		elicitedMovesNothing(t, m, a2, x, "a2")
		exchange(t, x, a2, 8, "after the replays")
	})
}
