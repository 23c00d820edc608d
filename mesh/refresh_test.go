package mesh

import (
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
)

// quietRouter returns a router of a node with a 1 s hello interval and no
// peers: not the node's own, so nothing but the test ticks it.
func quietRouter(t *testing.T) *router {
	return newRouter(StartNode(t, Config{HelloInterval: time.Second}, forgedNet(t).Listen(), nil))
}

// numberedSID is a made-up origin, the i-th of a test's table.
func numberedSID(i int) identity.SID {
	var o identity.SID
	o[0], o[1] = byte(i>>8), byte(i)
	return o
}

// TestRefreshSpread: a node that learned its whole table at once (as every
// node of a mesh that started together does) refreshes it spread over the
// interval, not as one burst: no 20 s holds more than about its share of
// the table, so that control traffic is the same in any window. Entries
// learned under a short interval (and hold), before the table grew, are
// still refreshed before their neighbours' hold runs out, and every entry
// is refreshed again within about an interval.
func TestRefreshSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := quietRouter(t)
		hello := r.n.cfg.HelloInterval
		const routes, nbs, window = 499, 3, 20
		via := &neighbour{}
		r.mu.Lock()
		defer r.mu.Unlock()
		var early, late []*route
		now := time.Now()
		for i := range routes {
			o := numberedSID(i)
			rt := &route{origin: o, via: via}
			r.routes[o] = rt
			if i < 50 {
				// Learned first, while the table was small.
				r.dumpTicks = dumpEvery
				r.setHoldLocked(dumpEvery)
				early = append(early, rt)
			} else {
				late = append(late, rt)
			}
		}
		for _, rt := range early {
			r.sentAllLocked(&rt.refresh, now)
		}
		r.dumpTicks = r.dumpInterval(nbs)
		r.setHoldLocked(r.dumpTicks)
		for _, rt := range late {
			r.sentAllLocked(&rt.refresh, now)
		}
		r.self.due, r.self.mustBy = now.Add(time.Hour), now.Add(time.Hour) // sent with the table
		interval := r.dumpTicks
		t.Logf("interval %d hello intervals for %d routes", interval, routes)

		// Its share: the table over the interval, and a frame's worth.
		share := int(math.Ceil(float64((routes+1)*window)/float64(interval))) + entriesPerFrame
		sent := map[*route][]time.Time{}
		var perTick []int
		for range 4 * interval {
			r.mu.Unlock()
			time.Sleep(hello)
			r.mu.Lock()
			r.ticks++
			now := time.Now()
			due := r.refreshLocked(now)
			perTick = append(perTick, len(due))
			for _, d := range due {
				if d.rt == nil {
					continue
				}
				if now.After(d.f.mustBy) {
					t.Fatalf("an entry refreshed %v after two thirds of its hold", now.Sub(d.f.mustBy))
				}
				sent[d.rt] = append(sent[d.rt], now)
				r.sentAllLocked(d.f, now)
			}
		}
		for i := range len(perTick) - window {
			sum := 0
			for _, c := range perTick[i : i+window] {
				sum += c
			}
			if sum > share {
				t.Fatalf("%d entries refreshed in the %d s from %d s, more than the share %d: %v", sum, window, i+1, share, perTick)
			}
		}
		// Those put off by the cap in the first round wait up to an
		// interval more; from then on, an interval apart.
		steady := time.Duration(interval+dumpEvery) * hello
		for _, rt := range append(early, late...) {
			ts := sent[rt]
			if len(ts) < 3 {
				t.Fatalf("an entry refreshed %d times in 4 intervals", len(ts))
			}
			for i := 1; i < len(ts); i++ {
				if gap := ts[i].Sub(ts[i-1]); gap > 2*steady || i == len(ts)-1 && gap > steady {
					t.Fatalf("refresh %d of an entry %v after the last (interval %d s): %v", i, gap, interval, ts)
				}
			}
		}
	})
}

// TestRetractedSourceKept: a retracted route is advertised for
// retractedHold, and its record, with the feasibility distance, kept for
// sourceHold (as Babel keeps its sources), not deleted with the
// advertising: forgotten while neighbours still advertise the origin, the
// next entry heard would be feasible whatever its metric.
func TestRetractedSourceKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := quietRouter(t)
		o := identity.SID{0x0A}
		rt := &route{origin: o, fdSeq: 5, fdMetric: 512, fdSet: true}
		r.mu.Lock()
		r.routes[o] = rt
		rt.lost = time.Now().Add(-2 * retractedHold)
		r.mu.Unlock()
		r.tick()
		r.mu.Lock()
		if r.routes[o] == nil {
			r.mu.Unlock()
			t.Fatalf("a route retracted %v ago forgotten (sourceHold %v)", 2*retractedHold, sourceHold)
		}
		if r.advertisedLocked(rt, time.Now()) {
			t.Errorf("a route retracted %v ago still advertised", 2*retractedHold)
		}
		rt.lost = time.Now().Add(-sourceHold - time.Second)
		r.mu.Unlock()
		r.tick()
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.routes[o] != nil {
			t.Fatalf("a route retracted %v ago still kept", sourceHold)
		}
	})
}

// TestOriginationSpread: nodes that start together do not issue their
// periodic sequence numbers in the same tick (each one floods the mesh with
// a signature).
func TestOriginationSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := quietRouter(t).n
		const count = 20
		first := map[int]int{} // tick of the first new number: routers
		for range count {
			r := newRouter(n)
			seq := r.selfSeq
			for r.ticks < 3*originEvery {
				r.tick()
				if r.selfSeq != seq {
					break
				}
			}
			if r.selfSeq == seq {
				t.Fatalf("no new sequence number in %d ticks", 3*originEvery)
			}
			first[r.ticks]++
		}
		for tick, c := range first {
			if c > count/4 {
				t.Fatalf("%d of %d routers issued their first periodic number at tick %d: %v", c, count, tick, first)
			}
		}

	})
}
