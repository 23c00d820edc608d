package mesh

// The router's side of routing around a relay that drops (avoid.go),
// driven by hand without msp: fake neighbours and adverts are put straight
// into one node's routing state, and the clock of the marks is replaced.

import (
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/identity"
)

// avoidRig is a node whose routing state for one origin is set by hand.
type avoidRig struct {
	t      *testing.T
	r      *router
	origin identity.SID
	mu     sync.Mutex
	now    time.Time // the marks' clock
}

func newAvoidRig(t *testing.T) *avoidRig {
	t.Helper()
	nw := forgedNet(t)
	n := forgedNode(t, nw.Listen()) // hellos once a minute: no tick interferes
	a := &avoidRig{t: t, r: n.router, origin: identity.SID{0x0A}, now: time.Now()}
	a.r.mu.Lock()
	a.r.now = a.clock
	a.r.mu.Unlock()
	t.Cleanup(func() {
		r := a.r
		r.mu.Lock()
		defer r.mu.Unlock()
		for nb := range r.adverts {
			if nb.n == nil { // a fake one
				delete(r.adverts, nb)
				delete(r.quality, nb)
			}
		}
		delete(r.routes, a.origin)
		r.requests = nil
	})
	return a
}

func (a *avoidRig) clock() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

func (a *avoidRig) advance(d time.Duration) {
	a.mu.Lock()
	a.now = a.now.Add(d)
	a.mu.Unlock()
}

// neighbour adds a fake neighbour over a clean link (cost 256).
func (a *avoidRig) neighbour(b byte) *neighbour {
	nb := &neighbour{sid: identity.SID{b}}
	nb.mtu.Store(1500)
	a.r.mu.Lock()
	a.r.adverts[nb] = map[identity.SID]*advert{}
	a.r.quality[nb] = &linkQuality{cost: 256}
	a.r.mu.Unlock()
	return nb
}

// advertise makes nb announce the origin at seq with metric (its own
// cost, before the link's), and recomputes the route.
func (a *avoidRig) advertise(nb *neighbour, seq uint64, metric uint16) {
	r := a.r
	r.mu.Lock()
	defer r.mu.Unlock()
	r.adverts[nb][a.origin] = &advert{seq: seq, metric: metric, hops: uint8(min(metric/256, 1)), mtu: 1500, at: time.Now()}
	rt := r.routes[a.origin]
	if rt == nil {
		rt = &route{origin: a.origin}
		r.routes[a.origin] = rt
	}
	rt.seq = max(rt.seq, seq)
	r.recomputeLocked(rt)
}

// forget drops nb as if its link went down.
func (a *avoidRig) forget(nb *neighbour) {
	a.r.n.mu.Lock()
	a.r.neighbourDownUnderNodeMu(nb)
	a.r.n.mu.Unlock()
}

// via is the next hop towards the origin (nil: none) and the metric.
func (a *avoidRig) via() (*neighbour, uint32) {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	rt := a.r.routes[a.origin]
	if rt == nil {
		return nil, 0
	}
	return rt.via, rt.metric
}

func (a *avoidRig) wantVia(step string, want *neighbour, metric uint32) {
	a.t.Helper()
	got, m := a.via()
	if got != want || (want != nil && m != metric) {
		a.t.Fatalf("%s: via %v metric %d, want %v metric %d", step, sidOf(got), m, sidOf(want), metric)
	}
}

func sidOf(nb *neighbour) string {
	if nb == nil {
		return "none"
	}
	return nb.sid.Short()
}

// mark returns a copy of the mark of nb for the origin (nil: none).
func (a *avoidRig) mark(nb *neighbour) *failMark { return markOf(a.r.n, a.origin, nb.sid) }

// requested reports whether a seqno request for the origin is queued, and
// clears the queue.
func (a *avoidRig) requested() bool {
	a.r.mu.Lock()
	defer a.r.mu.Unlock()
	found := false
	for _, q := range a.r.requests {
		found = found || q.Origin == a.origin
	}
	a.r.requests = nil
	for _, rt := range a.r.routes {
		rt.asked = time.Time{} // let the next step ask again
	}
	return found
}

// expire runs what the hello tick does with marks.
func (a *avoidRig) expire() {
	a.r.mu.Lock()
	a.r.expireMarksLocked(a.r.now())
	a.r.mu.Unlock()
}

func TestNoProgressMovesToNextBestFeasible(t *testing.T) {
	a := newAvoidRig(t)
	m, b := a.neighbour(0x0B), a.neighbour(0x0C)
	a.advertise(m, 5, 256) // through M: 512
	a.wantVia("M announces", m, 512)
	a.advertise(b, 5, 250) // through B: 506, feasible, not enough cheaper to move
	a.wantVia("B announces", m, 512)

	if !a.r.noProgress(a.origin) {
		t.Fatal("no mark with a feasible alternative")
	}
	a.wantVia("after no progress", b, 506)
	if mk := a.mark(m); mk == nil || mk.hold != failHold || !mk.until.Equal(a.clock().Add(failHold)) {
		t.Fatalf("mark of M: %+v, want %v from now", mk, failHold)
	}
	// M stays avoided though it announces a newer, cheaper route.
	a.advertise(m, 6, 256)
	a.advertise(b, 6, 512)
	a.wantVia("M announces a newer sequence number", b, 768)
}

