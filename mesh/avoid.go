package mesh

// Avoiding next hops that drop: a relay can advertise a genuine, signed
// route entry at the lowest plausible metric, attract the traffic and drop
// it; no distance-vector rule can tell. The endpoints can: an MSP session
// whose packets go unacknowledged for several round trips while a route
// exists reports it (PacketConn.NoProgress), and the router marks that
// route's next hop as failing for that destination for failHold (doubling,
// up to maxFailHold, when it fails again soon after), and selects as if the
// neighbour had not advertised the destination: the next-best feasible
// route, or, when the others are all unfeasible, none for a moment, and a
// sequence number request whose answer makes one feasible (RFC 8966's
// rules, so the route stays loop-free).
//
// A mark is made only when another neighbour, not marked, advertises the
// destination: when the destination itself is gone, or no other path
// exists, nothing changes. The destination's own link is never marked
// (it is no relay). If every neighbour that advertises a destination has
// come to be marked (the unmarked ones went away), marks are ignored for
// it rather than leave it unreachable. When a mark ends, the hello tick
// recomputes the route, so a cheaper next hop is tried again.

import (
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

const (
	// failHold is how long a next hop is first avoided for a destination.
	failHold = 30 * time.Second
	// maxFailHold bounds the doubled hold of a next hop that fails again.
	maxFailHold = 16 * time.Minute
	// maxFailMarks bounds the marks kept (only local sessions make them).
	maxFailMarks = 4096
)

// failKey names a next hop towards an origin, by SID, so that a neighbour
// that reconnects is still avoided.
type failKey struct{ origin, via identity.SID }

// failMark is a next hop found failing for an origin.
type failMark struct {
	until   time.Time     // avoided until then
	hold    time.Duration // the length of the latest mark
	forget  time.Time     // a failure after this starts again at the base hold
	expired bool          // until has passed and the route was recomputed
}

// avoidedLocked reports whether nb is marked failing for origin at now
// (r.mu held).
func (r *router) avoidedLocked(origin identity.SID, nb *neighbour, now time.Time) bool {
	if len(r.failing) == 0 {
		return false
	}
	m := r.failing[failKey{origin, nb.sid}]
	return m != nil && now.Before(m.until)
}

// candidateLocked reports whether the advert ad may lead to rt.origin at
// all (it exists, is no retraction, and is not newer than anything
// verified).
func candidateLocked(rt *route, ad *advert) bool {
	return ad != nil && ad.metric != wire.MetricInfinity && ad.seq <= rt.seq
}

// avoidingLocked reports whether marks count for rt at now: some
// neighbour that is not marked advertises its origin (r.mu held).
func (r *router) avoidingLocked(rt *route, now time.Time) bool {
	if len(r.failing) == 0 {
		return false
	}
	for nb, ads := range r.adverts {
		if candidateLocked(rt, ads[rt.origin]) && !r.avoidedLocked(rt.origin, nb, now) {
			return true
		}
	}
	return false
}

// noProgress handles a session's report that nothing it sent to sid was
// acknowledged for several round trips: the next hop in use is marked
// failing for sid if another neighbour, not marked, advertises sid. It
// reports whether a mark was made.
func (r *router) noProgress(sid identity.SID) bool {
	r.mu.Lock()
	rt := r.routes[sid]
	if rt == nil || rt.via == nil || rt.via.sid == sid {
		r.noProgressIgnored++ // no relay to blame
		r.mu.Unlock()
		return false
	}
	now := r.now()
	alt := false
	for nb, ads := range r.adverts {
		if nb != rt.via && candidateLocked(rt, ads[sid]) && !r.avoidedLocked(sid, nb, now) {
			alt = true
			break
		}
	}
	if !alt {
		r.noProgressIgnored++ // the destination is gone, or no other path exists
		r.mu.Unlock()
		return false
	}
	k := failKey{sid, rt.via.sid}
	m := r.failing[k]
	switch {
	case m != nil && now.Before(m.until):
		// Marked already; the route has not been recomputed since
		// another neighbour came back. The mark stands as it is.
	case m != nil && now.Before(m.forget):
		m.hold = min(2*m.hold, maxFailHold) // it failed again soon after
	default:
		if m == nil {
			r.pruneMarksLocked(now)
			if len(r.failing) >= maxFailMarks {
				r.noProgressIgnored++
				r.mu.Unlock()
				return false
			}
			m = &failMark{}
			r.failing[k] = m
		}
		m.hold = r.failHold
	}
	if !now.Before(m.until) {
		m.until = now.Add(m.hold)
		m.forget = m.until.Add(m.hold)
		m.expired = false
	}
	r.failMarks++
	r.n.log.Info("mesh: next hop avoided: nothing got through it", "dst", sid.Short(), "via", rt.via.sid.Short(), "for", m.hold)
	r.recomputeLocked(rt)
	r.unlockAndNotify()
	return true
}

// expireMarksLocked recomputes the routes whose marks ran out, so that a
// cheaper next hop may be used again, and forgets old marks (r.mu held;
// once per hello interval).
func (r *router) expireMarksLocked(now time.Time) {
	for k, m := range r.failing {
		if !m.expired && !now.Before(m.until) {
			m.expired = true
			if rt := r.routes[k.origin]; rt != nil {
				r.recomputeLocked(rt)
			}
		}
	}
	r.pruneMarksLocked(now)
}

// pruneMarksLocked forgets marks whose history is over (r.mu held).
func (r *router) pruneMarksLocked(now time.Time) {
	for k, m := range r.failing {
		if m.expired && now.After(m.forget) {
			delete(r.failing, k)
		}
	}
}
