package arq

// Loss recovery and congestion control, run under Conn.mu by Input (on ACK
// frames) and by the sender goroutine (on timers): RTT estimation, RACK-style
// time-based loss detection with an adaptive reordering window, spurious
// loss detection with congestion-window undo, probe timeouts, CUBIC, and a
// pacer.

import (
	"math"
	"net"
	"time"
)

const (
	maxAckDelay     = int64(time.Millisecond) // we ACK at most this long after an ack-eliciting packet
	ackEvery        = 2                       // ... or at once on every 2nd one
	granularity     = int64(time.Millisecond) // timer granularity floor
	minPTO          = int64(5 * time.Millisecond)
	maxPTO          = int64(2 * time.Second) // cap of the backed-off PTO
	initialRTT      = int64(100 * time.Millisecond)
	persistentPTOs  = 3    // consecutive PTOs that collapse cwnd
	maxSuspects     = 1024 // losses awaiting their grace period before the congestion response
	minReoMult      = 4    // reordering window floor, in minRTT/4 units: one minRTT
	maxReoMult      = 32   // reordering window cap, in minRTT/4 units: eight minRTT (and never above 4*srtt)
	reoPersistN     = 16   // loss episodes without spurious loss before the window shrinks back
	closeTries      = 3    // CLOSE(graceful) transmissions before Shutdown gives up waiting for its ACK
	initialCwndPkts = 10
	minCwndPkts     = 2
	burstPkts       = 10 // pacer bucket depth
)

// rttState is the RTT estimator of RFC 9002.
type rttState struct {
	has    bool
	latest int64
	srtt   int64
	rttvar int64
	minRTT int64
}

func (r *rttState) update(sample, ackDelay int64) {
	r.latest = sample
	if !r.has {
		r.has = true
		r.minRTT = sample
		r.srtt = sample
		r.rttvar = sample / 2
		return
	}
	r.minRTT = min(r.minRTT, sample)
	adj := sample
	if adj >= r.minRTT+ackDelay {
		adj -= ackDelay
	}
	d := r.srtt - adj
	if d < 0 {
		d = -d
	}
	r.rttvar = (3*r.rttvar + d) / 4
	r.srtt = (7*r.srtt + adj) / 8
}

func (r *rttState) smoothed() (srtt, rttvar int64) {
	if !r.has {
		return initialRTT, initialRTT / 2
	}
	return r.srtt, r.rttvar
}

// pto is the probe timeout before back-off:
// max(srtt + max(4*rttvar, granularity) + maxAckDelay, minPTO + 2*rttvar).
func (c *Conn) pto() int64 {
	srtt, rttvar := c.rtt.smoothed()
	return max(srtt+max(4*rttvar, granularity)+maxAckDelay, minPTO+2*rttvar)
}

// reoWnd is the RACK reordering window:
// clamp(reoMult * minRTT/4, granularity, 4*srtt), reoMult in [4, 32].
//
// It starts at one minRTT, not RFC 8985's quarter, and may grow to eight:
// the mesh below retransmits lost frames on every hop and passes on the
// frames behind them meanwhile, so a packet arriving one or more hop round
// trips after later ones is normal there, not a sign of loss.
func (c *Conn) reoWnd() int64 {
	if !c.rtt.has {
		return granularity
	}
	w := int64(c.reoMult) * c.rtt.minRTT / 4
	return max(granularity, min(w, 4*c.rtt.srtt))
}

// hyStart is the delay-based slow-start exit of HyStart++ (RFC 9406):
// when the minimum RTT of a round exceeds the previous round's by
// clamp(prev/8, 4 ms, 16 ms), slow start turns conservative (cwnd grows a
// quarter as fast) and ends after cssRounds more rounds; if meanwhile a
// round's minimum RTT falls below the one that started it, the rise was
// not a queue (a busy machine, a per-hop retransmission) and slow start
// resumes. Without that phase, one slow round left slow start for good at
// a fraction of the path's capacity.
type hyStart struct {
	roundEnd  uint64 // the round ends when a packet from here on is acknowledged
	lastMin   int64  // minimum RTT of the previous round; 0: none
	curMin    int64
	samples   int
	cssBase   int64 // the round minimum that started conservative slow start; 0: not in it
	cssRounds int
}

const (
	hsSamples = 8 // RTT samples a round needs before its minimum counts
	cssRounds = 3 // rounds of conservative slow start before it ends
	cssDiv    = 4 // conservative slow start grows cwnd by acked/cssDiv
)

