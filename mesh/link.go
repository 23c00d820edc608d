// Per-hop reliability on one link.
//
// Packet path, sending: a frame for this neighbour is queued by enqueue
// (local senders wait for room, relays drop when full); the link goroutine
// gives it the next sequence number when the window has room, sends it, and
// resends it when the neighbour's ACKs show it lost (a later frame arrived
// first) or its timer runs out, up to MaxAttempts; then it is given up and a
// SKIP tells the neighbour not to wait for it.
//
// Packet path, receiving: receiveData (on the node's read loop) puts DATA
// frames in sequence order, holding those after a gap, drops duplicates, and
// hands each in-order frame to the node's deliver; the link goroutine then
// sends one ACK covering everything that arrived meanwhile.
package mesh

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// maxHeldBytes bounds the bytes of out-of-order frames a link holds.
const maxHeldBytes = 16 << 20

// maxBackoff caps a frame's retransmission timer.
const maxBackoff = time.Second

var errQueueFull = errors.New("mesh: link queue full")

type txEntry struct {
	buf    *[]byte
	sentAt time.Time
	tries  int
	done   bool // acknowledged or given up
	lost   bool // marked lost, waiting to be resent
}

type link struct {
	n       *Node
	nb      *neighbour
	win     uint64
	wake    chan struct{}
	done    chan struct{}
	stopped sync.Once
	wg      sync.WaitGroup

	// out and ackBuf are owned by the link goroutine.
	out    []*[]byte
	ackBuf []byte
	ack    wire.Ack

	mu sync.Mutex
	// sender state, guarded by mu
	ring      []txEntry
	nextSeq   uint64
	base      uint64 // lowest sequence number not done
	queue     []*[]byte
	space     chan struct{} // closed and replaced when the queue shrinks
	lostList  []uint64
	free      []*[]byte // done frames to return to the pool by the goroutine
	srtt      time.Duration
	rttvar    time.Duration
	rttInit   bool
	rackSeq   uint64    // one past the highest first-sent frame known to have arrived
	rackSent  time.Time // when that frame was sent
	nextTimer time.Time
	peerCum   uint64 // the neighbour's last cumulative ack
	skipDue   bool
	sent      float64 // decaying count of transmissions
	resent    float64 // decaying count of retransmissions
	dead      bool

	// receiver state, guarded by mu
	rxInit     bool
	rxEpoch    uint32
	cum        uint64 // next sequence number expected
	held       []*[]byte
	heldBytes  int
	heldCount  int
	ackPending bool
	deliverBuf []*[]byte // owned by the read loop
}

func newLink(n *Node, nb *neighbour) *link {
	w := uint64(n.cfg.LinkWindow)
	return &link{
		n: n, nb: nb, win: w,
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
		ring:  make([]txEntry, w),
		held:  make([]*[]byte, w),
		space: make(chan struct{}),
	}
}

func (l *link) start() {
	l.n.wg.Add(1)
	go l.run()
}

// stop ends the link; blocked senders get ErrNoRoute.
func (l *link) stop() {
	l.stopped.Do(func() {
		l.mu.Lock()
		l.dead = true
		close(l.space)
		l.space = make(chan struct{})
		l.mu.Unlock()
		close(l.done)
	})
}

func (l *link) kick() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// enqueue queues a DATA frame for sending. With wait nil a full queue drops
// the frame; otherwise enqueue waits for room until wait is closed.
func (l *link) enqueue(bp *[]byte, wait <-chan struct{}) error {
	l.mu.Lock()
	for len(l.queue) >= l.n.cfg.LinkQueue && !l.dead {
		if wait == nil {
			l.mu.Unlock()
			return errQueueFull
		}
		ch := l.space
		l.mu.Unlock()
		select {
		case <-ch:
		case <-wait:
			return os.ErrDeadlineExceeded
		}
		l.mu.Lock()
	}
	if l.dead {
		l.mu.Unlock()
		return ErrNoRoute
	}
	l.queue = append(l.queue, bp)
	l.mu.Unlock()
	l.kick()
	return nil
}

// rto returns the retransmission timeout for a frame sent tries times.
// Called with mu held.
func (l *link) rto(tries int) time.Duration {
	r := 200 * time.Millisecond
	if l.rttInit {
		r = l.srtt + 4*l.rttvar
	}
	r = max(r, l.n.cfg.MinRTO)
	for i := 1; i < tries && r < maxBackoff; i++ {
		r *= 2
	}
	return min(r, maxBackoff)
}

