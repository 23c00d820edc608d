// The serving loop and its table of slots.
//
//	accept ─► pair{key, accepted} ─► table.add ─┬─ a slot was free
//	                                             └─ full: victim's ctx cancelled (ErrEvicted)
//	         ─► goroutine: [wait for the victim's teardown] ─► handle(pair ctx) ─► table.remove
//	idle timer per pair: re-armed from the last activity stamp; cancels the
//	pair's ctx (ErrIdleTimeout) once no byte moved for the timeout
//
// The copy paths never touch the table or the timer: they only store the
// activity stamp (join.go), which the timer and the table read.

package forward

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// ErrIdleTimeout is the cause of a pair closed because no byte moved either
// way for the idle timeout; the join's error wraps it.
var ErrIdleTimeout = errors.New("idle timeout")

// ErrEvicted is the cause of a pair closed to make room for a new
// connection when all slots were held; the join's error wraps it.
var ErrEvicted = errors.New("evicted to make room for a new connection")

// loop accepts connections and runs handle on each in its own goroutine.
type loop struct {
	accept        func() (net.Conn, error)
	stopAccepting func() // with once, called after the first accept; may be nil
	handle        func(context.Context, net.Conn, *activity) error
	once          bool
	max           int
	// evict: when max pairs are held a new one evicts one (table.add);
	// otherwise the loop stops accepting until a handler returns.
	evict       bool
	idleTimeout time.Duration // 0: none
	log         *slog.Logger
	f           *Forwarder // counters
}

// run accepts until accept fails, then waits for the handlers. With once it
// calls stopAccepting (if not nil) after the first connection and returns
// its handler's error.
func (l *loop) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	// running bounds the handler goroutines: max joined pairs, plus with
	// eviction as many again being torn down. Without eviction it keeps
	// the table from filling, so add never evicts.
	bound := l.max
	if l.evict {
		bound *= 2
	}
	running := make(chan struct{}, bound)
	tab := newTable(l.max)
	var backoff time.Duration
	for {
		select {
		case running <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		c, err := l.accept()
		if err != nil {
			<-running
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, net.ErrClosed):
				return nil
			case !retryable(err):
				return fmt.Errorf("forward: accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("forward: accept failed, retrying", "err", err, "in", backoff)
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		backoff = 0
		l.f.accepted.Add(1)
		p := tab.newPair(ctx, peerKey(c.RemoteAddr()))
		v, err := l.place(ctx, tab, p)
		if err != nil {
			_ = c.Close()
			<-running
			return err
		}
		l.f.active.Add(1)
		if v != nil {
			l.f.active.Add(-1)
			l.f.evicted.Add(1)
			used, idle := v.idle()
			l.log.Debug("forward: evicting a pair to make room", "key", v.key, "used", used, "idle", idle, "for", p.key)
			v.cancel(ErrEvicted)
		}
		serve := func() error {
			defer close(p.done)
			defer p.cancel(nil)
			defer func() {
				if tab.remove(p) {
					l.f.active.Add(-1)
				}
			}()
			if v != nil {
				// What v held (an MSP stream, where a session allows
				// only so many) is free once it is torn down, within
				// EvictLinger. p waits for that even if evicted itself,
				// so that p's end implies v's.
				<-v.done
				if p.ctx.Err() != nil {
					_ = c.Close()
					return fmt.Errorf("forward: %s: %w", addrString(c.RemoteAddr()), context.Cause(p.ctx))
				}
			}
			stop := l.watchIdle(p)
			defer stop()
			return l.handle(p.ctx, c, &p.act)
		}
		if l.once {
			if l.stopAccepting != nil {
				l.stopAccepting()
			}
			return serve()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-running }()
			if err := serve(); err != nil {
				// an evicted or idle pair may fail in open or dial, with
				// ctx's error rather than its cause: all are expected
				cause := context.Cause(p.ctx)
				if ctx.Err() != nil || errors.Is(cause, ErrEvicted) || errors.Is(cause, ErrIdleTimeout) {
					l.log.Debug("forward: connection ended", "err", err)
				} else {
					l.log.Warn("forward: connection ended", "err", err)
				}
			}
		}()
	}
}