func TestNoProgressAsksForSeqnoWhenOthersUnfeasible(t *testing.T) {
	a := newAvoidRig(t)
	m, b := a.neighbour(0x0B), a.neighbour(0x0C)
	a.advertise(m, 5, 256) // through M: 512
	a.advertise(b, 5, 512) // through B: 768, not below the feasibility distance 512
	a.wantVia("both announce", m, 512)
	a.requested()

	if !a.r.noProgress(a.origin) {
		t.Fatal("no mark with an (unfeasible) alternative")
	}
	// Nothing feasible is left: the route is retracted (RFC 8966: never
	// select an unfeasible route, it may loop) and the origin asked for a
	// newer sequence number.
	a.wantVia("after no progress", nil, 0)
	if !a.requested() {
		t.Fatal("no seqno request for the origin")
	}
	// The answer: both announce the new sequence number; B's is taken.
	a.advertise(m, 6, 256)
	a.wantVia("M answers first", nil, 0)
	a.advertise(b, 6, 512)
	a.wantVia("B answers", b, 768)
}

func TestNoProgressWithoutAlternativeChangesNothing(t *testing.T) {
	a := newAvoidRig(t)
	if a.r.noProgress(a.origin) {
		t.Fatal("a mark without any route")
	}
	m := a.neighbour(0x0B)
	a.advertise(m, 5, 256)
	a.requested()
	if a.r.noProgress(a.origin) {
		t.Fatal("a mark with no other path: the destination may simply be gone")
	}
	a.wantVia("single path", m, 512)
	if a.mark(m) != nil || a.requested() {
		t.Fatal("a mark or a seqno request with no other path")
	}
	// A neighbour that retracted the origin is no alternative.
	b := a.neighbour(0x0C)
	a.advertise(b, 5, 0xFFFF)
	if a.r.noProgress(a.origin) {
		t.Fatal("a mark with only a retraction beside it")
	}
	a.wantVia("beside a retraction", m, 512)

	// The destination's own link is never blamed: it is no relay.
	d := a.neighbour(0x0A) // the origin itself
	a.advertise(d, 5, 0)
	a.wantVia("direct", d, 256)
	if a.r.noProgress(a.origin) || a.mark(d) != nil {
		t.Fatal("the destination itself marked as a failing relay")
	}
	a.wantVia("direct after no progress", d, 256)

	a.r.mu.Lock()
	marks, ignored := a.r.failMarks, a.r.noProgressIgnored
	a.r.mu.Unlock()
	if marks != 0 || ignored != 4 {
		t.Fatalf("%d marks and %d ignored reports, want 0 and 4", marks, ignored)
	}
}

func TestFailMarkExpiresAndDoubles(t *testing.T) {
	a := newAvoidRig(t)
	m, b := a.neighbour(0x0B), a.neighbour(0x0C)
	a.advertise(m, 5, 256)
	a.advertise(b, 5, 200) // 456: feasible
	a.wantVia("start", m, 512)
	a.r.noProgress(a.origin)
	a.wantVia("marked", b, 456)
	a.advertise(b, 6, 512) // B's path grew: 768
	a.advertise(m, 6, 256) // M's is 512 and feasible, but avoided
	a.wantVia("M avoided", b, 768)

	a.advance(failHold - time.Second)
	a.expire()
	a.wantVia("before the mark ends", b, 768)
	a.advance(2 * time.Second)
	a.expire()
	a.wantVia("after the mark ends", m, 512)

	// It fails again soon after: avoided twice as long.
	if !a.r.noProgress(a.origin) {
		t.Fatal("no second mark")
	}
	if mk := a.mark(m); mk == nil || mk.hold != 2*failHold {
		t.Fatalf("second mark: %+v, want a hold of %v", mk, 2*failHold)
	}
	a.advance(2*failHold + time.Second)
	a.expire()
	a.advertise(b, 7, 512) // the route was retracted (B unfeasible) and answered
	a.advertise(m, 7, 256)
	a.wantVia("after the second mark", m, 512)

	// Long after, a failure starts again at the base hold; a mark is
	// forgotten once its history is over.
	a.advance(10 * failHold)
	a.expire()
	if mk := a.mark(m); mk != nil {
		t.Fatalf("an old mark kept: %+v", mk)
	}
	a.r.noProgress(a.origin)
	if mk := a.mark(m); mk == nil || mk.hold != failHold {
		t.Fatalf("mark after a quiet time: %+v, want a hold of %v", mk, failHold)
	}
}

// TestMarksNeverLeaveNoRoute: when every neighbour that leads to the origin
// is marked (the last unmarked one went away), marks are ignored for it
// rather than leaving the node without a route.
func TestMarksNeverLeaveNoRoute(t *testing.T) {
	a := newAvoidRig(t)
	m, b, x := a.neighbour(0x0B), a.neighbour(0x0C), a.neighbour(0x0D)
	a.advertise(m, 5, 256)
	a.advertise(b, 5, 200)
	a.advertise(x, 5, 180)
	a.wantVia("start", m, 512) // B and X feasible, not enough cheaper
	a.r.noProgress(a.origin)
	a.wantVia("M marked", x, 436)
	a.r.noProgress(a.origin)
	a.wantVia("X marked", b, 456)
	a.forget(b)
	a.wantVia("B gone, M and X marked", x, 436)
}
