package msp

// Datagrams in sessions (RFC 9221's idea, outside the stream layer).
// Packet path, sending: SendDatagram frames the payload behind its budget,
// seals it with the session's keys into a DATA record of its own and
// writes it to the transport from the caller's goroutine (within the
// budget where the transport can enforce one: see budgetWriter); arq never
// sees it, so it is neither retransmitted nor held behind the stream.
// Receiving: the endpoint's read loop opens the record as any other (same
// keys, same replay window), Session.input sees the datagram type byte and
// queues the payload, with the time by which it must be taken, on a
// bounded queue (the dialing session's own, or the listener's, shared by
// its sessions); ReceiveDatagram takes it, dropping those whose budget ran
// out while they waited.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/msp/internal/seal"
)

// dgramType is the first byte of a datagram's plaintext; an arq packet's
// is arq.Version.
const dgramType = 0x40

// MaxBudget is the largest budget a datagram carries: a longer one (or
// none) is sent as "no deadline".
const MaxBudget = time.Hour

// dgramHeaderMax is the largest datagram header: the type byte and the
// budget in µs (a varint; MaxBudget in µs needs 5 bytes).
const dgramHeaderMax = 1 + 5

// Bounds of a datagram receive queue: datagrams that arrive while it
// holds dgramQueueLen of them, or dgramQueueBytes of payload, are dropped
// and counted (DatagramStats.Dropped). In a listener's queue, shared by
// its sessions, one session holds at most dgramSessionShare of them, so
// that a peer that floods leaves room for the others.
const (
	dgramQueueLen     = 1024
	dgramQueueBytes   = 4 << 20
	dgramSessionShare = dgramQueueLen / 4
)

// Errors of SendDatagram and ReceiveDatagram callers branch on.
var (
	// ErrDatagramTooLarge: the payload is larger than MaxDatagram.
	ErrDatagramTooLarge = errors.New("msp: datagram larger than the path carries")
	// ErrNotDialed: datagrams of a listener's sessions come from
	// Listener.ReceiveDatagram.
	ErrNotDialed = errors.New("msp: a listener's session: receive its datagrams with Listener.ReceiveDatagram")
)

// budgetWriter is a transport that delivers a datagram only within a
// budget of now, each hop spending from it (an MDP port of a mesh with
// per-hop deadlines); others, and one whose WriteToWithin fails with
// errors.ErrUnsupported (a daemon that does not know budgets), get
// WriteTo and the receiver's check only.
type budgetWriter interface {
	WriteToWithin(p []byte, addr net.Addr, budget time.Duration) (int, error)
}

// appendDatagram frames payload with its budget (0: none).
func appendDatagram(b []byte, budget time.Duration, payload []byte) []byte {
	if budget < 0 || budget > MaxBudget {
		budget = 0
	}
	b = append(b, dgramType)
	b = binary.AppendUvarint(b, uint64(budget.Microseconds()))
	return append(b, payload...)
}

// parseDatagram decodes a datagram's plaintext: its budget (0: none) and
// payload (aliasing b).
func parseDatagram(b []byte) (time.Duration, []byte, error) {
	if len(b) == 0 || b[0] != dgramType {
		return 0, nil, errors.New("msp: not a datagram")
	}
	us, n := binary.Uvarint(b[1:])
	if n <= 0 || us > uint64(MaxBudget.Microseconds()) {
		return 0, nil, errors.New("msp: datagram budget malformed")
	}
	return time.Duration(us) * time.Microsecond, b[1+n:], nil
}

// dgramCounters are a session's datagram counters.
type dgramCounters struct {
	sent, received, late, dropped, tooLarge, writeErrors atomic.Uint64
}

// DatagramStats are a session's datagram counters.
type DatagramStats struct {
	Sent        uint64 // datagrams handed to the transport
	Received    uint64 // datagrams taken by ReceiveDatagram
	Late        uint64 // received datagrams dropped because their budget ran out first
	Dropped     uint64 // received datagrams dropped because the receive queue was full
	TooLarge    uint64 // SendDatagram calls refused: larger than MaxDatagram
	WriteErrors uint64 // datagrams the transport refused
}

