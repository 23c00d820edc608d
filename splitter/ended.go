package splitter

import (
	"context"
	"errors"
	"fmt"

	"github.com/servald/servald/splitter/internal/wire"
)

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

// Probe checks, without opening a session, that a Listener answers at
// addr and agrees on cfg's parameters (version, FEC, payload size): it
// sends a JOIN for session 0, which no session has, and the listener
// checks the parameters before the session. A mismatch is a
// *NegotiationError; agreement (the refusal "unknown session") is nil.
// The listener logs such a probe at debug level only.
func Probe(ctx context.Context, addr string, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	c, _, err := dialHello(ctx, cfg, addr, wire.Hello{Version: wire.Version, Kind: wire.KindJoin, Params: cfg.params()})
	if err == nil {
		c.Close()
		return fmt.Errorf("splitter: probe of %s: the listener accepted a join of session 0", addr)
	}
	var re *RefusedError
	if errors.As(err, &re) && re.code == wire.RefuseUnknownSession {
		return nil
	}
	return err
}
