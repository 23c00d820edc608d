package instance

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
)

// Redialer keeps one MSP session to a target for a connecting side: it
// dials when there is no session or the last one ended (the peer
// restarted, say), so that each new stream gets a live session. Each dial
// (finding the target, then opening the session) is bounded by the
// timeout; a dial that fails fails the streams asked for while it ran,
// and the next one dials again. One dial runs at a time, and the callers
// that come while it runs take its result: a stream asked for while the
// target is down waits at most one timeout, however many wait. Safe for
// concurrent use.
type Redialer struct {
	timeout time.Duration
	find    func(ctx context.Context) (identity.SID, uint16, error)
	dial    func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error)

	mu      sync.Mutex
	sess    *msp.Session // guarded by mu; the current session, nil before the first dial
	sid     identity.SID // guarded by mu; where the last dial went (zero if it found nothing)
	port    uint16       // guarded by mu
	dialing *dialCall    // guarded by mu; the dial running, nil for none
	// watch, when set, is told of each session dialled and of the session
	// of each stream OpenStream opened (TunnelStats.Add); guarded by mu,
	// called with mu held.
	watch func(*msp.Session)
}

// dialCall is a dial that callers wait for.
type dialCall struct {
	done chan struct{} // closed when sess and err are set
	sess *msp.Session
	err  error
	// gaveUp: the dial ended because its caller's ctx did; the callers
	// waiting dial again.
	gaveUp bool
}

// NewRedialer returns a Redialer that finds the target with find (asked
// again at each dial: a service may move) and opens a session to it with
// dial, both within timeout. Nothing is dialled yet.
func NewRedialer(timeout time.Duration,
	find func(ctx context.Context) (identity.SID, uint16, error),
	dial func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error)) *Redialer {
	return &Redialer{timeout: timeout, find: find, dial: dial}
}

// Session returns the current session, dialling one first when there is
// none or it has ended (or waiting for the dial running). When the dial
// fails, the ended session (if any) is kept for the next try and the
// error returned; an error caused by the timeout (not by ctx) once the
// target was found reads "SID unreachable after TIMEOUT: ..."; a find
// that failed returns its own error.
func (r *Redialer) Session(ctx context.Context) (*msp.Session, error) {
	for {
		r.mu.Lock()
		switch {
		case r.sess != nil && r.sess.Err() == nil:
			s := r.sess
			r.mu.Unlock()
			return s, nil
		case r.dialing != nil:
			call := r.dialing
			r.mu.Unlock()
			select {
			case <-call.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if !call.gaveUp {
				return call.sess, call.err
			}
			continue
		}
		call := &dialCall{done: make(chan struct{})}
		r.dialing = call
		r.mu.Unlock()
		return r.dialFor(ctx, call)
	}
}

// dialFor runs call, the dial ctx's caller started, and hands its result
// to the callers waiting.
func (r *Redialer) dialFor(ctx context.Context, call *dialCall) (*msp.Session, error) {
	s, err := r.dialTimed(ctx)
	r.mu.Lock()
	r.dialing = nil
	if err == nil {
		if r.sess != nil {
			r.sess.Close()
		}
		r.sess = s
		if r.watch != nil {
			r.watch(s)
		}
	}
	r.mu.Unlock()
	call.sess, call.err, call.gaveUp = s, err, err != nil && ctx.Err() != nil
	close(call.done)
	return s, err
}

// dialTimed finds the target and dials it within the timeout.
func (r *Redialer) dialTimed(ctx context.Context) (*msp.Session, error) {
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	sid, port, err := r.find(dctx)
	r.mu.Lock()
	r.sid, r.port = sid, port
	r.mu.Unlock()
	var s *msp.Session
	if err == nil {
		s, err = r.dial(dctx, sid, port)
	}
	if err != nil && ctx.Err() == nil && dctx.Err() != nil {
		// Named only when found: a failed find has no SID to show.
		if !sid.IsZero() {
			return nil, fmt.Errorf("%s unreachable after %v: %w", sid, r.timeout, err)
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("target not found within %v: %w", r.timeout, err)
		}
	}
	return s, err
}

// OpenStream opens a stream on the current session (see Session).
func (r *Redialer) OpenStream(ctx context.Context) (net.Conn, error) {
	s, err := r.Session(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx)
	if err == nil {
		r.mu.Lock()
		if r.watch != nil {
			r.watch(s)
		}
		r.mu.Unlock()
	}
	return st, err
}

// Watch tells f of each session dialled from now on and, after each
// stream OpenStream opens, of its session (TunnelStats.Add). f must not
// call r.
func (r *Redialer) Watch(f func(*msp.Session)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watch = f
}

// Target is where the last dial went: zero when it found no target.
func (r *Redialer) Target() (identity.SID, uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sid, r.port
}

// Shutdown ends the current session gracefully (msp.Session.Shutdown).
func (r *Redialer) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sess == nil {
		return nil
	}
	return r.sess.Shutdown(ctx)
}

// Close closes the current session, once the dial running (if any) has
// ended.
func (r *Redialer) Close() error {
	r.mu.Lock()
	if call := r.dialing; call != nil {
		r.mu.Unlock()
		<-call.done
		r.mu.Lock()
	}
	defer r.mu.Unlock()
	if r.sess == nil {
		return nil
	}
	return r.sess.Close()
}
