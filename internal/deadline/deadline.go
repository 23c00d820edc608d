package deadline

import (
	"sync"
	"time"
)

// Timer is a settable deadline. Its zero value has no deadline and is ready
// to use; it must not be copied after first use. Its methods are safe for
// concurrent use.
//
// The channel Done returns stays the same while the deadline has not
// passed, whatever Set does to it: moving the deadline re-arms the timer
// that closes that channel, so a call already blocked on it sees the new
// deadline (the net.Conn contract: a deadline applies to pending calls).
// Only once the channel is closed does a later Set that lies in the future
// (or clears it) put a fresh one in its place.
type Timer struct {
	mu    sync.Mutex
	ch    chan struct{} // closed when the deadline passes; nil until first needed; guarded by mu
	timer *time.Timer   // closes ch at the deadline; nil when none is pending; guarded by mu
	gen   uint64        // bumped by Set and Stop: a timer armed before does nothing; guarded by mu
}

// Set sets the deadline to t; the zero time clears it. A t that is not in
// the future closes the channel at once.
func (d *Timer) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmLocked()
	dur := time.Until(t)
	if !t.IsZero() && dur <= 0 {
		if d.ch == nil {
			d.ch = make(chan struct{})
		}
		if !isClosed(d.ch) {
			close(d.ch)
		}
		return
	}
	// Cleared or in the future: an open channel, the pending calls' own
	// unless it was closed already.
	if d.ch == nil || isClosed(d.ch) {
		d.ch = make(chan struct{})
	}
	if t.IsZero() {
		return
	}
	gen := d.gen
	d.timer = time.AfterFunc(dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.gen == gen { // not moved since: ch is the one armed for, still open
			close(d.ch)
			d.timer = nil
		}
	})
}

// Done returns a channel that is closed when the deadline passes. It stays
// valid until then, across every Set; after it is closed, a Set that moves
// the deadline into the future or clears it makes Done return a new one.
func (d *Timer) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ch == nil {
		d.ch = make(chan struct{})
	}
	return d.ch
}

// Expired reports whether the deadline has passed.
func (d *Timer) Expired() bool { return isClosed(d.Done()) }

// Stop releases the pending timer, if any, leaving the deadline as it is
// now: passed or not, it will not pass later. For a Close that ends the
// calls by other means.
func (d *Timer) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.disarmLocked()
}

// disarmLocked cancels the pending timer. Called with d.mu held.
func (d *Timer) disarmLocked() {
	d.gen++
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
