package mesh

// The receiving half of a link.
//
// Packet path: receiveData (on the node's read loop) drops duplicates and
// hands every new DATA frame at once to the node's deliver (relay.go), in
// the order frames arrive: a frame behind a lost one is not held back (the
// MSP stream above puts its own bytes in order), so a per-hop
// retransmission delays only the frame that was lost. Only this node's
// routing messages wait in ctlHeld until the frames before them arrived,
// and then go to the router. A bitmap remembers which frames above the
// cumulative point arrived; an ACK covering all of them goes out from the
// read loop after ackEvery frames or at a new gap or duplicate (on a
// batching socket, once at the end of the read batch: udp_batch.go), else
// from the link goroutine within ackDelay. receiveSkip moves the cumulative
// point past frames the neighbour gave up.

import (
	"bytes"
	"slices"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

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

// receiveSkip applies a SKIP: the neighbour gave up frames below base.
func (l *link) receiveSkip(epoch uint32, base uint64) {
	l.mu.Lock()
	if !l.rx.started || epoch != l.rx.epoch {
		l.mu.Unlock()
		return
	}
	l.skipToLocked(base)
	ctl := l.releaseCtlLocked()
	l.rx.ackPending = true
	l.mu.Unlock()
	l.kick()
	l.routeAll(ctl)
}

// seenLocked reports whether frame s (cum < s < cum+win) arrived.
func (l *link) seenLocked(s uint64) bool {
	i := s % l.win
	return l.rx.seen[i/64]&(1<<(i%64)) != 0
}

// flipLocked sets or clears frame s's bit.
func (l *link) flipLocked(s uint64) {
	i := s % l.win
	l.rx.seen[i/64] ^= 1 << (i % 64)
}

// skipToLocked advances cum to base: frames below it are no longer waited
// for. Called with mu held.
func (l *link) skipToLocked(base uint64) {
	if base <= l.rx.cum {
		return
	}
	if base-l.rx.cum >= l.win {
		clear(l.rx.seen)
		l.rx.seenCount = 0
	} else {
		for s := l.rx.cum + 1; s < base; s++ {
			if l.seenLocked(s) {
				l.flipLocked(s)
				l.rx.seenCount--
			}
		}
	}
	l.rx.cum = base
	l.advanceCumLocked()
}

// advanceCumLocked moves cum past frames that arrived early.
func (l *link) advanceCumLocked() {
	for l.rx.seenCount > 0 && l.seenLocked(l.rx.cum) {
		l.flipLocked(l.rx.cum)
		l.rx.seenCount--
		l.rx.cum++
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
	if !l.rx.started || h.Epoch != l.rx.epoch {
		clear(l.rx.seen)
		l.rx.seenCount = 0
		l.rx.started, l.rx.epoch, l.rx.cum, l.rx.top = true, h.Epoch, h.Base, h.Base
		for _, f := range l.rx.ctlHeld {
			l.n.bufs.put(f.bp)
		}
		l.rx.ctlHeld = l.rx.ctlHeld[:0]
	}
	l.skipToLocked(h.Base)
	s := h.Seq
	edge := max(l.rx.top, l.rx.cum) // the first sequence number not yet reached
	fresh, now := false, false
	switch {
	case s < l.rx.cum || (s < l.rx.cum+l.win && l.seenLocked(s)):
		l.n.stats.duplicates.Add(1)
		now = true // the sender missed an ACK
	case s >= l.rx.cum+l.win:
		l.n.stats.beyondWindow.Add(1)
	case s == l.rx.cum:
		l.rx.cum++
		l.advanceCumLocked()
		fresh = true
	default:
		l.flipLocked(s)
		l.rx.seenCount++
		fresh = true
	}
	if fresh && s > max(l.rx.top, l.rx.cum) {
		now = true // a new gap: the sender learns of a loss sooner
	}
	if fresh && s >= edge {
		l.rx.span += float64(s + 1 - edge)
		l.rx.gaps += float64(s - edge)
	}
	l.rx.top = max(l.rx.top, s+1, l.rx.cum)
	routing := fresh && h.DstPort == RoutingPort && h.Dst == l.n.sid
	if routing {
		if s >= l.rx.cum {
			// Held until the frames before it arrive: keep its bytes,
			// not the read loop's 64 KiB buffer (64 held per link of
			// 500 nodes pinned gigabytes in BenchmarkMesh500).
			c := bytes.Clone(*bp)
			l.n.bufs.put(bp)
			bp = &c
		}
		i := len(l.rx.ctlHeld)
		for i > 0 && l.rx.ctlHeld[i-1].seq > s {
			i--
		}
		l.rx.ctlHeld = slices.Insert(l.rx.ctlHeld, i, heldFrame{s, bp})
	}
	ctl := l.releaseCtlLocked()
	l.rx.unacked++
	if (now || l.rx.unacked >= ackEvery) && l.n.batch != nil {
		// The read loop reads in batches: one ACK at the batch's end
		// says what all of it brought (udp_batch.go).
		l.mu.Unlock()
		l.n.ackAfterBatch(l)
	} else if now || l.rx.unacked >= ackEvery {
		// Acknowledge from here, not the link goroutine: on a busy machine
		// a goroutine may wait many milliseconds to run, and a late ACK
		// looks like a loss to the sender.
		l.ackFromLoopLocked()
	} else {
		// The link goroutine sends it within ackDelay, with whatever
		// else arrived meanwhile (or sooner, if it runs anyway).
		if !l.rx.ackPending {
			l.rx.ackPending = true
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
	for k < len(l.rx.ctlHeld) && (l.rx.ctlHeld[k].seq < l.rx.cum || len(l.rx.ctlHeld)-k > maxCtlHeld) {
		k++
	}
	if k == 0 {
		return nil
	}
	out := slices.Clone(l.rx.ctlHeld[:k])
	l.rx.ctlHeld = slices.Delete(l.rx.ctlHeld, 0, k)
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
	a.Epoch = l.rx.epoch
	a.Cum = l.rx.cum
	a.Ranges = a.Ranges[:0]
	found := 0
	var cur *wire.Range
	for s := l.rx.cum + 1; s < l.rx.cum+l.win && found < l.rx.seenCount; {
		i := s % l.win
		if l.rx.seen[i/64]>>(i%64) == 0 {
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