// run is the link goroutine.
func (l *link) run() {
	defer l.n.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		select {
		case <-l.wake:
		case <-t.C:
		case <-l.done:
			l.release()
			return
		}
		next := l.flush()
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		if !next.IsZero() {
			t.Reset(time.Until(next))
		} else {
			t.Reset(time.Hour)
		}
	}
}

// flush sends what is due: the ACK, frames marked lost, frames whose timer
// ran out, new frames the window has room for. It returns when to look again.
func (l *link) flush() time.Time {
	bufs := l.n.bufs
	addr := l.nb.address()
	l.mu.Lock()
	for _, b := range l.free {
		bufs.put(b)
	}
	clear(l.free)
	l.free = l.free[:0]
	now := time.Now()
	out := l.out[:0]
	sendAck := l.ackPending
	if sendAck {
		l.ackPending = false
		l.buildAckLocked()
		l.ackBuf = wire.AppendAck(l.ackBuf[:0], &l.ack)
	}
	epoch := l.n.epoch
	skip := false
	resend := func(s uint64, e *txEntry) {
		e.lost = false
		e.tries++
		e.sentAt = now
		wire.PutLinkFields(*e.buf, epoch, s, l.base)
		out = append(out, e.buf)
		l.resent++
		l.sent++
		l.n.stats.retransmits.Add(1)
	}
	for _, s := range l.lostList {
		if s >= l.base && s < l.nextSeq {
			if e := &l.ring[s%l.win]; !e.done && e.lost {
				resend(s, e)
			}
		}
	}
	l.lostList = l.lostList[:0]
	if !l.nextTimer.IsZero() && !now.Before(l.nextTimer) {
		gaveUp := false
		for s := l.base; s < l.nextSeq; s++ {
			e := &l.ring[s%l.win]
			if e.done || now.Before(e.sentAt.Add(l.rto(e.tries))) {
				continue
			}
			if e.tries >= l.n.cfg.MaxAttempts {
				e.done = true
				gaveUp = true
				l.n.stats.abandoned.Add(1)
				continue
			}
			resend(s, e)
			l.n.stats.timeouts.Add(1)
		}
		if gaveUp {
			l.advanceLocked()
			l.skipDue = true
		}
		if l.skipDue && l.peerCum >= l.base {
			l.skipDue = false
		}
		skip = l.skipDue
	}
	for len(l.queue) > 0 && l.nextSeq-l.base < l.win {
		b := l.queue[0]
		l.queue[0] = nil
		l.queue = l.queue[1:]
		s := l.nextSeq
		l.nextSeq++
		l.ring[s%l.win] = txEntry{buf: b, sentAt: now, tries: 1}
		wire.PutLinkFields(*b, epoch, s, l.base)
		out = append(out, b)
		l.sent++
		if len(l.queue) == 0 || len(l.queue) == l.n.cfg.LinkQueue-1 {
			close(l.space)
			l.space = make(chan struct{})
		}
	}
	if len(l.queue) == 0 {
		l.queue = l.queue[:0:0]
	}
	// The next timer: the earliest deadline of a frame in flight.
	l.nextTimer = time.Time{}
	for s := l.base; s < l.nextSeq; s++ {
		e := &l.ring[s%l.win]
		if e.done {
			continue
		}
		d := e.sentAt.Add(l.rto(e.tries))
		if l.nextTimer.IsZero() || d.Before(l.nextTimer) {
			l.nextTimer = d
		}
		if e.tries == 1 {
			break // later first transmissions are due later still
		}
	}
	base := l.base
	next := l.nextTimer
	if l.skipDue && next.IsZero() {
		next = now.Add(l.rto(1))
	}
	l.mu.Unlock()

	if sendAck {
		l.n.stats.ackOut.Add(uint64(len(l.ackBuf)))
		l.n.send(l.ackBuf, addr)
	}
	if skip {
		l.n.send(wire.AppendSkip(nil, epoch, base), addr)
	}
	for _, b := range out {
		if err := l.n.send(*b, addr); err != nil && errors.Is(err, syscall.EMSGSIZE) {
			l.nb.lowerMTU(len(*b))
		}
	}
	clear(out)
	l.out = out[:0]
	return next
}

