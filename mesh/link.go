// Per-hop reliability on one link.
//
// Packet path, sending: a frame for this neighbour is queued by enqueue
// (local senders wait for room, relays drop when full); the link goroutine
// gives it the next sequence number when the window has room, sends it, and
// resends it when the neighbour's ACKs show it lost (a later frame arrived
// first) or its timer runs out, up to MaxAttempts; then it is given up and a
// SKIP tells the neighbour not to wait for it.
//
// Packet path, receiving: receiveData (on the node's read loop) drops
// duplicates and hands every new DATA frame at once to the node's deliver,
// in the order frames arrive: a frame behind a lost one is not held back
// (the MSP stream above puts its own bytes in order), so a per-hop
// retransmission delays only the frame that was lost. A bitmap remembers
// which frames above the cumulative point arrived; the link goroutine then
// sends one ACK covering everything that arrived meanwhile.
package mesh

import (
	"errors"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// maxBackoff caps a frame's retransmission timer.
const maxBackoff = time.Second

// maxTimerResends bounds the frames resent when the timer runs out: the
// oldest ones. A receiver that was merely slow to answer gets that many
// duplicates, not a whole window; after a real silence the rest follow at
// the next expiries, or at once as lost when later frames are acknowledged.
const maxTimerResends = 64

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
	timer   *time.Timer // the link goroutine's; Reset only with mu held
	done    chan struct{}
	stopped sync.Once

	// out, ack and ackBuf are owned by the link goroutine; rxAck and
	// rxAckBuf by the node's read loop.
	out      []*[]byte
	ackBuf   []byte
	ack      wire.Ack
	rxAck    wire.Ack
	rxAckBuf []byte

	// sendMu is held by whoever changes or writes frames in flight
	// (enqueue's fast path, flush), so that first transmissions go out in
	// sequence order and a frame is not rewritten while being sent. Taken
	// before mu.
	sendMu sync.Mutex

	mu sync.Mutex
	// sender state, guarded by mu
	ring      []txEntry
	nextSeq   uint64
	base      uint64 // lowest sequence number not done
	queue     []*[]byte
	ctlQueue  []*[]byte     // this node's routing messages: sent before queue, never behind it
	space     chan struct{} // closed and replaced when the queue shrinks
	lostList  []uint64
	free      []*[]byte // done frames to return to the pool by the goroutine
	srtt      time.Duration
	rttvar    time.Duration
	rttInit   bool
	rackSeq   uint64    // one past the highest first-sent frame known to have arrived
	rackSent  time.Time // when that frame was sent
	progress  time.Time // when an ACK last acknowledged a frame not acknowledged before
	backoff   int       // timer expiries since progress
	nextTimer time.Time // the earliest deadline of a frame in flight
	armed     time.Time // what timer is set for; zero: not set
	peerCum   uint64    // the neighbour's last cumulative ack
	skipDue   bool
	sent      float64 // decaying count of transmissions
	resent    float64 // decaying count of retransmissions
	dead      bool

	// receiver state, guarded by mu
	rxInit     bool
	rxEpoch    uint32
	cum        uint64   // every sequence number below it arrived (or was skipped)
	seen       []uint64 // bit s%win set: frame s, cum < s < cum+win, arrived
	seenCount  int      // bits set in seen
	ackPending bool
	unacked    int    // frames received since the last ACK
	rxTop      uint64 // one past the highest sequence number received
	// Routing messages keep their order: one that arrived early waits in
	// ctlHeld (sorted by seq) until every frame before it arrived or was
	// skipped, since a retraction overtaken by the announcement it
	// preceded would undo it. Data frames never wait.
	ctlHeld []heldFrame
}

type heldFrame struct {
	seq uint64
	bp  *[]byte
}

// maxCtlHeld bounds the routing messages a link holds back; past it the
// oldest goes on out of order.
const maxCtlHeld = 64

// ackEvery is how many frames in a row the receiver takes before it sends
// an ACK from the read loop itself; fewer wait for the link goroutine.
// Out-of-order and duplicate frames are acknowledged at once.
const ackEvery = 8

// ackDelay bounds how long the receiver holds an ACK back for more frames.
const ackDelay = time.Millisecond

