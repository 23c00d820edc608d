package mesh

// Per-hop deadlines ("hybrid mode"): datagrams with a delivery budget.
//
// Packet path: WriteToWithin (port.go) turns its budget into a local
// deadline, due = now + budget, and sends a TypeDataBudget frame. Every
// transmission of it on a link (first or resent, link_send.go) stamps the
// frame with what will remain on arrival, due − now − the link's one-way
// delay estimate (srtt/2), and a frame with nothing left is given up
// instead (counted Late; a frame in flight is marked done, so the window
// moves past it and a SKIP tells the neighbour not to wait for it). The
// next node (relay.go) turns the budget it received back into a local
// deadline, due = arrival + budget, so the time it holds the frame (its
// link queue, the wait for the window, resends) is spent from it on its
// own clock; only durations travel, never times.

import (
	"errors"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// errLate is a frame with a budget dropped because its budget ran out (it
// was counted Late).
var errLate = errors.New("mesh: datagram deadline passed")

// oneWayLocked is the link's one-way delay estimate: half its smoothed
// round trip, zero before the first sample. Called with mu held.
func (l *link) oneWayLocked() time.Duration {
	if !l.tx.rttInit {
		return 0
	}
	return l.tx.srtt / 2
}

// stampLocked writes into frame the budget that will remain when it
// arrives if it is sent now; it reports false, and writes nothing, when
// none would (less than a microsecond). A frame without a budget (due
// zero) is left alone. Called with mu held.
func (l *link) stampLocked(frame []byte, due, now time.Time) bool {
	if due.IsZero() {
		return true
	}
	left := due.Sub(now) - l.oneWayLocked()
	if left < time.Microsecond {
		return false
	}
	wire.PutBudget(frame, budgetMicros(left))
	return true
}

// budgetMicros is d in whole microseconds, at most wire.MaxBudget.
func budgetMicros(d time.Duration) uint32 {
	return uint32(min(d/time.Microsecond, wire.MaxBudget))
}
