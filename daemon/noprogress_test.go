package daemon

import (
	"context"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// nextHop returns n's next hop towards sid at the given hop count, or zero.
func nextHop(n *mesh.Node, sid identity.SID, hops int) identity.SID {
	for _, r := range n.Routes() {
		if r.SID == sid && r.Hops == hops {
			return r.NextHop
		}
	}
	return identity.SID{}
}

// TestNoProgressReachesRouter: a session over a Port that reports no
// progress towards C makes the daemon's node avoid its next hop there (A
// reaches C through B1 or B2, both two hops).
func TestNoProgressReachesRouter(t *testing.T) {
	c := newNode(t)
	b1, b2 := newNode(t, c.LocalAddr()), newNode(t, c.LocalAddr())
	a := newNode(t, b1.LocalAddr(), b2.LocalAddr())
	var first identity.SID
	deadline := time.Now().Add(10 * time.Second)
	for {
		first = nextHop(a, c.SID(), 2)
		if !first.IsZero() && nextHop(b1, c.SID(), 1) == c.SID() && nextHop(b2, c.SID(), 1) == c.SID() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two-hop route to C through both relays: %v", a.Routes())
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, dir := serve(t, a)
	p := bind(t, dial(t, SocketPath(dir)), 0)
	if !p.noProg {
		t.Fatal("the bind reply did not say that the daemon takes NO-PROGRESS")
	}
	if (&Port{}).NoProgress(c.SID()) {
		t.Fatal("a report sent to a daemon that did not say it takes them")
	}
	// A may not have heard the other relay's entry yet: report again
	// until the route moves (once it has, no report follows).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if !p.NoProgress(c.SID()) {
			t.Fatal("NoProgress on an open port returned false")
		}
		wait := time.After(500 * time.Millisecond)
	poll:
		for {
			if h := nextHop(a, c.SID(), 2); !h.IsZero() && h != first {
				return
			}
			select {
			case <-a.Changed():
			case <-time.After(20 * time.Millisecond):
			case <-wait:
				break poll
			case <-ctx.Done():
				t.Fatalf("the route to C still goes through %s: %v", first.Short(), a.Routes())
			}
		}
	}
}