func (c *Conn) hystart(pn uint64) {
	h := &c.hs
	if !c.cc.css {
		h.cssBase = 0 // a congestion event ended it
	}
	if pn >= h.roundEnd {
		if h.samples > 0 {
			h.lastMin = h.curMin
		}
		if h.cssBase > 0 {
			h.cssRounds++
			if h.cssRounds >= cssRounds {
				c.cc.ssthresh = c.cc.cwnd
				c.cc.css = false
				h.cssBase = 0
				c.stats.SlowStartExits++
			}
		}
		h.roundEnd = c.sent.end()
		h.curMin = 0
		h.samples = 0
	}
	if h.curMin == 0 || c.rtt.latest < h.curMin {
		h.curMin = c.rtt.latest
	}
	h.samples++
	if h.samples < hsSamples || h.lastMin == 0 || c.cc.cwnd >= c.cc.ssthresh {
		return
	}
	switch {
	case h.cssBase == 0:
		thresh := min(max(h.lastMin/8, 4*int64(time.Millisecond)), 16*int64(time.Millisecond))
		if h.curMin >= h.lastMin+thresh {
			h.cssBase, h.cssRounds = h.curMin, 0
			c.cc.css = true
		}
	case h.curMin < h.cssBase:
		h.cssBase = 0
		c.cc.css = false
		c.stats.CSSResumes++
	}
}

// ackState accumulates what one ACK frame newly acknowledged.
type ackState struct {
	any         bool
	largestPN   uint64
	largestSent int64
	largestElic bool
	ackedBytes  int64 // in-flight bytes newly acknowledged that may grow cwnd
	ackOf       uint64
	closeAcked  bool
}

// onAck processes an ACK frame (mu held). It returns true if anything was
// newly acknowledged. The ranges were validated against sent.end().
func (c *Conn) onAck(p *Packet, now int64) bool {
	var a ackState
	for i := range p.NumAckRanges {
		r := p.AckRanges[i]
		lo := max(r.Smallest, c.sent.base)
		hi := r.Largest + 1
		if lo >= hi {
			continue
		}
		c.ackedPN.add(lo, hi, func(lo, hi uint64) {
			for pn := lo; pn < hi; pn++ {
				c.onPacketAcked(pn, &a)
			}
		})
	}
	if !a.any {
		return false
	}
	if a.largestPN == p.AckRanges[0].Largest && a.largestElic {
		delay := min(int64(p.AckDelay)*int64(time.Microsecond), 2*maxAckDelay)
		c.rtt.update(max(now-a.largestSent, 1), delay)
		if c.cc.cwnd < c.cc.ssthresh {
			c.hystart(a.largestPN)
		}
	}
	if !c.rackValid || a.largestPN > c.rackPN {
		c.rackValid = true
		c.rackPN = a.largestPN
		c.rackRTT = max(now-a.largestSent, 1)
	}
	c.ptoCount = 0
	if a.ackOf > 0 {
		c.forgetAckedRanges(a.ackOf - 1)
	}
	c.detectLosses(now)
	c.confirmLosses(now)
	c.retire(now)
	if a.ackedBytes > 0 {
		c.cc.onAck(a.ackedBytes, now, c.rtt.srtt)
	}
	if a.closeAcked && c.shutdown {
		c.end(net.ErrClosed)
	}
	c.progress(now)
	return true
}

func (c *Conn) onPacketAcked(pn uint64, a *ackState) {
	e := c.sent.at(pn)
	if e.flags&sentAcked != 0 {
		return
	}
	e.flags |= sentAcked
	switch {
	case e.flags&sentLost != 0:
		c.onSpurious(e)
	case e.flags&sentEliciting != 0:
		c.cc.inFlight -= int(e.size)
		if pn >= c.cc.recoveryStart && e.flags&sentLimited != 0 {
			a.ackedBytes += int64(e.size)
		}
	}
	if e.n > 0 {
		c.ackStream(e.off, e.off+uint64(e.n))
	}
	if e.ackOf > a.ackOf {
		a.ackOf = e.ackOf
	}
	if e.flags&sentClose != 0 {
		a.closeAcked = true
	}
	if !a.any || pn > a.largestPN {
		a.any = true
		a.largestPN = pn
		a.largestSent = e.sent
		a.largestElic = e.flags&sentEliciting != 0
	}
}