// DatagramStats returns the session's datagram counters.
func (s *Session) DatagramStats() DatagramStats {
	c := &s.dgram
	return DatagramStats{
		Sent: c.sent.Load(), Received: c.received.Load(), Late: c.late.Load(),
		Dropped: c.dropped.Load(), TooLarge: c.tooLarge.Load(), WriteErrors: c.writeErrors.Load(),
	}
}

// MaxDatagram is the largest payload SendDatagram carries to the peer now
// (the path's MTU less the mesh, record and datagram headers); 0 when the
// path carries none.
func (s *Session) MaxDatagram() int {
	return max(s.ep.tr.MaxPayload(s.peer)-seal.Overhead-dgramHeaderMax, 0)
}

// SendDatagram sends p to the peer as one datagram, sealed with the
// session's keys, unreliably: it may be lost, and is never retransmitted.
// It is delivered only within budget of now (budget <= 0 or above
// MaxBudget: no deadline): over a transport that enforces it each hop
// spends from it, and the receiver drops a datagram whose budget its
// estimate of the one-way delay, or its wait in the receive queue, used
// up. A p larger than MaxDatagram gives ErrDatagramTooLarge. It may wait
// while the transport's queue to the next hop is full; it never waits for
// the session's streams.
func (s *Session) SendDatagram(p []byte, budget time.Duration) error {
	select {
	case <-s.done:
		return fmt.Errorf("msp: datagram to %s: %w", s.peer.Short(), net.ErrClosed)
	default:
	}
	if len(p) > s.MaxDatagram() {
		s.dgram.tooLarge.Add(1)
		return fmt.Errorf("%w: %d bytes, at most %d to %s", ErrDatagramTooLarge, len(p), s.MaxDatagram(), s.peer.Short())
	}
	// Sealed in place: the plaintext after room for the record header.
	buf := make([]byte, seal.HeaderLen, seal.Overhead+dgramHeaderMax+len(p))
	pt := appendDatagram(buf, budget, p)
	rec, err := s.sec.Seal(buf[:0], pt[seal.HeaderLen:])
	if err != nil {
		return fmt.Errorf("msp: datagram to %s: %w", s.peer.Short(), err)
	}
	err = errors.ErrUnsupported
	if bw, ok := s.ep.tr.(budgetWriter); ok && budget > 0 && budget <= MaxBudget {
		_, err = bw.WriteToWithin(rec, s.RemoteAddr(), budget)
	}
	if errors.Is(err, errors.ErrUnsupported) { // no budget, or a daemon too old for one
		_, err = s.ep.tr.WriteTo(rec, s.RemoteAddr())
	}
	if err != nil {
		s.dgram.writeErrors.Add(1)
		if tooLarge(err) {
			s.dgram.tooLarge.Add(1)
			return fmt.Errorf("%w: %w", ErrDatagramTooLarge, err)
		}
		return fmt.Errorf("msp: datagram to %s: %w", s.peer.Short(), err)
	}
	s.dgram.sent.Add(1)
	return nil
}

// inputDatagram queues a received datagram's plaintext (endpoint read
// loop). A datagram whose budget the one-way delay (half the least round
// trip seen) already used up is dropped as late; the others must be taken
// before the rest of their budget runs out.
func (s *Session) inputDatagram(plain []byte) {
	budget, p, err := parseDatagram(plain)
	if err != nil {
		s.ep.stats.malformed.Add(1)
		return
	}
	var expire time.Time
	if budget > 0 {
		left := budget - s.conn.MinRTT()/2
		if left <= 0 {
			s.dgram.late.Add(1)
			return
		}
		expire = time.Now().Add(left)
	}
	q := s.dq
	if q == nil {
		s.dgram.dropped.Add(1)
		return
	}
	if !q.push(dgramItem{s: s, p: append([]byte(nil), p...), expire: expire}) {
		s.dgram.dropped.Add(1)
	}
}