// advanceLocked moves base past done frames. Called with mu held.
func (l *link) advanceLocked() {
	for l.base < l.nextSeq {
		e := &l.ring[l.base%l.win]
		if !e.done {
			break
		}
		l.free = append(l.free, e.buf)
		*e = txEntry{}
		l.base++
	}
}

// receiveAck applies an ACK from the neighbour (read loop).
func (l *link) receiveAck(a *wire.Ack) {
	if a.Epoch != l.n.epoch {
		return
	}
	now := time.Now()
	l.mu.Lock()
	var sample time.Time
	mark := func(s uint64) {
		e := &l.ring[s%l.win]
		if e.done {
			return
		}
		e.done = true
		// Only a frame sent once says when what arrived was sent: the ack
		// of a resent one may be for its first copy.
		if e.tries == 1 && s >= l.rackSeq {
			l.rackSeq, l.rackSent = s+1, e.sentAt
		}
		if e.tries == 1 && e.sentAt.After(sample) {
			sample = e.sentAt
		}
	}
	if a.Cum > l.peerCum {
		l.peerCum = a.Cum
	}
	for s := l.base; s < min(a.Cum, l.nextSeq); s++ {
		mark(s)
	}
	for _, r := range a.Ranges {
		for s := max(r.Start, l.base); s < min(r.End, l.nextSeq); s++ {
			mark(s)
		}
	}
	if !sample.IsZero() {
		l.rttSampleLocked(now.Sub(sample))
	}
	// Links deliver in order, so a frame sent before one that arrived, and
	// not itself acknowledged, is lost: first copies are sent in sequence
	// order, resent ones are compared by the time they went out.
	lost := 0
	for s := l.base; s < min(l.rackSeq, l.nextSeq); s++ {
		e := &l.ring[s%l.win]
		if e.done || e.lost || (e.tries > 1 && !e.sentAt.Before(l.rackSent)) {
			continue
		}
		e.lost = true
		l.lostList = append(l.lostList, s)
		lost++
	}
	l.advanceLocked()
	l.mu.Unlock()
	if lost > 0 {
		l.n.stats.fastRetransmits.Add(uint64(lost))
	}
	l.kick()
}

func (l *link) rttSampleLocked(r time.Duration) {
	if !l.rttInit {
		l.srtt, l.rttvar, l.rttInit = r, r/2, true
		return
	}
	d := l.srtt - r
	if d < 0 {
		d = -d
	}
	l.rttvar = (3*l.rttvar + d) / 4
	l.srtt = (7*l.srtt + r) / 8
}

// receiveSkip applies a SKIP: the neighbour gave up frames below base.
func (l *link) receiveSkip(epoch uint32, base uint64) {
	l.mu.Lock()
	if !l.rxInit || epoch != l.rxEpoch {
		l.mu.Unlock()
		return
	}
	deliver := l.skipToLocked(base, l.deliverBuf[:0])
	l.ackPending = true
	l.mu.Unlock()
	l.kick()
	l.deliverAll(deliver)
}

// skipToLocked advances cum to base, collecting held frames on the way in
// order. Called with mu held.
func (l *link) skipToLocked(base uint64, deliver []*[]byte) []*[]byte {
	if base <= l.cum {
		return deliver
	}
	end := min(base, l.cum+l.win)
	for s := l.cum; s < end; s++ {
		if b := l.held[s%l.win]; b != nil {
			l.held[s%l.win] = nil
			l.heldBytes -= cap(*b)
			l.heldCount--
			deliver = append(deliver, b)
		}
	}
	if base > end { // a jump beyond the window: nothing held is below it
		for i, b := range l.held {
			if b != nil {
				l.n.bufs.put(b)
				l.held[i] = nil
			}
		}
		l.heldBytes, l.heldCount = 0, 0
	}
	l.cum = base
	return l.drainLocked(deliver)
}

// drainLocked collects held frames that are now in order.
func (l *link) drainLocked(deliver []*[]byte) []*[]byte {
	for l.heldCount > 0 {
		b := l.held[l.cum%l.win]
		if b == nil {
			break
		}
		l.held[l.cum%l.win] = nil
		l.heldBytes -= cap(*b)
		l.heldCount--
		l.cum++
		deliver = append(deliver, b)
	}
	return deliver
}

