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
// timeout; a dial that fails fails the stream asked for, and the next one
// dials again. Safe for concurrent use.
type Redialer struct {
	timeout time.Duration
	find    func(ctx context.Context) (identity.SID, uint16, error)
	dial    func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error)

	mu   sync.Mutex
	sess *msp.Session // guarded by mu; the current session, nil before the first dial
	sid  identity.SID // guarded by mu; where the last dial went (zero if it found nothing)
	port uint16       // guarded by mu
	// watch, when set, is told of each session dialled and of the session
	// of each stream OpenStream opened (TunnelStats.Add); guarded by mu.
	watch func(*msp.Session)
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
// none or it has ended. When the dial fails, the ended session (if any)
// is kept for the next try and the error returned; an error caused by the
// timeout (not by ctx) once the target was found reads "SID unreachable
// after TIMEOUT: ..."; a find that failed returns its own error.
func (r *Redialer) Session(ctx context.Context) (*msp.Session, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sessionLocked(ctx)
}

func (r *Redialer) sessionLocked(ctx context.Context) (*msp.Session, error) {
	if r.sess != nil && r.sess.Err() == nil {
		return r.sess, nil
	}
	dctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	s, err := r.dialOnce(dctx)
	if err != nil {
		if ctx.Err() == nil && dctx.Err() != nil {
			// Named only when found: a failed find has no SID to show.
			if !r.sid.IsZero() {
				return nil, fmt.Errorf("%s unreachable after %v: %w", r.sid, r.timeout, err)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("target not found within %v: %w", r.timeout, err)
			}
		}
		return nil, err
	}
	if r.sess != nil {
		r.sess.Close()
	}
	r.sess = s
	if r.watch != nil {
		r.watch(s)
	}
	return s, nil
}

// dialOnce finds the target and dials it; r.mu is held.
func (r *Redialer) dialOnce(ctx context.Context) (*msp.Session, error) {
	var err error
	if r.sid, r.port, err = r.find(ctx); err != nil {
		return nil, err
	}
	return r.dial(ctx, r.sid, r.port)
}

// OpenStream opens a stream on the current session (see Session).
func (r *Redialer) OpenStream(ctx context.Context) (net.Conn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := r.sessionLocked(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx)
	if err == nil && r.watch != nil {
		r.watch(s)
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

// Close closes the current session.
func (r *Redialer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.sess == nil {
		return nil
	}
	return r.sess.Close()
}
