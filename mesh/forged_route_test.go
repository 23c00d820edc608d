package mesh

// Forged and replayed routing announcements, injected by a neighbour made
// of raw bytes, against a node whose real route to the origin is three hops
// long: an announcement that were believed would pull the route onto the
// attacker (as the genuine one at the end, the control, does). Each
// injection is followed by a barrier (see forged_test.go): routing
// messages are handled in the read loop, so when the PROBEACK is back, the
// announcement has been judged.

import (
	"context"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// routeView is what a route means for forwarding (not the path MTU, which
// MTU probing moves on its own).
type routeView struct {
	sid, via     identity.SID
	hops, metric int
}

func routeViews(n *Node) map[identity.SID]routeView {
	out := map[identity.SID]routeView{}
	for _, r := range n.Routes() {
		out[r.SID] = routeView{r.SID, r.NextHop, r.Hops, r.Metric}
	}
	return out
}

// originState is n's routing state for origin: the newest verified
// sequence number and the feasibility distance.
func originState(n *Node, origin identity.SID) (seq, fdSeq uint64, ok bool) {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	rt := n.router.routes[origin]
	if rt == nil {
		return 0, 0, false
	}
	return rt.seq, rt.fdSeq, true
}

// bumpSeq makes n issue a new sequence number, as it does periodically,
// and returns it.
func bumpSeq(n *Node) uint64 {
	r := n.router
	r.mu.Lock()
	r.originate(r.selfSeq + 1)
	r.pending = true
	seq := r.selfSeq
	r.mu.Unlock()
	n.kickRouter()
	return seq
}

// askSeq makes n ask origin for a newer sequence number now, as it does
// when its route needs one.
func askSeq(n *Node, origin identity.SID) {
	r := n.router
	r.mu.Lock()
	if rt := r.routes[origin]; rt != nil {
		rt.asked = time.Time{}
		r.askSeqLocked(rt)
	}
	r.unlockAndNotify()
}

// waitOrigin waits until n routes to origin with sequence number seq,
// through via at the given hop count.
func waitOrigin(t *testing.T, n *Node, origin, via identity.SID, hops int, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, _, _ := originState(n, origin)
		r, ok := routeViews(n)[origin]
		if got == seq && ok && r.via == via && r.hops == hops {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no route to %s with seq %d via %s at %d hops: seq %d, route %+v (%v)", origin.Short(), seq, via.Short(), hops, got, r, ok)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// announce sends m to the node as a routing message from r's neighbour
// SID src, over r's link (epoch 7, one frame after another).
func (r *rawPeer) announce(dst, src identity.SID, seq *uint64, m *wire.RouteMsg) {
	r.t.Helper()
	*seq++
	h := wire.DataHeader{Epoch: 7, Seq: *seq, Base: *seq, TTL: 1, Dst: dst, Src: src, DstPort: RoutingPort, SrcPort: RoutingPort}
	r.send(wire.AppendRouteMsg(wire.AppendData(nil, &h), m))
}

func sigOf(id *identity.Identity, origin identity.SID, seq uint64) (s [identity.SignatureLen]byte) {
	copy(s[:], id.Sign(wire.SignedOrigin(origin, seq)))
	return s
}

func TestForgedRouteAnnouncementsChangeNoRoute(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		// N - M1 - M2 - O, each knowing the next; X is a raw neighbour of N.
		cn, c1, c2, co := nw.Listen(), nw.Listen(), nw.Listen(), nw.Listen()
		o := forgedNode(t, co)
		oID := o.Identity()
		forgedNode(t, c2, co.LocalAddr()) // M2
		m1 := forgedNode(t, c1, c2.LocalAddr())
		n := forgedNode(t, cn, c1.LocalAddr())

		o.router.mu.Lock()
		s0 := o.router.selfSeq
		o.router.mu.Unlock()
		waitOrigin(t, n, o.SID(), m1.SID(), 3, s0)
		// A newer sequence number, so that s0 is an old one to replay.
		s1 := bumpSeq(o)
		// A new sequence number goes to the origin's neighbours, and on
		// to those who ask for it (or with the entry's next refresh).
		askSeq(n, o.SID())
		waitOrigin(t, n, o.SID(), m1.SID(), 3, s1)

		x, xID, _ := rawNeighbour(t, nw, n, 7)
		if nbs := n.Neighbours(); len(nbs) != 2 {
			t.Fatalf("the raw peer is not a neighbour: %+v", nbs)
		}
		var dataSeq uint64

		stranger := forgedID(t) // a real key pair; the attacker does not hold it
		flipped := sigOf(oID, o.SID(), s1+1000)
		flipped[7] ^= 0x10
		entry := func(origin identity.SID, seq uint64, sig *[identity.SignatureLen]byte) wire.RouteEntry {
			// One hop beyond X: plausible, so only the signature or the
			// sequence number can reject it.
			e := wire.RouteEntry{Origin: origin, Seq: seq, Metric: 256, Hops: 1, MTU: 1500}
			if sig != nil {
				e.HasSig, e.Sig = true, *sig
			}
			return e
		}
		xSigO := sigOf(xID, o.SID(), s1+1000)
		xSigStranger := sigOf(xID, stranger.SID(), 5)
		xSigN := sigOf(xID, n.SID(), uint64(time.Now().UnixNano())+1000)
		oldSig := sigOf(oID, o.SID(), s0) // what O really sent for s0: Ed25519 is deterministic
		steps := []struct {
			name       string
			e          wire.RouteEntry
			bad, stale uint64
		}{
			{"newer seq, bad signature", entry(o.SID(), s1+1000, &flipped), 1, 0},
			{"newer seq, signed by the attacker for O's SID", entry(o.SID(), s1+1000, &xSigO), 1, 0},
			{"newer seq without a signature", entry(o.SID(), s1+1000, nil), 0, 0},
			{"replay of O's old announcement", entry(o.SID(), s0, &oldSig), 0, 1},
			{"old seq without a signature", entry(o.SID(), s0, nil), 0, 1},
			{"a SID nobody proved, signed by the attacker", entry(stranger.SID(), 5, &xSigStranger), 1, 0},
			{"a SID nobody proved, unsigned", entry(stranger.SID(), 5, nil), 0, 0},
			// Entries for the node's own SID are ignored before any check.
			{"the node's own SID, signed by the attacker", entry(n.SID(), uint64(time.Now().UnixNano())+1000, &xSigN), 0, 0},
		}
		before := routeViews(n)
		if len(before) != 4 || before[o.SID()] != (routeView{o.SID(), m1.SID(), 3, 3 * 256}) {
			t.Fatalf("routes before the attack: %+v", before)
		}
		for _, st := range steps {
			b := n.Stats()
			x.announce(n.SID(), xID.SID(), &dataSeq, &wire.RouteMsg{Entries: []wire.RouteEntry{st.e}})
			x.barrier()
			a := n.Stats()
			if a.BadRoute-b.BadRoute != st.bad || a.StaleRoute-b.StaleRoute != st.stale || a.Malformed != b.Malformed {
				t.Errorf("%s: BadRoute +%d, StaleRoute +%d, Malformed +%d; want +%d, +%d, +0",
					st.name, a.BadRoute-b.BadRoute, a.StaleRoute-b.StaleRoute, a.Malformed-b.Malformed, st.bad, st.stale)
			}
			if got := routeViews(n); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("%s: routes changed:\n%+v\nwant\n%+v", st.name, got, before)
			}
			if seq, fd, _ := originState(n, o.SID()); seq != s1 || fd != s1 {
				t.Errorf("%s: O's sequence number %d (feasibility %d), want %d", st.name, seq, fd, s1)
			}
			if _, _, ok := originState(n, stranger.SID()); ok {
				t.Errorf("%s: the node now has routing state for a SID nobody proved", st.name)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			if n.WaitReachable(ctx, stranger.SID()) == nil {
				t.Errorf("%s: the unproved SID is reachable", st.name)
			}
			cancel()
		}
		// One message with the forged entries together, and a malformed one:
		// still nothing moves.
		all := &wire.RouteMsg{HasIHU: true, IHU: 255}
		for _, st := range steps {
			all.Entries = append(all.Entries, st.e)
		}
		mal := n.Stats().Malformed
		x.announce(n.SID(), xID.SID(), &dataSeq, all)
		h := wire.DataHeader{Epoch: 7, Seq: dataSeq + 1, Base: dataSeq + 1, TTL: 1, Dst: n.SID(), Src: xID.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}
		dataSeq++
		x.send(append(wire.AppendData(nil, &h), wire.RouteVersion, 0, 0, 0xFF, 0xFF, 0))
		x.barrier()
		if got := n.Stats().Malformed - mal; got != 1 {
			t.Errorf("a routing message claiming 65535 entries: Malformed +%d, want +1", got)
		}
		if got := routeViews(n); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("all forged entries in one message: routes changed:\n%+v\nwant\n%+v", got, before)
		}

		// O's genuine current announcement re-advertised at metric 0, as if X
		// were O: cheaper than the link to X allows, so ignored and counted
		// (it used to pull O's traffic to X).
		cur := sigOf(oID, o.SID(), s1)
		zero := entry(o.SID(), s1, &cur)
		zero.Metric, zero.Hops = 0, 0
		imp := n.Stats().ImplausibleRoute
		x.announce(n.SID(), xID.SID(), &dataSeq, &wire.RouteMsg{Entries: []wire.RouteEntry{zero}})
		x.barrier()
		if got := n.Stats().ImplausibleRoute - imp; got != 1 {
			t.Errorf("metric-0 re-advertisement: ImplausibleRoute +%d, want +1", got)
		}
		if got := routeViews(n); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Errorf("metric-0 re-advertisement moved routes:\n%+v\nwant\n%+v", got, before)
		}

		// Control: the same announcement at one hop from X is believed and
		// pulls the route (a neighbour can still lie about its distance within
		// what its link allows, not about who the origin is or how new its
		// announcement is). So the announcements above reached the router,
		// and would have moved the route had they been believed.
		x.announce(n.SID(), xID.SID(), &dataSeq, &wire.RouteMsg{Entries: []wire.RouteEntry{entry(o.SID(), s1, &cur)}})
		x.barrier()
		if r := routeViews(n)[o.SID()]; r.via != xID.SID() || r.hops != 2 {
			t.Fatalf("control: a genuine announcement did not move the route: %+v", r)
		}
		t.Logf("node stats: %+v", n.Stats())
	})
}