func newLink(n *Node, nb *neighbour) *link {
	w := (uint64(n.cfg.LinkWindow) + 63) &^ 63 // whole words of the seen bitmap
	return &link{
		n: n, nb: nb, win: w,
		wake:  make(chan struct{}, 1),
		timer: stoppedTimer(),
		done:  make(chan struct{}),
		ring:  make([]txEntry, w),
		seen:  make([]uint64, (w+63)/64),
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

// maxCtlQueue bounds the routing messages waiting for one neighbour. The
// router sends a few per hello interval; more means the window has been
// shut for a long time, and the next full table says it all again.
const maxCtlQueue = 64

// enqueueControl queues one of this node's routing messages. It goes out
// before any queued data: behind a relay's full data queue it would wait
// a whole queue's worth of transmissions, and dropped for a full queue
// (as relayed data is) routes would expire under load, in the middle of
// the transfer that filled the queue.
func (l *link) enqueueControl(bp *[]byte) error {
	l.mu.Lock()
	switch {
	case l.dead:
		l.mu.Unlock()
		return ErrNoRoute
	case len(l.ctlQueue) >= maxCtlQueue:
		l.mu.Unlock()
		return errQueueFull
	}
	l.ctlQueue = append(l.ctlQueue, bp)
	l.mu.Unlock()
	l.kick()
	return nil
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
	if wait == nil || len(l.queue)+len(l.ctlQueue) > 0 || l.nextSeq-l.base >= l.win {
		l.queue = append(l.queue, bp)
		l.mu.Unlock()
		l.kick()
		return nil
	}
	// A local sender's frame with nothing waiting before it and room in
	// the window: send it from here, not after the link goroutine gets to
	// run (a wakeup that costs more than the send on a busy machine).
	// Relayed frames (wait nil, on the read loop) always go through the
	// queue, so that the read loop never waits for a socket. sendMu comes
	// before mu.
	l.mu.Unlock()
	l.sendMu.Lock()
	l.mu.Lock()
	if l.dead || len(l.queue)+len(l.ctlQueue) > 0 || l.nextSeq-l.base >= l.win {
		dead := l.dead
		if !dead {
			l.queue = append(l.queue, bp)
		}
		l.mu.Unlock()
		l.sendMu.Unlock()
		if dead {
			return ErrNoRoute
		}
		l.kick()
		return nil
	}
	s := l.nextSeq
	l.nextSeq++
	l.ring[s%l.win] = txEntry{buf: bp, sentAt: time.Now(), tries: 1}
	wire.PutLinkFields(*bp, l.n.epoch, s, l.base)
	l.sent++
	if l.nextTimer.IsZero() {
		l.nextTimer = l.deadlineLocked(&l.ring[s%l.win])
		l.armLocked(l.nextTimer)
	}
	l.mu.Unlock()
	err := l.n.send(*bp, l.nb.address())
	l.sendMu.Unlock()
	if err != nil && errors.Is(err, syscall.EMSGSIZE) {
		l.nb.lowerMTU(len(*bp))
	}
	return nil
}

// rto returns the retransmission timeout: srtt-based, doubled for each
// timer expiry in a row with no ACK making progress in between (a silent
// link is probed ever more slowly; a frame lost again while others get
// through is not). Called with mu held.
func (l *link) rto() time.Duration {
	r := 200 * time.Millisecond
	if l.rttInit {
		// A quarter of srtt at least on top: the timer is the last resort
		// (losses are found by later frames arriving), so it may wait for
		// a receiver that was slow to answer.
		r = l.srtt + max(4*l.rttvar, l.srtt/4)
	}
	r = max(r, l.n.cfg.MinRTO)
	for i := 0; i < l.backoff && r < maxBackoff; i++ {
		r *= 2
	}
	return min(r, maxBackoff)
}

// deadlineLocked is when frame e is resent for want of an ACK: its RTO
// after it was sent or after the last ACK that made progress, whichever is
// later. While ACKs keep coming, frames merely queued behind others (a
// link slower than its window) are not resent; a lost frame is found by
// the frames after it arriving first. Called with mu held.
func (l *link) deadlineLocked(e *txEntry) time.Time {
	t := e.sentAt
	if l.progress.After(t) {
		t = l.progress
	}
	return t.Add(l.rto())
}

// run is the link goroutine.
func (l *link) run() {
	defer l.n.wg.Done()
	defer l.timer.Stop()
	for {
		select {
		case <-l.wake:
		case <-l.timer.C:
			l.mu.Lock()
			l.armed = time.Time{}
			l.mu.Unlock()
		case <-l.done:
			l.release()
			return
		}
		l.flush()
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// armLocked makes the timer fire at when, unless it fires sooner already.
// Called with mu held.
func (l *link) armLocked(when time.Time) {
	if when.IsZero() || (!l.armed.IsZero() && !when.Before(l.armed)) {
		return
	}
	l.armed = when
	l.timer.Reset(time.Until(when))
}

// flush sends what is due: the ACK, frames marked lost, frames whose timer
// ran out, new frames the window has room for, and arms the timer for when
// to look again.
func (l *link) flush() {
	bufs := l.n.bufs
	addr := l.nb.address()
	// sendMu for the whole flush: frames are changed (resent ones get a
	// new base) and written in sequence order, none while enqueue writes.
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
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
		l.unacked = 0
		l.buildAckLocked(&l.ack)
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
		gaveUp, expired := false, 0
		for s := l.base; s < l.nextSeq && expired < maxTimerResends; s++ {
			e := &l.ring[s%l.win]
			if e.done || now.Before(l.deadlineLocked(e)) {
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
			expired++
		}
		if expired > 0 {
			l.backoff++
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
	first := func(b *[]byte) {
		s := l.nextSeq
		l.nextSeq++
		l.ring[s%l.win] = txEntry{buf: b, sentAt: now, tries: 1}
		wire.PutLinkFields(*b, epoch, s, l.base)
		out = append(out, b)
		l.sent++
	}
	for len(l.ctlQueue) > 0 && l.nextSeq-l.base < l.win {
		first(l.ctlQueue[0])
		l.ctlQueue[0] = nil
		l.ctlQueue = l.ctlQueue[1:]
	}
	if len(l.ctlQueue) == 0 {
		l.ctlQueue = l.ctlQueue[:0:0]
	}
	for len(l.queue) > 0 && l.nextSeq-l.base < l.win {
		first(l.queue[0])
		l.queue[0] = nil
		l.queue = l.queue[1:]
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
		d := l.deadlineLocked(e)
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
		next = now.Add(l.rto())
	}
	l.armLocked(next)
	l.mu.Unlock()

	if sendAck {
		l.ackBuf = wire.AppendAck(l.ackBuf[:0], &l.ack)
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
		l.progress = now
		l.backoff = 0
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
	// The link goroutine has work only if something is to be resent or
	// waits for the window. (Freed buffers and a timer armed for frames
	// now acknowledged keep until it runs for another reason.)
	work := lost > 0 || len(l.queue) > 0 || len(l.ctlQueue) > 0
	l.mu.Unlock()
	if lost > 0 {
		l.n.stats.fastRetransmits.Add(uint64(lost))
	}
	if work {
		l.kick()
	}
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
	l.skipToLocked(base)
	ctl := l.releaseCtlLocked()
	l.ackPending = true
	l.mu.Unlock()
	l.kick()
	l.routeAll(ctl)
}

// seenLocked reports whether frame s (cum < s < cum+win) arrived.
func (l *link) seenLocked(s uint64) bool {
	i := s % l.win
	return l.seen[i/64]&(1<<(i%64)) != 0
}

// flipLocked sets or clears frame s's bit.
func (l *link) flipLocked(s uint64) {
	i := s % l.win
	l.seen[i/64] ^= 1 << (i % 64)
}

// skipToLocked advances cum to base: frames below it are no longer waited
// for. Called with mu held.
func (l *link) skipToLocked(base uint64) {
	if base <= l.cum {
		return
	}
	if base-l.cum >= l.win {
		clear(l.seen)
		l.seenCount = 0
	} else {
		for s := l.cum + 1; s < base; s++ {
			if l.seenLocked(s) {
				l.flipLocked(s)
				l.seenCount--
			}
		}
	}
	l.cum = base
	l.advanceCumLocked()
}

// advanceCumLocked moves cum past frames that arrived early.
func (l *link) advanceCumLocked() {
	for l.seenCount > 0 && l.seenLocked(l.cum) {
		l.flipLocked(l.cum)
		l.seenCount--
		l.cum++
	}
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
		clear(l.seen)
		l.seenCount = 0
		l.rxInit, l.rxEpoch, l.cum, l.rxTop = true, h.Epoch, h.Base, h.Base
		for _, f := range l.ctlHeld {
			l.n.bufs.put(f.bp)
		}
		l.ctlHeld = l.ctlHeld[:0]
	}
	l.skipToLocked(h.Base)
	s := h.Seq
	fresh, now := false, false
	switch {
	case s < l.cum || (s < l.cum+l.win && l.seenLocked(s)):
		l.n.stats.duplicates.Add(1)
		now = true // the sender missed an ACK
	case s >= l.cum+l.win:
		l.n.stats.beyondWindow.Add(1)
	case s == l.cum:
		l.cum++
		l.advanceCumLocked()
		fresh = true
	default:
		l.flipLocked(s)
		l.seenCount++
		fresh = true
	}
	if fresh && s > max(l.rxTop, l.cum) {
		now = true // a new gap: the sender learns of a loss sooner
	}
	l.rxTop = max(l.rxTop, s+1, l.cum)
	routing := fresh && h.DstPort == RoutingPort && h.Dst == l.n.sid
	if routing {
		i := len(l.ctlHeld)
		for i > 0 && l.ctlHeld[i-1].seq > s {
			i--
		}
		l.ctlHeld = slices.Insert(l.ctlHeld, i, heldFrame{s, bp})
	}
	ctl := l.releaseCtlLocked()
	l.unacked++
	if now || l.unacked >= ackEvery {
		// Acknowledge from here, not the link goroutine: on a busy machine
		// a goroutine may wait many milliseconds to run, and a late ACK
		// looks like a loss to the sender.
		l.ackPending = false
		l.unacked = 0
		l.buildAckLocked(&l.rxAck)
		l.mu.Unlock()
		l.rxAckBuf = wire.AppendAck(l.rxAckBuf[:0], &l.rxAck)
		l.n.stats.ackOut.Add(uint64(len(l.rxAckBuf)))
		l.n.send(l.rxAckBuf, l.nb.address())
	} else {
		// The link goroutine sends it within ackDelay, with whatever
		// else arrived meanwhile (or sooner, if it runs anyway).
		if !l.ackPending {
			l.ackPending = true
			l.armLocked(time.Now().Add(ackDelay))
		}
		l.mu.Unlock()
	}
	l.routeAll(ctl)
	if !fresh {
		l.n.bufs.put(bp)
		return
	}
	if !routing {
		l.n.deliver(bp)
	}
}

// releaseCtlLocked takes the held routing messages that are now in order
// (every frame below them arrived or was skipped), or over the bound.
func (l *link) releaseCtlLocked() []heldFrame {
	k := 0
	for k < len(l.ctlHeld) && (l.ctlHeld[k].seq < l.cum || len(l.ctlHeld)-k > maxCtlHeld) {
		k++
	}
	if k == 0 {
		return nil
	}
	out := slices.Clone(l.ctlHeld[:k])
	l.ctlHeld = slices.Delete(l.ctlHeld, 0, k)
	return out
}

// routeAll hands routing messages to the router, in order; read loop only.
func (l *link) routeAll(fs []heldFrame) {
	for _, f := range fs {
		if h, payload, err := wire.ParseData(*f.bp); err == nil && h.Src == l.nb.sid {
			l.n.router.receive(l.nb, payload)
		}
		l.n.bufs.put(f.bp)
	}
}

// buildAckLocked fills a from the receive state: every range that arrived
// above cum (AppendAck writes the highest ones that fit). Called with mu
// held.
func (l *link) buildAckLocked(a *wire.Ack) {
	a.Epoch = l.rxEpoch
	a.Cum = l.cum
	a.Ranges = a.Ranges[:0]
	found := 0
	var cur *wire.Range
	for s := l.cum + 1; s < l.cum+l.win && found < l.seenCount; {
		i := s % l.win
		if l.seen[i/64]>>(i%64) == 0 {
			s += 64 - i%64 // nothing more in this word
			cur = nil
			continue
		}
		if !l.seenLocked(s) {
			cur = nil
			s++
			continue
		}
		found++
		if cur != nil {
			cur.End = s + 1
		} else {
			a.Ranges = append(a.Ranges, wire.Range{Start: s, End: s + 1})
			cur = &a.Ranges[len(a.Ranges)-1]
		}
		s++
	}
}

// release frees every buffer when the link ends.
func (l *link) release() {
	l.sendMu.Lock() // no frame is being written
	defer l.sendMu.Unlock()
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
	for _, b := range l.ctlQueue {
		l.n.bufs.put(b)
	}
	l.ctlQueue = nil
	for _, f := range l.ctlHeld {
		l.n.bufs.put(f.bp)
	}
	l.ctlHeld = nil
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