// receiveData takes a DATA frame from the neighbour (read loop); it owns bp.
func (l *link) receiveData(bp *[]byte) {
	h, _, err := wire.ParseData(*bp)
	if err != nil {
		l.n.stats.malformed.Add(1)
		l.n.bufs.put(bp)
		return
	}
	l.mu.Lock()
	if !l.rxInit || h.Epoch != l.rxEpoch {
		for i, b := range l.held {
			if b != nil {
				l.n.bufs.put(b)
				l.held[i] = nil
			}
		}
		l.heldBytes, l.heldCount = 0, 0
		l.rxInit, l.rxEpoch, l.cum = true, h.Epoch, h.Base
	}
	deliver := l.skipToLocked(h.Base, l.deliverBuf[:0])
	s := h.Seq
	switch {
	case s < l.cum || (s < l.cum+l.win && l.held[s%l.win] != nil):
		l.n.stats.duplicates.Add(1)
		l.n.bufs.put(bp)
	case s >= l.cum+l.win:
		l.n.stats.beyondWindow.Add(1)
		l.n.bufs.put(bp)
	case s == l.cum:
		l.cum++
		deliver = l.drainLocked(append(deliver, bp))
	default:
		bp = l.n.bufs.shrink(bp)
		if l.heldBytes+cap(*bp) > maxHeldBytes {
			l.n.stats.heldDrops.Add(1)
			l.n.bufs.put(bp)
			break
		}
		l.held[s%l.win] = bp
		l.heldBytes += cap(*bp)
		l.heldCount++
	}
	l.ackPending = true
	l.mu.Unlock()
	l.kick()
	l.deliverAll(deliver)
}

// deliverAll hands in-order frames on; read loop only. Routing messages
// from this neighbour go to the router.
func (l *link) deliverAll(deliver []*[]byte) {
	for i, b := range deliver {
		deliver[i] = nil
		if h, payload, err := wire.ParseData(*b); err == nil && h.DstPort == RoutingPort && h.Dst == l.n.sid {
			if h.Src == l.nb.sid {
				l.n.router.receive(l.nb, payload)
			}
			l.n.bufs.put(b)
			continue
		}
		l.n.deliver(b)
	}
	l.deliverBuf = deliver[:0]
}

// buildAckLocked fills l.ack from the receive state. Called with mu held.
func (l *link) buildAckLocked() {
	l.ack.Epoch = l.rxEpoch
	l.ack.Cum = l.cum
	l.ack.Ranges = l.ack.Ranges[:0]
	if l.heldCount == 0 {
		return
	}
	found := 0
	var cur *wire.Range
	for s := l.cum + 1; s < l.cum+l.win && found < l.heldCount; s++ {
		if l.held[s%l.win] == nil {
			cur = nil
			continue
		}
		found++
		if cur != nil {
			cur.End = s + 1
			continue
		}
		if len(l.ack.Ranges) == wire.MaxAckRanges {
			break
		}
		l.ack.Ranges = append(l.ack.Ranges, wire.Range{Start: s, End: s + 1})
		cur = &l.ack.Ranges[len(l.ack.Ranges)-1]
	}
}

// release frees every buffer when the link ends.
func (l *link) release() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.free {
		l.n.bufs.put(b)
	}
	l.free = nil
	for i := range l.ring {
		if b := l.ring[i].buf; b != nil {
			l.n.bufs.put(b)
		}
		l.ring[i] = txEntry{}
	}
	for _, b := range l.queue {
		l.n.bufs.put(b)
	}
	l.queue = nil
	for i, b := range l.held {
		if b != nil {
			l.n.bufs.put(b)
			l.held[i] = nil
		}
	}
}

// quality returns the smoothed round trip and the recent resend fraction.
func (l *link) quality() (time.Duration, float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	loss := 0.0
	if l.sent > 0 {
		loss = l.resent / l.sent
	}
	return l.srtt, loss
}

// decay ages the loss counters; called once per hello interval.
func (l *link) decay() {
	l.mu.Lock()
	l.sent *= 0.5
	l.resent *= 0.5
	l.mu.Unlock()
}

var _ net.Addr = Addr{}
