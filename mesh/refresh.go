package mesh

// Periodic refresh: full tables spread over their interval.
//
// Every entry a node advertises (its own and each route's) is sent to all
// neighbours again once per refresh interval (dumpInterval: dumpEvery hello
// intervals, or more when the table is big, so that it costs at most
// dumpBudget bytes a second), and every sigEvery-th time with its
// signature. The entries are not sent as one table at once: each has its
// own due tick, one interval after it was last sent to every neighbour (by
// a refresh or a triggered update), and every few ticks (refreshStep, about
// one frame's worth) the node sends the entries due, oldest first, at most
// the interval's share of the table. So the bytes a node sends are the
// same in any stretch of time, whatever the mesh's size, and a mesh whose
// nodes all started together does not send its tables in the same second.
//
// Holds: a message carries 3.5 intervals (setHoldLocked), and an entry is
// due one interval after it was sent, so a neighbour keeps it even when its
// refresh comes late because the cap put it off. Because each entry is due
// on the interval it was sent with, the interval may grow at once with
// the table: entries sent under a short interval (and hold) are refreshed
// first, under the new one.

import (
	"math"
	"slices"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// refresh is when an advertised entry is next due to all neighbours. In
// time, not ticks: a loaded node's ticker drops ticks, and neighbours
// expire entries by their clocks.
type refresh struct {
	due    time.Time // an interval after it was last sent to all
	mustBy time.Time // two thirds of the hold it was sent with: sent then even over the cap
	sends  int       // periodic refreshes so far: every sigEvery-th carries the signature
}

// sentAllLocked records that the entry went to every neighbour now.
// Called with r.mu held.
func (r *router) sentAllLocked(f *refresh, now time.Time) {
	hello := r.n.cfg.HelloInterval
	f.due = now.Add(time.Duration(r.dumpTicks) * hello)
	f.mustBy = now.Add(time.Duration(r.holdTicks) * hello * 2 / 3)
}

// entriesPerFrame is how many entries without signatures fill a
// routing frame at the base MTU.
const entriesPerFrame = (baseMTU - wire.DataHeaderLen - wire.RouteHeaderLen) / wire.RouteEntryLen

// refreshStep is the number of ticks between two refreshes when count
// entries are refreshed every interval ticks: about one frame's worth of
// entries each (a frame each tick would cost more in headers and
// acknowledgements than the entries), at most the interval.
func refreshStep(interval, count int) int {
	return min(max(interval*entriesPerFrame/max(count, 1), 1), interval)
}

// refreshDue is one entry to refresh: a route, or our own when rt is nil.
type refreshDue struct {
	rt *route
	f  *refresh
}

// advertisedLocked reports whether rt goes out in tables: a route, or a
// retraction for retractedHold. Called with r.mu held.
func (r *router) advertisedLocked(rt *route, now time.Time) bool {
	return rt.via != nil || now.Sub(rt.lost) < retractedHold
}

// refreshLocked picks the entries to send at this tick's refresh, if one
// is due: every entry due before the next one, oldest first, at most the
// interval's share of the table (the rest are due first next time), and
// any whose neighbours' hold would otherwise run out. It sets the Hold our
// messages carry. Called with r.mu held.
func (r *router) refreshLocked(now time.Time) []refreshDue {
	if r.ticks < r.nextDump {
		return nil
	}
	count := 1
	for _, rt := range r.routes {
		if r.advertisedLocked(rt, now) {
			count++
		}
	}
	step := refreshStep(r.dumpTicks, count)
	r.nextDump = r.ticks + step
	hello := r.n.cfg.HelloInterval
	next := now.Add(time.Duration(step) * hello) // the next refresh
	ahead := r.dumpTicks                         // the furthest due, in ticks: the hold must cover it
	var due []refreshDue
	var must int
	consider := func(rt *route, f *refresh) {
		ahead = max(ahead, int(f.due.Sub(now)/hello)+1)
		switch {
		case f.mustBy.Before(next):
			due = slices.Insert(due, 0, refreshDue{rt, f}) // before the cap
			must++
		case f.due.Before(next):
			due = append(due, refreshDue{rt, f})
		}
	}
	consider(nil, &r.self)
	for _, rt := range r.routes {
		if r.advertisedLocked(rt, now) {
			consider(rt, &rt.refresh)
		}
	}
	r.ahead = ahead
	slices.SortStableFunc(due[must:], func(a, b refreshDue) int { return a.f.due.Compare(b.f.due) })
	limit := max(must, int(math.Ceil(float64(count*step)/float64(r.dumpTicks))))
	return due[:min(len(due), limit)]
}

// sendRefresh sends each neighbour the entries picked by refreshLocked,
// each with its signature every sigEvery-th time (or when the neighbour
// lacks it), and records them as sent.
func (r *router) sendRefresh(nbs []*neighbour, due []refreshDue) {
	r.mu.Lock()
	sigs := make([]bool, len(due))
	for i, d := range due {
		d.f.sends++
		sigs[i] = d.f.sends%sigEvery == 0
	}
	msgs := make([]*wire.RouteMsg, len(nbs))
	for i, nb := range nbs {
		if r.adverts[nb] == nil {
			continue // gone, or not yet up
		}
		m := &wire.RouteMsg{Entries: make([]wire.RouteEntry, 0, len(due))}
		r.ihuLocked(nb, m)
		for j, d := range due {
			if d.rt == nil {
				m.Entries = append(m.Entries, r.selfEntryLocked(nb))
			} else {
				m.Entries = append(m.Entries, r.entryLocked(nb, d.rt, sigs[j]))
			}
		}
		msgs[i] = m
	}
	now := time.Now()
	for _, d := range due {
		r.sentAllLocked(d.f, now)
	}
	r.mu.Unlock()
	for i, nb := range nbs {
		if msgs[i] != nil {
			r.send(nb, msgs[i], routeTable)
		}
	}
}
