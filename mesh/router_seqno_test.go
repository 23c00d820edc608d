package mesh

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
)

// TestCheaperUnfeasibleRouteAsksForSeqno drives the route selection of one
// origin by hand: two neighbours P and Q announce it at the same sequence
// number, the route goes through P, then the link to P gets costly. Q's
// entry is cheaper but not feasible (its metric is not below what we last
// advertised), so the route may not move yet; the node must ask the origin
// for a newer sequence number at once rather than wait for its periodic
// one, and move to Q when that arrives.
func TestCheaperUnfeasibleRouteAsksForSeqno(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		n := forgedNode(t, nw.Listen())
		r := n.router
		var origin identity.SID
		origin[0] = 0x0A
		p := &neighbour{sid: identity.SID{0x0B}}
		q := &neighbour{sid: identity.SID{0x0C}}
		p.mtu.Store(1500)
		q.mtu.Store(1500)

		r.mu.Lock()
		defer r.mu.Unlock()
		defer func() { // leave nothing of the fake neighbours behind
			delete(r.adverts, p)
			delete(r.adverts, q)
			delete(r.quality, p)
			delete(r.quality, q)
			delete(r.routes, origin)
			r.requests = nil
		}()
		now := time.Now()
		r.adverts[p] = map[identity.SID]*advert{origin: {seq: 5, metric: 0, mtu: 1500, at: now}}
		r.adverts[q] = map[identity.SID]*advert{origin: {seq: 5, metric: 256, hops: 1, mtu: 1500, at: now}}
		r.quality[p] = &linkQuality{cost: 256}
		r.quality[q] = &linkQuality{cost: 256}
		rt := &route{origin: origin, seq: 5}
		r.routes[origin] = rt
		r.requests = nil

		r.recomputeLocked(rt)
		if rt.via != p || rt.metric != 256 || rt.fdSeq != 5 || rt.fdMetric != 256 {
			t.Fatalf("first selection: via %v metric %d fd (%d, %d); want P, 256, (5, 256)", rt.via, rt.metric, rt.fdSeq, rt.fdMetric)
		}
		if len(r.requests) != 0 {
			t.Fatalf("a seqno request with the best route in use: %+v", r.requests)
		}

		// The link to P gets lossy: through P costs 1024, through Q 512, but
		// Q's entry (256, not below the feasibility distance 256) may not be
		// taken.
		r.quality[p].cost = 1024
		r.recomputeLocked(rt)
		if rt.via != p || rt.metric != 1024 {
			t.Fatalf("after the cost rose: via %v metric %d; want P (Q is not feasible), 1024", rt.via, rt.metric)
		}
		if len(r.requests) != 1 || r.requests[0].Origin != origin || r.requests[0].Seq != 6 {
			t.Fatalf("requests %+v; want one for the origin's sequence number 6", r.requests)
		}
		// Asked once, not at every recomputation.
		r.recomputeLocked(rt)
		if len(r.requests) != 1 {
			t.Fatalf("requests %+v after a second recomputation within 500 ms", r.requests)
		}

		// The origin answers with 6; Q passes it on first: the route moves.
		rt.seq = 6
		r.adverts[q][origin] = &advert{seq: 6, metric: 256, hops: 1, mtu: 1500, at: time.Now()}
		r.recomputeLocked(rt)
		if rt.via != q || rt.metric != 512 || rt.fdSeq != 6 {
			t.Fatalf("after the new sequence number: via %v metric %d fd seq %d; want Q, 512, 6", rt.via, rt.metric, rt.fdSeq)
		}

		// A cheaper unfeasible entry within the hysteresis margin asks nothing.
		rt2 := &route{origin: identity.SID{0x0D}, seq: 9}
		r.routes[rt2.origin] = rt2
		defer delete(r.routes, rt2.origin)
		r.adverts[p][rt2.origin] = &advert{seq: 9, metric: 0, mtu: 1500, at: time.Now()}
		r.adverts[q][rt2.origin] = &advert{seq: 9, metric: 300, mtu: 1500, at: time.Now()}
		r.quality[p].cost = 256
		r.recomputeLocked(rt2) // via P at 256, fd (9, 256)
		r.quality[p].cost = 650
		before := len(r.requests)
		r.recomputeLocked(rt2) // P 650, Q 556 (unfeasible): not 20% cheaper
		if rt2.via != p || len(r.requests) != before {
			t.Fatalf("marginally cheaper unfeasible entry: via %v, requests %+v", rt2.via, r.requests[before:])
		}
	})
}