// ReceiveDatagram waits for the next datagram from the peer of a dialed
// session, until ctx ends or the session does. The slice is the caller's.
// A listener's sessions give ErrNotDialed: see Listener.ReceiveDatagram.
func (s *Session) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	if !s.client {
		return nil, ErrNotDialed
	}
	it, err := s.dq.pop(ctx, s.done)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("msp: datagram from %s: %w", s.peer.Short(), net.ErrClosed)
		}
		return nil, err
	}
	return it.p, nil
}

// ReceiveDatagram waits for the next datagram from any of the listener's
// sessions, until ctx ends or the listener closes, and returns it with
// the session it came in (where SendDatagram answers). The slice is the
// caller's. A listener nobody receives datagrams from drops them when its
// queue is full (DatagramStats.Dropped of the sessions).
func (l *Listener) ReceiveDatagram(ctx context.Context) (*Session, []byte, error) {
	it, err := l.dq.pop(ctx, l.done)
	if err != nil {
		if ctx.Err() == nil {
			err = fmt.Errorf("msp: datagram: %w", net.ErrClosed)
		}
		return nil, nil, err
	}
	return it.s, it.p, nil
}

// dgramItem is a queued datagram.
type dgramItem struct {
	s      *Session
	p      []byte
	expire time.Time // zero: no deadline
}

// dgramQueue is a bounded FIFO of received datagrams: dgramQueueLen of
// them, dgramQueueBytes of payload, perSession of one session's.
type dgramQueue struct {
	perSession int
	mu         sync.Mutex
	items      []dgramItem      // guarded by mu; a FIFO, the oldest first
	bytes      int              // guarded by mu; payload bytes in items
	of         map[*Session]int // guarded by mu; items per session
	ready      chan struct{}
}

func newDgramQueue(perSession int) *dgramQueue {
	return &dgramQueue{perSession: perSession, of: map[*Session]int{}, ready: make(chan struct{}, 1)}
}

// push queues it, or reports false when the queue, or the session's share
// of it, is full.
func (q *dgramQueue) push(it dgramItem) bool {
	q.mu.Lock()
	if len(q.items) >= dgramQueueLen || q.bytes+len(it.p) > dgramQueueBytes || q.of[it.s] >= q.perSession {
		q.mu.Unlock()
		return false
	}
	q.items = append(q.items, it)
	q.bytes += len(it.p)
	q.of[it.s]++
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest datagram whose budget has not run out (those whose
// has are dropped and counted Late), waiting until ctx or done ends.
func (q *dgramQueue) pop(ctx context.Context, done <-chan struct{}) (dgramItem, error) {
	for {
		if it, ok := q.take(time.Now()); ok {
			return it, nil
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return dgramItem{}, ctx.Err()
		case <-done:
			return dgramItem{}, net.ErrClosed
		}
	}
}

func (q *dgramQueue) take(now time.Time) (dgramItem, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) > 0 {
		it := q.items[0]
		q.items[0] = dgramItem{}
		q.items = q.items[1:]
		q.bytes -= len(it.p)
		if q.of[it.s]--; q.of[it.s] == 0 {
			delete(q.of, it.s)
		}
		if len(q.items) == 0 {
			q.items = nil // let the backing array go
		}
		if !it.expire.IsZero() && now.After(it.expire) {
			it.s.dgram.late.Add(1)
			continue
		}
		it.s.dgram.received.Add(1)
		if len(q.items) > 0 {
			select {
			case q.ready <- struct{}{}:
			default:
			}
		}
		return it, true
	}
	return dgramItem{}, false
}

// isDatagram reports whether an opened record's plaintext is a datagram
// rather than an arq packet (whose first byte is arq.Version).
func isDatagram(plain []byte) bool { return len(plain) > 0 && plain[0] == dgramType }