// ackStream records stream bytes [lo, hi) as acknowledged.
func (c *Conn) ackStream(lo, hi uint64) {
	if hi <= c.sndUna {
		return
	}
	lo = max(lo, c.sndUna)
	c.rtx.remove(lo, hi)
	if lo == c.sndUna && (c.ackedBytes.empty() || c.ackedBytes.first().lo > hi) {
		c.sndUna = hi
	} else {
		c.ackedBytes.add(lo, hi, nil)
		if f := c.ackedBytes.first(); f.lo <= c.sndUna {
			c.sndUna = f.hi
			c.ackedBytes.dropFirst(1)
		}
	}
	poke(c.writeC)
}

// forgetAckedRanges stops reporting received packet numbers wholly below
// largest: the peer has seen an ACK frame covering them.
func (c *Conn) forgetAckedRanges(largest uint64) {
	c.ackFloor = max(c.ackFloor, largest)
}

// onSpurious handles the ACK of a packet declared lost: the reordering
// window grows, and if every loss of the latest episode was spurious the
// congestion window reduction is undone.
func (c *Conn) onSpurious(e *sentPacket) {
	c.stats.SpuriousRetransmits++
	c.reoMult = min(c.reoMult+2, maxReoMult)
	c.reoPersist = reoPersistN
	if e.episode == 0 {
		c.cc.thaw() // a suspect, not yet confirmed: slow start may go on
	}
	if e.episode != 0 && e.episode == c.cc.episode {
		c.cc.episodeSpurious++
		if c.cc.episodeSpurious >= c.cc.episodeLost && c.cc.undo() {
			c.stats.CwndUndos++
		}
	}
}

// detectLosses declares lost every unresolved packet sent before the
// largest acknowledged one whose time is up: sent + rackRTT + reoWnd <= now.
// Send times grow with packet numbers, so the scan stops at the first
// packet not yet due; resolved packets are passed once.
func (c *Conn) detectLosses(now int64) {
	c.lossTime = 0
	if !c.rackValid {
		return
	}
	c.lossCursor = max(c.lossCursor, c.sent.base)
	wait := c.rackRTT + c.reoWnd()
	for c.lossCursor < c.rackPN {
		e := c.sent.at(c.lossCursor)
		if !e.resolved() {
			if due := e.sent + wait; due > now {
				c.lossTime = due
				return
			}
			c.markLost(c.lossCursor, e, now)
		}
		c.lossCursor++
	}
}

// markLost declares e lost: its bytes leave the flight and its stream data
// goes to the retransmission queue at once. The congestion window is cut
// only if e is still unacknowledged a grace period later (confirmLosses):
// over a mesh that retransmits per hop, most packets declared lost are
// merely late, and a cut taken for them costs throughput even when it is
// undone.
func (c *Conn) markLost(pn uint64, e *sentPacket, now int64) {
	e.flags |= sentLost
	c.stats.PacketsLost++
	c.cc.inFlight -= int(e.size)
	if e.n > 0 {
		lo, hi := max(e.off, c.sndUna), e.off+uint64(e.n)
		if lo < hi {
			c.ackedBytes.gaps(lo, hi, func(lo, hi uint64) { c.rtx.add(lo, hi, nil) })
		}
	}
	if e.flags&sentClose != 0 && c.shutdown {
		c.closeWanted = true
	}
	if e.sent < c.cc.recoveryStartTime {
		return // part of an episode already answered
	}
	// Slow start stops growing at once, though: doubling on while the
	// loss is confirmed would overshoot a real bottleneck fourfold.
	c.cc.freeze()
	if !c.suspects.push(lossSuspect{pn: pn, due: now + c.lossGrace()}) {
		c.confirmLoss(e, now) // no room to wait
	}
}

// lossGrace is how long a packet declared lost may still be acknowledged
// before its loss counts as congestion: half an srtt. (Longer would spare
// more cuts that are undone anyway, but let a real bottleneck overflow
// for longer.)
func (c *Conn) lossGrace() int64 {
	srtt, _ := c.rtt.smoothed()
	return srtt / 2
}

// confirmLosses answers the suspects whose grace is over and that are
// still unacknowledged (mu held).
func (c *Conn) confirmLosses(now int64) {
	for c.suspects.n > 0 {
		s := c.suspects.front()
		if s.due > now {
			return
		}
		c.suspects.pop()
		if s.pn < c.sent.base {
			continue // retired: lost packets stay longer than the grace, so it was acknowledged
		}
		if e := c.sent.at(s.pn); e.flags&sentAcked == 0 {
			c.confirmLoss(e, now)
		}
	}
}

