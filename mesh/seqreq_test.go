package mesh

import (
	"testing"
	"time"

	"github.com/servald/servald/identity"
)

// seqOf is n's newest verified sequence number of origin (0: none).
func seqOf(n *Node, origin identity.SID) uint64 {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	if rt := n.router.routes[origin]; rt != nil {
		return rt.seq
	}
	return 0
}

// TestNewSeqGoesToAskers: a new sequence number is not flooded to every
// node (each answered request cost the whole mesh an entry and a
// signature per neighbour); it goes to the origin's neighbours, and on
// along the path of a request to the node that asked.
func TestNewSeqGoesToAskers(t *testing.T) {
	nodes := scaleChain(t, 4, time.Second) // a - b - c - o
	a, o := nodes[0], nodes[3]
	quietTables(nodes[1])
	quietTables(nodes[2])
	s1 := bumpSeq(o)
	time.Sleep(time.Second)
	if got := seqOf(a, o.SID()); got >= s1 {
		t.Fatalf("A got the new sequence number %d unasked: flooded", got)
	}
	askSeq(a, o.SID())
	for end := time.Now().Add(5 * time.Second); seqOf(a, o.SID()) < s1; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("A asked for a newer sequence number and has %d, not %d", seqOf(a, o.SID()), s1)
		}
	}
}

// TestSeqAskedAgain: a route that needs a newer sequence number asks
// again at each tick once askBack has passed, the interval doubling up to
// maxAskBack (a request, or its answer, may be lost; the selection that
// would ask again runs only when an entry comes, minutes apart in a big
// mesh).
func TestSeqAskedAgain(t *testing.T) {
	nodes := scaleChain(t, 3, time.Hour) // ticks only when the test calls them
	a, o := nodes[0], nodes[2]
	r := a.router
	r.mu.Lock()
	rt := r.routes[o.SID()]
	if rt == nil {
		r.mu.Unlock()
		t.Fatal("A has no route to O")
	}
	r.needSeqLocked(rt, true)
	first := rt.asked
	r.mu.Unlock()
	for i, back := range []time.Duration{firstAskBack, 2 * firstAskBack, 4 * firstAskBack} {
		r.mu.Lock()
		rt.asked = time.Now().Add(-back + 100*time.Millisecond) // not yet
		r.mu.Unlock()
		r.tick()
		r.mu.Lock()
		early := rt.asked
		rt.asked = time.Now().Add(-back) // now due
		r.mu.Unlock()
		r.tick()
		r.mu.Lock()
		again, next := rt.asked, rt.askBack
		r.mu.Unlock()
		if first.IsZero() || early.After(time.Now().Add(-back/2)) {
			t.Fatalf("round %d: asked again before askBack %v", i, back)
		}
		if time.Since(again) > time.Second {
			t.Fatalf("round %d: not asked again after askBack %v", i, back)
		}
		if next != 2*back {
			t.Fatalf("round %d: askBack %v after %v, want %v", i, next, back, 2*back)
		}
	}
}

// TestWantsForgotten: a neighbour's request we forwarded is forgotten by
// the tick once wantHold has passed, even if the route is never selected
// again (a neighbour asking for every origin must not pin memory).
func TestWantsForgotten(t *testing.T) {
	nodes := scaleChain(t, 3, time.Hour)
	a, b, o := nodes[0], nodes[1], nodes[2]
	r := b.router
	nbA := neighbourOf(b, a)
	r.mu.Lock()
	rt := r.routes[o.SID()]
	if rt == nil {
		r.mu.Unlock()
		t.Fatal("B has no route to O")
	}
	r.wantLocked(rt, nbA, rt.seq+1)
	rt.wants[0].at = time.Now().Add(-wantHold - time.Second)
	r.mu.Unlock()
	r.tick()
	r.mu.Lock()
	left := len(rt.wants)
	r.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d requests older than wantHold kept after a tick", left)
	}
}
