package mesh

// Per-hop reliability on one link: the link's state and its goroutine.
//
// A link is one neighbour's pair of directions. The sending half (tx,
// link_send.go) numbers this node's frames, keeps them until the neighbour
// acknowledges them and resends the lost ones; the receiving half (rx,
// link_recv.go) records which of the neighbour's frames arrived, passes new
// ones on at once, in the order they arrive, and acknowledges them. The
// link goroutine (run) wakes on a kick or its timer and calls flush, which
// writes to the socket whatever is due in both directions: the ACK, resent
// and new frames, a SKIP. On a batching socket the read loop also flushes
// the links it relayed frames to, at the end of each read batch.

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// link is per-hop reliability towards one neighbour.
//
// Lock order: sendMu, then mu; neither is held while waiting on a channel.
// mu guards all the state (tx and rx, but for the fields marked otherwise)
// and is never held across a socket write; sendMu is held across the socket
// writes of frames in flight (flush, enqueueLocal's fast path), so that
// first transmissions go out in sequence order and a frame is not rewritten
// (resent with a new base) while it is being written.
type link struct {
	n       *Node
	nb      *neighbour
	flight  int           // frames in flight (sent, not done) at most: LinkWindow
	win     uint64        // sequence numbers in flight at most (from base), and the receive bitmap's span: spanFactor × flight
	wake    chan struct{} // cap 1: kicks the link goroutine
	timer   *time.Timer   // the link goroutine's; Reset only with mu held (armLocked)
	done    chan struct{} // closed by stop
	stopped sync.Once

	sendMu sync.Mutex // see above; taken before mu

	// epoch numbers this link's frames (DATA, and the ACKs and SKIPs
	// about them): random per link, not per node. A neighbour that kept
	// us while we dropped it still holds the receive state of our earlier
	// link: under the same epoch our new link's first frames, numbered
	// from zero, were duplicates there (dropped, and acknowledged, so we
	// took them as delivered: the routing table and WantTable that should
	// have repaired its routes, in BenchmarkMesh500). A new epoch starts
	// its receive state over.
	epoch uint32

	mu    sync.Mutex
	armed time.Time // what timer is set for; zero: not set; guarded by mu
	dead  bool      // stopped: senders get ErrNoRoute; guarded by mu

	tx linkTx
	rx linkRx
}

// linkTx is the sending half of a link. Its fields are guarded by link.mu,
// but out, which belongs to whoever holds sendMu in flush.
type linkTx struct {
	out []*[]byte // flush's list of frames to write; guarded by sendMu

	ring      []txEntry     // frames in flight, by sequence number % len(ring) (growRingLocked)
	nextSeq   uint64        // the next frame's sequence number
	base      uint64        // lowest sequence number not done
	queue     []txFrame     // DATA frames waiting for the window
	ctlQueue  []txFrame     // this node's routing messages: sent before queue, never behind it
	space     chan struct{} // closed and replaced when the queue shrinks (or the link stops)
	lostList  []uint64      // frames marked lost, to resend
	free      []*[]byte     // done frames to return to the pool by the goroutine
	flying    int           // frames sent and not done
	srtt      time.Duration
	rttvar    time.Duration
	rttInit   bool      // srtt and rttvar hold a sample
	rackSeq   uint64    // one past the highest first-sent frame known to have arrived
	rackSent  time.Time // when that frame was sent
	progress  time.Time // when an ACK last acknowledged a frame not acknowledged before
	backoff   int       // timer expiries since progress
	nextTimer time.Time // the earliest deadline of a frame in flight
	peerCum   uint64    // the neighbour's last cumulative ack
	skipDue   bool      // a SKIP is to be sent (frames were given up)
	sent      float64   // decaying count of transmissions
	resent    float64   // decaying count of retransmissions
	lastLocal time.Time // when enqueueLocal last took a frame (burstLocked)
}

// txFrame is a frame waiting for the window: its buffer and, for a frame
// with a budget (TypeDataBudget), the local time by which it must have been
// delivered (zero: none; see budget.go).
type txFrame struct {
	buf *[]byte
	due time.Time
}

type txEntry struct {
	buf    *[]byte
	due    time.Time // txFrame.due
	sentAt time.Time
	tries  int
	done   bool // acknowledged or given up
	lost   bool // marked lost, waiting to be resent
}