// place takes a slot for p, waiting while every slot is held and none can
// be given up (see table.add); it returns the pair to evict, if any, or
// ctx's error.
func (l *loop) place(ctx context.Context, tab *table, p *pair) (victim *pair, err error) {
	for {
		v, ok, retry := tab.add(p)
		if ok {
			return v, nil
		}
		if err := waitChange(ctx, tab.changed, retry); err != nil {
			return nil, err
		}
	}
}

// waitChange waits for changed, for d unless it is 0, or for ctx.
func waitChange(ctx context.Context, changed <-chan struct{}, d time.Duration) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-changed:
	case <-timeout:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// watchIdle cancels p with ErrIdleTimeout once no byte has moved for
// l.idleTimeout: one timer, re-armed when it fires early for the time left
// since the last activity stamp. The returned function stops the watch.
func (l *loop) watchIdle(p *pair) (stop func()) {
	if l.idleTimeout <= 0 {
		return func() {}
	}
	var mu sync.Mutex
	stopped := false // guarded by mu
	var t *time.Timer
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		if stopped {
			return
		}
		if _, idle := p.idle(); idle < l.idleTimeout {
			t.Reset(l.idleTimeout - idle)
			return
		}
		stopped = true
		l.f.idleClosed.Add(1)
		l.log.Debug("forward: closing an idle pair", "key", p.key, "timeout", l.idleTimeout)
		p.cancel(ErrIdleTimeout)
	}
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(l.idleTimeout, check)
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// pair is one accepted connection and, once joined, its partner.
type pair struct {
	key      string // peerKey of the accepted connection
	ctx      context.Context
	cancel   context.CancelCauseFunc
	done     chan struct{} // closed once the pair is torn down
	elem     *list.Element // in table.keys while the pair holds a slot; guarded by table.mu
	accepted int64         // stamp (activity.now) of the accept
	act      activity      // bytes moved; shares the table's base
}

// idle reports whether p has moved a byte, and for how long it has not
// (since its accept if it never has).
func (p *pair) idle() (used bool, d time.Duration) {
	last := p.act.last.Load()
	used = last != 0
	if !used {
		last = p.accepted
	}
	return used, time.Duration(p.act.now() - last)
}

// activeGrace protects a pair that moved a byte this recently from
// eviction: a transfer in progress is never cut for a newcomer.
const activeGrace = time.Second

// evictable reports whether p may be evicted at the stamp now, and if not,
// in how long it may. A pair that never moved a byte may (even while it
// still opens its stream or dials its target); one that did, once it has
// been idle for activeGrace.
func (p *pair) evictable(now int64) (ok bool, in time.Duration) {
	last := p.act.last.Load()
	if last == 0 {
		return true, 0
	}
	if idle := time.Duration(now - last); idle < activeGrace {
		return false, activeGrace - idle
	}
	return true, 0
}

// evictsBefore reports whether p is to be evicted before q: a pair that has
// never moved a byte before one that has (the oldest first), then the one
// idle the longest.
func (p *pair) evictsBefore(q *pair) bool {
	pl, ql := p.act.last.Load(), q.act.last.Load()
	switch {
	case pl == 0 && ql == 0:
		return p.accepted < q.accepted
	case pl == 0 || ql == 0:
		return pl == 0
	}
	return pl < ql
}

// table holds the pairs of one loop by key, at most max.
type table struct {
	base time.Time // origin of the activity stamps
	max  int

	changed chan struct{} // capacity 1: see signal

	mu   sync.Mutex
	n    int                   // pairs held; guarded by mu
	keys map[string]*list.List // each key's pairs in accept order; guarded by mu
}

func newTable(max int) *table {
	return &table{base: time.Now(), max: max, changed: make(chan struct{}, 1), keys: make(map[string]*list.List)}
}