// confirmLoss is the congestion response to the loss of e: the first loss
// of a new episode cuts the congestion window.
func (c *Conn) confirmLoss(e *sentPacket, now int64) {
	if e.sent >= c.cc.recoveryStartTime {
		c.stats.CongestionEvents++
		c.cc.congestionEvent(now, c.sent.end())
		if c.reoPersist > 0 {
			c.reoPersist--
			if c.reoPersist == 0 {
				c.reoMult = minReoMult
			}
		}
	}
	c.cc.episodeLost++
	e.episode = c.cc.episode
}

// retire pops settled entries off the front of the sent queue; lost ones
// stay max(2 PTOs, 8 srtt) after their send time to catch late (spurious)
// ACKs: per-hop retransmission below can delay a packet by several round
// trips, and only a spurious loss that is seen can be undone.
func (c *Conn) retire(now int64) {
	keep := max(2*c.pto(), 8*c.rtt.srtt)
	for c.sent.n > 0 {
		e := c.sent.front()
		if !e.resolved() || (e.flags&(sentLost|sentAcked) == sentLost && now-e.sent < keep) {
			break
		}
		c.sent.pop()
	}
	if !c.ackedPN.empty() && c.ackedPN.first().lo < c.sent.base {
		c.ackedPN.trimBelow(c.sent.base)
	}
}

// onPTO handles a probe timeout: probes go out regardless of cwnd; after
// persistentPTOs in a row everything in flight is declared lost and cwnd
// collapses.
func (c *Conn) onPTO(now int64) {
	c.ptoCount++
	c.stats.PTOs++
	if c.shutdown && c.closeSent > 0 && c.sndUna == c.sndEnd {
		if c.closeSent >= closeTries {
			c.end(net.ErrClosed)
			return
		}
		c.closeWanted = true
		return
	}
	if c.ptoCount >= persistentPTOs && c.cc.inFlight > 0 {
		for pn := max(c.lossCursor, c.sent.base); pn < c.sent.end(); pn++ {
			if e := c.sent.at(pn); !e.resolved() {
				c.markLost(pn, e, now)
			}
		}
		c.cc.collapse()
		c.stats.Collapses++
	}
	c.probes = 2
}

// ptoDeadline returns when the PTO fires; 0: not armed.
func (c *Conn) ptoDeadline() int64 {
	if c.cc.inFlight <= 0 {
		return 0
	}
	d := c.pto() << min(c.ptoCount, 16)
	return c.lastElicit + min(d, max(maxPTO, c.pto()))
}

// cubic is CUBIC congestion control (RFC 9438) in bytes, with slow start
// and the state needed to undo a reduction.
type cubic struct {
	mss      float64
	cwnd     float64
	ssthresh float64
	maxCwnd  float64
	inFlight int // bytes of ack-eliciting packets neither acknowledged nor lost

	wMax       float64
	k          float64 // seconds
	epochStart int64   // -1: no epoch
	wEst       float64

	recoveryStart     uint64 // packets from here on may grow cwnd again
	recoveryStartTime int64  // losses of packets sent before this are part of the current episode

	frozen float64 // ssthresh before a suspected loss stopped slow start; 0: none
	css    bool    // slow start is conservative (see hyStart)

	episode         uint32
	episodeLost     int
	episodeSpurious int
	undone          bool
	undoOK          bool // the episode may be undone (not after persistent congestion)
	priorCwnd       float64
	priorSsthresh   float64
	priorWMax       float64
}

const (
	cubicC    = 0.4
	cubicBeta = 0.7
)

func (cc *cubic) init(mss int, maxCwnd int64) {
	cc.mss = float64(mss)
	cc.cwnd = initialCwndPkts * cc.mss
	cc.ssthresh = math.Inf(1)
	cc.maxCwnd = float64(maxCwnd)
	cc.epochStart = -1
	cc.recoveryStartTime = math.MinInt64
}

func (cc *cubic) setMSS(mss int) { cc.mss = float64(mss) }

func (cc *cubic) minCwnd() float64 { return minCwndPkts * cc.mss }

func (cc *cubic) canSend() bool { return float64(cc.inFlight) < cc.cwnd }