// linkRx is the receiving half of a link. Its fields are guarded by
// link.mu, but the ACK scratch space: loopAck and loopAckBuf belong to the
// node's read loop (receiveData), flushAck and flushAckBuf to flush (under
// sendMu).
type linkRx struct {
	loopAck     wire.Ack
	loopAckBuf  []byte
	flushAck    wire.Ack
	flushAckBuf []byte

	started    bool     // a frame arrived: epoch and cum are the neighbour's
	epoch      uint32   // the neighbour's link epoch
	cum        uint64   // every sequence number below it arrived (or was skipped)
	seen       []uint64 // bit s%win set: frame s, cum < s < cum+win, arrived
	seenCount  int      // bits set in seen
	ackPending bool     // an ACK is due from the link goroutine
	unacked    int      // frames received since the last ACK
	top        uint64   // one past the highest sequence number received
	// Loss in: span counts the sequence numbers that fresh frames moved
	// top past, gaps those of them that had not arrived (the neighbour
	// sends first copies in order, so a gap is a frame lost, or given up,
	// at its first sending); both decaying like tx.sent and tx.resent.
	span, gaps float64
	// Routing messages keep their order: one that arrived early waits in
	// ctlHeld (sorted by seq) until every frame before it arrived or was
	// skipped, since a retraction overtaken by the announcement it
	// preceded would undo it. Data frames never wait.
	ctlHeld []heldFrame
}

// spanFactor is how many times LinkWindow the sequence numbers in flight
// may span. The window bounds the frames sent and not yet acknowledged
// (what a link may have queued in the path); their span runs from base, the
// oldest frame not acknowledged, which a frame lost again and again holds
// for as many round trips while the frames after it are acknowledged.
// With span = window, a 60 MB/s link at 5% loss stalled several times a
// second on a frame's third loss in a row (BenchmarkRealLossy).
const spanFactor = 4

func newLink(n *Node, nb *neighbour) *link {
	f := (uint64(n.cfg.LinkWindow) + 63) &^ 63 // whole words of the seen bitmap
	w := spanFactor * f
	return &link{
		n: n, nb: nb, flight: int(f), win: w, epoch: rand.Uint32() | 1,
		wake:  make(chan struct{}, 1),
		timer: stoppedTimer(),
		done:  make(chan struct{}),
		tx:    linkTx{ring: make([]txEntry, min(minRing, w)), space: make(chan struct{})},
		rx: linkRx{seen: make([]uint64, (w+63)/64),
			// Room for the authentication trailer too (sendLink).
			loopAckBuf:  make([]byte, 0, wire.MaxAckLen+wire.AuthLen),
			flushAckBuf: make([]byte, 0, wire.MaxAckLen+wire.AuthLen)},
	}
}

// minRing is the frames in flight a link's ring holds at first. It grows
// as a transfer needs (growRingLocked), up to the window: most links carry
// little, and a full window's ring is over a megabyte.
const minRing = 64

// entry is frame s's slot in the ring (base <= s < nextSeq). Called with mu
// held.
func (l *link) entry(s uint64) *txEntry { return &l.tx.ring[s%uint64(len(l.tx.ring))] }

// roomLocked reports whether the window has room for another frame.
// Called with mu held.
func (l *link) roomLocked() bool {
	return l.tx.flying < l.flight && l.tx.nextSeq-l.tx.base < l.win
}

// growRingLocked makes room in the ring for frame nextSeq (the window has
// room for it): a full ring doubles, up to the window. Called with mu held.
func (l *link) growRingLocked() {
	n := uint64(len(l.tx.ring))
	if l.tx.nextSeq-l.tx.base < n {
		return
	}
	ring := make([]txEntry, min(2*n, l.win))
	for s := l.tx.base; s < l.tx.nextSeq; s++ {
		ring[s%uint64(len(ring))] = *l.entry(s)
	}
	l.tx.ring = ring
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
		close(l.tx.space)
		l.tx.space = make(chan struct{})
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

// release frees every buffer when the link ends.
func (l *link) release() {
	l.sendMu.Lock() // no frame is being written
	defer l.sendMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.tx.free {
		l.n.bufs.put(b)
	}
	l.tx.free = nil
	for i := range l.tx.ring {
		if b := l.tx.ring[i].buf; b != nil {
			l.n.bufs.put(b)
		}
		l.tx.ring[i] = txEntry{}
	}
	for _, f := range l.tx.queue {
		l.n.bufs.put(f.buf)
	}
	l.tx.queue = nil
	for _, f := range l.tx.ctlQueue {
		l.n.bufs.put(f.buf)
	}
	l.tx.ctlQueue = nil
	for _, f := range l.rx.ctlHeld {
		l.n.bufs.put(f.bp)
	}
	l.rx.ctlHeld = nil
}

// quality returns the smoothed round trip, the recent resend fraction
// (loss out) and the recent fraction of the neighbour's frames missing at
// their first sending (loss in).
func (l *link) quality() (srtt time.Duration, lossOut, lossIn float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.tx.sent > 0 {
		lossOut = l.tx.resent / l.tx.sent
	}
	if l.rx.span > 0 {
		lossIn = l.rx.gaps / l.rx.span
	}
	return l.tx.srtt, lossOut, lossIn
}

// decay ages the loss counters; called once per hello interval.
func (l *link) decay() {
	l.mu.Lock()
	l.tx.sent *= 0.5
	l.tx.resent *= 0.5
	l.rx.span *= 0.5
	l.rx.gaps *= 0.5
	l.mu.Unlock()
}
