package mesh

// The sending half of a link.
//
// Packet path: a DATA frame for this neighbour comes from a local WriteTo
// (enqueueLocal: it waits for room in the queue; with nothing queued,
// room in the window and no burst under way (udp_batch.go) it is numbered
// and written to the socket right there)
// or from the relay (enqueueRelay, on the read loop: dropped when the
// queue is full; on a batching socket the read loop itself flushes the
// link at the end of its read batch, unless a writer holds it, udp_batch.go);
// this node's routing messages come through enqueueControl, ahead of
// queued data. flush, on the link goroutine or the read loop, gives
// queued frames the next sequence numbers while the window has room and
// writes them, in batches where the socket can. receiveAck (read loop) marks acknowledged frames done and,
// since first copies go out in sequence order, marks lost a frame sent
// before one that arrived; flush resends those, and frames whose timer ran
// out, up to MaxAttempts; then a frame is given up and a SKIP tells the
// neighbour not to wait for it. A frame with a budget (WriteToWithin) is
// stamped with what remains of it at each transmission, and is given up
// (counted Late) instead of sent or resent once nothing would remain when
// it arrived (budget.go).

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// maxBackoff caps a frame's retransmission timer.
const maxBackoff = time.Second

// maxTimerResends bounds the frames resent when the timer runs out: the
// oldest one only, a probe. The timer fires far more often on a delay
// spike (a receiver or read loop that was slow to answer, ACKs waiting in
// a socket) than on a real silence: resending 64 frames each time cost a
// chain of loaded hops hundreds of duplicates a second, capacity taken from
// new frames (BenchmarkInprocChain). A lost frame is found all the same:
// by the ACK of any frame first sent after it or, at the tail of a burst
// with nothing sent after it, by the probe's ACK (receiveAck: every frame
// sent before the probe and still missing is lost); a silent link is
// probed at each expiry, ever more slowly.
const maxTimerResends = 1

var errQueueFull = errors.New("mesh: link queue full")

// maxCtlQueue bounds the routing messages waiting for one neighbour. The
// router sends a few per hello interval; more means the window has been
// shut for a long time, and the router sends its full table again once
// the queue is empty (router.refusedFrame).
const maxCtlQueue = 64

// controlRoom reports whether the control queue is empty: room for a
// full table (router.refusedFrame).
func (l *link) controlRoom() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.dead && len(l.tx.ctlQueue) == 0
}

// enqueueControl queues one of this node's routing messages. It goes out
// before any queued data: behind a relay's full data queue it would wait
// a whole queue's worth of transmissions, and dropped for a full queue
// (as relayed data is) routes would expire under load, in the middle of
// the transfer that filled the queue.
func (l *link) enqueueControl(bp *[]byte) error {
	if err := l.push(&l.tx.ctlQueue, maxCtlQueue, txFrame{buf: bp}); err != nil {
		return err
	}
	l.kick()
	return nil
}

// enqueueRelay queues a relayed DATA frame. It runs on the read loop, so
// it never waits: a full queue drops the frame (errQueueFull), and the
// frame always goes through the queue. On a batching socket the read loop
// writes it at the end of its read batch with the others relayed to this
// neighbour (flushAfterBatch), else the link goroutine does. due is the
// frame's delivery deadline (zero: none).
func (l *link) enqueueRelay(bp *[]byte, due time.Time) error {
	if err := l.push(&l.tx.queue, l.n.cfg.LinkQueue, txFrame{buf: bp, due: due}); err != nil {
		return err
	}
	if l.n.batch != nil {
		l.n.flushAfterBatch(l)
	} else {
		l.kick()
	}
	return nil
}

// push appends f to q (a queue of tx) unless it holds limit frames or the
// link is dead. The caller sees that it is sent (kick).
func (l *link) push(q *[]txFrame, limit int, f txFrame) error {
	l.mu.Lock()
	switch {
	case l.dead:
		l.mu.Unlock()
		return ErrNoRoute
	case len(*q) >= limit:
		l.mu.Unlock()
		return errQueueFull
	}
	*q = append(*q, f)
	l.mu.Unlock()
	return nil
}