// newPair returns a pair for a connection from key, with its own context
// below ctx.
func (t *table) newPair(ctx context.Context, key string) *pair {
	p := &pair{key: key, done: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancelCause(ctx)
	p.act.base = t.base
	p.accepted = p.act.now()
	return p
}

// add takes a slot for p (ok). If all were held it first frees one and
// returns its pair, which the caller must cancel: of the pairs of the key
// holding the most, p's own key counting p (so on a tie p's key gives up
// one of its own), the evictable one that evictsBefore the others. If that
// key has no evictable pair, add takes nothing and returns !ok: the caller
// waits for t.changed, or for retry if it is not 0 (when the first of that
// key's pairs becomes evictable by time), and tries again.
//
// The search stops at the key's oldest pair that never moved a byte (under
// a flood of idle connections, one of the first looked at); only when
// there is none does it look at every pair of the key.
func (t *table) add(p *pair) (victim *pair, ok bool, retry time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n >= t.max {
		heaviest, most := "", -1
		for k, l := range t.keys {
			n := l.Len()
			if k == p.key {
				n++
			}
			if n > most || n == most && k == p.key {
				heaviest, most = k, n
			}
		}
		now := int64(time.Since(t.base)) + 1 // as activity.now
		for e := t.keys[heaviest].Front(); e != nil; e = e.Next() {
			q := e.Value.(*pair)
			can, in := q.evictable(now)
			if !can {
				if retry == 0 || in < retry {
					retry = in
				}
				continue
			}
			if victim == nil || q.evictsBefore(victim) {
				victim = q
			}
			if q.act.last.Load() == 0 {
				break // the oldest that never moved a byte: first to go
			}
		}
		if victim == nil {
			return nil, false, retry
		}
		t.removeLocked(victim)
	}
	l := t.keys[p.key]
	if l == nil {
		l = list.New()
		t.keys[p.key] = l
	}
	p.elem = l.PushBack(p)
	t.n++
	return victim, true, 0
}

// remove frees p's slot and reports whether p held one (an evicted pair no
// longer does).
func (t *table) remove(p *pair) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.removeLocked(p)
}

func (t *table) removeLocked(p *pair) bool {
	if p.elem == nil {
		return false
	}
	l := t.keys[p.key]
	l.Remove(p.elem)
	p.elem = nil
	if l.Len() == 0 {
		delete(t.keys, p.key)
	}
	t.n--
	t.signal()
	return true
}

// signal wakes a newcomer waiting in loop.place: a slot was freed.
func (t *table) signal() {
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

// peerKey is what slots are shared by: the host part of a remote address
// (an IP, or the SID of a mesh address SID:port), or the whole address
// string when it has no port.
func peerKey(a net.Addr) string {
	s := addrString(a)
	if host, _, err := net.SplitHostPort(s); err == nil {
		return host
	}
	return s
}

// EvictLinger bounds how long Serve waits, when it evicts a pair, for the
// far end of the pair's stream to finish: the stream is half-closed and
// drained until the far end's EOF before it is closed. The far end (an
// MSP listener) counts the stream against its session's limit until then;
// the pair taking the slot opens its stream only after, so that the far
// end has room for it.
const EvictLinger = time.Second

// lingerOnEvict wraps a stream of Serve so that its Close, once ctx ended
// with ErrEvicted, half-closes it and drains it until EOF or EvictLinger
// first. Only a half-closable stream that is not a kernel socket and has
// no ReadFrom method is wrapped (the wrapper keeps WriteTo); others are
// returned as they are.
func lingerOnEvict(ctx context.Context, stream net.Conn) net.Conn {
	if _, ok := stream.(HalfCloser); !ok || isKernel(stream) || isReaderFrom(stream) {
		return stream
	}
	l := lingerConn{stream, ctx}
	if isWriterTo(stream) {
		return lingerWriterTo{l}
	}
	return l
}

// lingerConn is a stream whose Close lingers after an eviction.
type lingerConn struct {
	net.Conn
	ctx context.Context
}

func (c lingerConn) CloseWrite() error { return c.Conn.(HalfCloser).CloseWrite() }

func (c lingerConn) Close() error {
	if errors.Is(context.Cause(c.ctx), ErrEvicted) && c.Conn.(HalfCloser).CloseWrite() == nil &&
		c.Conn.SetReadDeadline(time.Now().Add(EvictLinger)) == nil {
		_, _ = io.Copy(io.Discard, readerOnly{c.Conn, nil})
	}
	return c.Conn.Close()
}

// lingerWriterTo is a lingerConn that keeps its stream's WriteTo.
type lingerWriterTo struct{ lingerConn }

func (c lingerWriterTo) WriteTo(w io.Writer) (int64, error) { return c.Conn.(io.WriterTo).WriteTo(w) }
