package splitter

// maxEndedIDs bounds the ids of ended sessions a listener remembers.
const maxEndedIDs = 1024

// endedIDs remembers the ids of the sessions that ended last, so that a
// join that raced its session's end (the client was still opening lanes
// when a short transfer finished, or the session was turned away) is told
// apart from a join for a session that never existed: the first is normal
// and logged at debug level, the second is a warning.
type endedIDs struct {
	set map[uint64]struct{}
	q   []uint64 // oldest first
}

func (e *endedIDs) add(id uint64) {
	if e.set == nil {
		e.set = make(map[uint64]struct{})
	}
	if len(e.q) >= maxEndedIDs {
		delete(e.set, e.q[0])
		e.q = e.q[1:]
	}
	e.set[id] = struct{}{}
	e.q = append(e.q, id)
}

func (e *endedIDs) has(id uint64) bool {
	_, ok := e.set[id]
	return ok
}