// enqueueLocal queues a DATA frame of a local sender, waiting for room in
// the queue until deadline (os.ErrDeadlineExceeded) or closed
// (net.ErrClosed) is closed. A frame with a budget (due not zero) waits no
// longer than due, and is dropped (errLate, counted) when nothing of its
// budget would remain when it arrived.
func (l *link) enqueueLocal(bp *[]byte, due time.Time, deadline, closed <-chan struct{}) error {
	var expire <-chan time.Time
	l.mu.Lock()
	for len(l.tx.queue) >= l.n.cfg.LinkQueue && !l.dead {
		ch := l.tx.space
		l.mu.Unlock()
		if expire == nil && !due.IsZero() {
			t := time.NewTimer(time.Until(due))
			defer t.Stop()
			expire = t.C
		}
		select {
		case <-ch:
		case <-deadline:
			return os.ErrDeadlineExceeded
		case <-closed:
			return net.ErrClosed
		case <-expire:
			l.n.stats.late.Add(1)
			return errLate
		}
		l.mu.Lock()
	}
	if l.dead {
		l.mu.Unlock()
		return ErrNoRoute
	}
	burst := l.burstLocked() // udp_batch.go: queued, the link goroutine writes a burst in batches
	if burst || len(l.tx.queue)+len(l.tx.ctlQueue) > 0 || !l.roomLocked() || !l.nb.ready() {
		l.tx.queue = append(l.tx.queue, txFrame{buf: bp, due: due})
		l.mu.Unlock()
		l.kick()
		return nil
	}
	// Nothing waits before this frame and the window has room: send it
	// from here, not after the link goroutine gets to run (a wakeup that
	// costs more than the send on a busy machine). sendMu comes before mu.
	l.mu.Unlock()
	l.sendMu.Lock()
	l.mu.Lock()
	if l.dead || burst || len(l.tx.queue)+len(l.tx.ctlQueue) > 0 || !l.roomLocked() || !l.nb.ready() {
		dead := l.dead
		if !dead {
			l.tx.queue = append(l.tx.queue, txFrame{buf: bp, due: due})
		}
		l.mu.Unlock()
		l.sendMu.Unlock()
		if dead {
			return ErrNoRoute
		}
		l.kick()
		return nil
	}
	now := time.Now()
	if !l.stampLocked(*bp, due, now) {
		l.mu.Unlock()
		l.sendMu.Unlock()
		l.n.stats.late.Add(1)
		return errLate
	}
	l.growRingLocked()
	s := l.tx.nextSeq
	l.tx.nextSeq++
	*l.entry(s) = txEntry{buf: bp, due: due, sentAt: now, tries: 1}
	l.tx.flying++
	wire.PutLinkFields(*bp, l.epoch, s, l.tx.base)
	l.tx.sent++
	if l.tx.nextTimer.IsZero() {
		l.tx.nextTimer = l.deadlineLocked(l.entry(s))
		l.armLocked(l.tx.nextTimer)
	}
	l.mu.Unlock()
	err := l.n.sendLink(l.nb, *bp, l.nb.address())
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
	if l.tx.rttInit {
		// A quarter of srtt at least on top: the timer is the last resort
		// (losses are found by later frames arriving), so it may wait for
		// a receiver that was slow to answer.
		r = l.tx.srtt + max(4*l.tx.rttvar, l.tx.srtt/4)
	}
	r = max(r, l.n.cfg.MinRTO)
	for i := 0; i < l.tx.backoff && r < maxBackoff; i++ {
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
	if l.tx.progress.After(t) {
		t = l.tx.progress
	}
	return t.Add(l.rto())
}

// flush sends what is due: the ACK, frames marked lost, frames whose timer
// ran out, new frames the window has room for, and arms the timer for when
// to look again.
func (l *link) flush() {
	// sendMu for the whole flush: frames are changed (resent ones get a
	// new base) and written in sequence order, none while enqueueLocal writes.
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	l.flushLocked()
}

// flushLocked is flush, called with sendMu held (which also guards
// tx.out and the rx.flushAck scratch space).
func (l *link) flushLocked() {
	bufs := l.n.bufs
	addr := l.nb.address()
	l.mu.Lock()
	if l.dead {
		l.mu.Unlock() // release frees (or freed) everything
		return
	}
	for _, b := range l.tx.free {
		bufs.put(b)
	}
	clear(l.tx.free)
	l.tx.free = l.tx.free[:0]
	now := time.Now()
	out := l.tx.out[:0]
	sendAck := l.rx.ackPending
	if sendAck {
		l.rx.ackPending = false
		l.rx.unacked = 0
		l.buildAckLocked(&l.rx.flushAck)
	}
	epoch := l.epoch
	gaveUp, lostRouting := false, false
	// resend sends e again, or gives it up (Late) when its budget is
	// spent: a frame with a budget is resent only while some would remain
	// when it arrived.
	resend := func(s uint64, e *txEntry) bool {
		e.lost = false
		if !l.stampLocked(*e.buf, e.due, now) {
			e.done = true
			l.tx.flying--
			gaveUp = true
			l.n.stats.late.Add(1)
			return false
		}
		e.tries++
		e.sentAt = now
		wire.PutLinkFields(*e.buf, epoch, s, l.tx.base)
		out = append(out, e.buf)
		l.tx.resent++
		l.tx.sent++
		l.n.stats.retransmits.Add(1)
		return true
	}
	for _, s := range l.tx.lostList {
		if s >= l.tx.base && s < l.tx.nextSeq {
			if e := l.entry(s); !e.done && e.lost {
				resend(s, e)
			}
		}
	}
	l.tx.lostList = l.tx.lostList[:0]
	fired := !l.tx.nextTimer.IsZero() && !now.Before(l.tx.nextTimer)
	if fired {
		expired := 0
		for s := l.tx.base; s < l.tx.nextSeq && expired < maxTimerResends; s++ {
			e := l.entry(s)
			if e.done || now.Before(l.deadlineLocked(e)) {
				continue
			}
			if e.tries >= l.n.cfg.MaxAttempts {
				e.done = true
				l.tx.flying--
				gaveUp = true
				l.n.stats.abandoned.Add(1)
				if h, _, err := wire.ParseData(*e.buf); err == nil && h.DstPort == RoutingPort && h.Src == l.n.sid {
					lostRouting = true
				}
				continue
			}
			if resend(s, e) {
				l.n.stats.timeouts.Add(1)
				expired++
			}
		}
		if expired > 0 {
			l.tx.backoff++
		}
	}
	if gaveUp {
		l.advanceLocked()
		l.tx.skipDue = true
	}
	if l.tx.skipDue && l.tx.peerCum >= l.tx.base {
		l.tx.skipDue = false
	}
	// A SKIP goes out when frames were given up, and again at each expiry
	// of the timer until the neighbour's ACK shows it went past them.
	skip := l.tx.skipDue && (fired || gaveUp)
	first := func(f txFrame) {
		if !l.stampLocked(*f.buf, f.due, now) {
			l.tx.free = append(l.tx.free, f.buf) // spent waiting for the window
			l.n.stats.late.Add(1)
			return
		}
		l.growRingLocked()
		s := l.tx.nextSeq
		l.tx.nextSeq++
		*l.entry(s) = txEntry{buf: f.buf, due: f.due, sentAt: now, tries: 1}
		l.tx.flying++
		wire.PutLinkFields(*f.buf, epoch, s, l.tx.base)
		out = append(out, f.buf)
		l.tx.sent++
	}
	// New frames wait until the link is keyed and the neighbour holds
	// the keys (confirm kicks the link then).
	ready := l.nb.ready()
	for ready && len(l.tx.ctlQueue) > 0 && l.roomLocked() {
		first(l.tx.ctlQueue[0])
		l.tx.ctlQueue[0] = txFrame{}
		l.tx.ctlQueue = l.tx.ctlQueue[1:]
	}
	if len(l.tx.ctlQueue) == 0 {
		l.tx.ctlQueue = l.tx.ctlQueue[:0:0]
	}
	for ready && len(l.tx.queue) > 0 && l.roomLocked() {
		first(l.tx.queue[0])
		l.tx.queue[0] = txFrame{}
		l.tx.queue = l.tx.queue[1:]
		if len(l.tx.queue) == 0 || len(l.tx.queue) == l.n.cfg.LinkQueue-1 {
			close(l.tx.space)
			l.tx.space = make(chan struct{})
		}
	}
	if len(l.tx.queue) == 0 {
		l.tx.queue = l.tx.queue[:0:0]
	}
	// The next timer: the earliest deadline of a frame in flight.
	l.tx.nextTimer = time.Time{}
	for s := l.tx.base; s < l.tx.nextSeq; s++ {
		e := l.entry(s)
		if e.done {
			continue
		}
		d := l.deadlineLocked(e)
		if l.tx.nextTimer.IsZero() || d.Before(l.tx.nextTimer) {
			l.tx.nextTimer = d
		}
		if e.tries == 1 {
			break // later first transmissions are due later still
		}
	}
	base := l.tx.base
	next := l.tx.nextTimer
	if l.tx.skipDue && next.IsZero() {
		next = now.Add(l.rto())
	}
	l.armLocked(next)
	l.mu.Unlock()

	var ack, skipFrame []byte
	if sendAck {
		l.rx.flushAckBuf = wire.AppendAck(l.rx.flushAckBuf[:0], &l.rx.flushAck)
		l.n.stats.ackOut.Add(uint64(len(l.rx.flushAckBuf)))
		ack = l.rx.flushAckBuf
	}
	if skip {
		skipFrame = wire.AppendSkip(make([]byte, 0, wire.SkipLen+wire.AuthLen), epoch, base)
	}
	l.sendFrames(ack, skipFrame, out, addr) // batched: udp_batch.go
	clear(out)
	l.tx.out = out[:0]
	if lostRouting {
		l.n.router.refusedFrame(l.nb, nil) // one of our routing messages given up
	}
}

// advanceLocked moves base past done frames. Called with mu held.
func (l *link) advanceLocked() {
	for l.tx.base < l.tx.nextSeq {
		e := l.entry(l.tx.base)
		if !e.done {
			break
		}
		l.tx.free = append(l.tx.free, e.buf)
		*e = txEntry{}
		l.tx.base++
	}
}

// receiveAck applies an ACK from the neighbour (read loop).
func (l *link) receiveAck(a *wire.Ack) {
	if a.Epoch != l.epoch {
		return
	}
	now := time.Now()
	l.mu.Lock()
	var sample, probe time.Time
	mark := func(s uint64) {
		e := l.entry(s)
		if e.done {
			return
		}
		e.done = true
		l.tx.flying--
		l.tx.progress = now
		l.tx.backoff = 0
		// Only a frame sent once says when what arrived was sent: the ack
		// of a resent one may be for its first copy.
		if e.tries == 1 && s >= l.tx.rackSeq {
			l.tx.rackSeq, l.tx.rackSent = s+1, e.sentAt
		}
		if e.tries == 1 && e.sentAt.After(sample) {
			sample = e.sentAt
		}
		if e.tries > 1 && e.sentAt.After(probe) {
			probe = e.sentAt
		}
	}
	if a.Cum > l.tx.peerCum {
		l.tx.peerCum = a.Cum
	}
	for s := l.tx.base; s < min(a.Cum, l.tx.nextSeq); s++ {
		mark(s)
	}
	for _, r := range a.Ranges {
		for s := max(r.Start, l.tx.base); s < min(r.End, l.tx.nextSeq); s++ {
			mark(s)
		}
	}
	if !sample.IsZero() {
		l.rttSampleLocked(now.Sub(sample))
	}
	// The path to a neighbour does not reorder datagrams (it is one UDP
	// hop), so a frame sent before one that arrived, and not itself
	// acknowledged, is taken as lost: first copies are sent in sequence
	// order, resent ones are compared by the time they went out.
	//
	// An ACK that acknowledges resent frames alone answers a timer probe
	// at the tail of a burst (the timer resends one frame per expiry):
	// every frame sent before the probe and still missing is lost too, or
	// it would have arrived first. Not when the ACK comes sooner than half
	// the RTT after the resend: then it is for the first copy.
	end := min(l.tx.rackSeq, l.tx.nextSeq)
	var before time.Time // frames sent before it and missing are lost
	if sample.IsZero() && !probe.IsZero() && now.Sub(probe) >= l.tx.srtt/2 {
		before, end = probe, l.tx.nextSeq
	}
	lost := 0
	for s := l.tx.base; s < end; s++ {
		e := l.entry(s)
		if e.done || e.lost {
			continue
		}
		raced := s < l.tx.rackSeq && (e.tries == 1 || e.sentAt.Before(l.tx.rackSent))
		if !raced && !e.sentAt.Before(before) {
			continue
		}
		e.lost = true
		l.tx.lostList = append(l.tx.lostList, s)
		lost++
	}
	l.advanceLocked()
	// The link goroutine has work only if something is to be resent or
	// waits for the window. (Freed buffers and a timer armed for frames
	// now acknowledged keep until it runs for another reason.)
	work := lost > 0 || len(l.tx.queue) > 0 || len(l.tx.ctlQueue) > 0
	l.mu.Unlock()
	if lost > 0 {
		l.n.stats.fastRetransmits.Add(uint64(lost))
	}
	if work {
		l.kick()
	}
}

func (l *link) rttSampleLocked(r time.Duration) {
	if !l.tx.rttInit {
		l.tx.srtt, l.tx.rttvar, l.tx.rttInit = r, r/2, true
		return
	}
	d := l.tx.srtt - r
	if d < 0 {
		d = -d
	}
	l.tx.rttvar = (3*l.tx.rttvar + d) / 4
	l.tx.srtt = (7*l.tx.srtt + r) / 8
}