// onAck grows cwnd by acked bytes: exponentially in slow start, along the
// cubic curve (or the Reno-friendly line, whichever is higher) after.
func (cc *cubic) onAck(acked int64, now, srtt int64) {
	a := float64(acked)
	if cc.cwnd < cc.ssthresh {
		if cc.css {
			a /= cssDiv
		}
		cc.cwnd = min(cc.cwnd+a, cc.maxCwnd)
		return
	}
	if cc.epochStart < 0 {
		cc.epochStart = now
		if cc.cwnd < cc.wMax {
			cc.k = math.Cbrt((cc.wMax - cc.cwnd) / cc.mss / cubicC)
		} else {
			cc.k = 0
			cc.wMax = cc.cwnd
		}
		cc.wEst = cc.cwnd
	}
	t := float64(now-cc.epochStart+srtt) / 1e9
	d := t - cc.k
	target := cc.wMax + cubicC*d*d*d*cc.mss
	target = max(cc.cwnd, min(target, 1.5*cc.cwnd))
	const alpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
	cc.wEst += alpha * cc.mss * a / cc.cwnd
	next := cc.cwnd + (target-cc.cwnd)*a/cc.cwnd
	cc.cwnd = min(max(next, cc.wEst), cc.maxCwnd)
}

// congestionEvent starts a loss episode: multiplicative decrease, and no
// further reduction for losses of packets sent before now.
func (cc *cubic) congestionEvent(now int64, nextPN uint64) {
	cc.episode++
	cc.episodeLost = 0
	cc.episodeSpurious = 0
	cc.undone = false
	cc.undoOK = true
	cc.priorCwnd, cc.priorSsthresh, cc.priorWMax = cc.cwnd, cc.ssthresh, cc.wMax
	if cc.frozen != 0 {
		cc.priorSsthresh, cc.frozen = cc.frozen, 0
	}
	cc.recoveryStart = nextPN
	cc.recoveryStartTime = now
	if cc.cwnd < cc.wMax {
		cc.wMax = cc.cwnd * (1 + cubicBeta) / 2
	} else {
		cc.wMax = cc.cwnd
	}
	cc.cwnd = max(cc.cwnd*cubicBeta, cc.minCwnd())
	cc.ssthresh = cc.cwnd
	cc.epochStart = -1
	cc.css = false
}

// freeze ends slow start without a reduction, until thaw or a
// congestion event.
func (cc *cubic) freeze() {
	if cc.cwnd < cc.ssthresh && cc.frozen == 0 {
		cc.frozen, cc.ssthresh = cc.ssthresh, cc.cwnd
	}
}

// thaw resumes the slow start a suspected loss froze.
func (cc *cubic) thaw() {
	if cc.frozen != 0 {
		cc.ssthresh, cc.frozen = cc.frozen, 0
	}
}

// undo restores the state before the latest reduction, once.
func (cc *cubic) undo() bool {
	if cc.undone || !cc.undoOK {
		return false
	}
	cc.undone = true
	cc.cwnd = max(cc.cwnd, cc.priorCwnd)
	cc.ssthresh = max(cc.ssthresh, cc.priorSsthresh)
	cc.wMax = cc.priorWMax
	cc.epochStart = -1
	cc.recoveryStart = 0
	return true
}

// collapse is the response to persistent congestion.
func (cc *cubic) collapse() {
	cc.undoOK = false
	cc.cwnd = cc.minCwnd()
	cc.epochStart = -1
	cc.css = false
}

// pacer spreads packets at gain*cwnd/srtt with a bucket of burstPkts
// packets, so a large window is not dumped into the path's queues at once.
type pacer struct {
	tokens float64 // bytes; may go one packet negative
	last   int64
	wait   int64 // when a paced data packet may go; 0: not waiting
}

// rate is in bytes per nanosecond; 0 means unpaced.
func (c *Conn) paceRate() float64 {
	if !c.rtt.has || c.rtt.srtt <= 0 {
		return 0
	}
	gain := 1.25
	if c.cc.cwnd < c.cc.ssthresh {
		gain = 2
	}
	return gain * c.cc.cwnd / float64(c.rtt.srtt)
}

// paceReady reports when a data packet may go: 0 if now.
func (c *Conn) paceReady(now int64) int64 {
	rate := c.paceRate()
	if rate == 0 {
		return 0
	}
	burst := burstPkts * c.cc.mss
	c.pace.tokens = min(burst, c.pace.tokens+rate*float64(now-c.pace.last))
	c.pace.last = now
	if c.pace.tokens >= 0 {
		return 0
	}
	return now + int64(-c.pace.tokens/rate) + 1
}

func (c *Conn) paceSpend(size int) {
	if c.paceRate() > 0 {
		c.pace.tokens -= float64(size)
	}
}
