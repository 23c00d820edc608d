package arq

// The sender goroutine: the only caller of Config.Output. It sleeps until
// poked (Write, Input, Read, Close) or until its one timer fires (delayed
// ACK, RACK loss timer, PTO, pacing, keepalive, idle timeout), then builds
// packets under the lock from the send ring and the ACK state into one
// reused buffer and hands each to Output with the lock released.

import (
	"encoding/binary"
	"slices"
	"sort"
	"time"
)

const (
	maxRecvSpans = 4096 // received packet-number ranges tracked (duplicate detection horizon)
	maxLate      = 512  // late packets queued for reporting in ACK frames
	lateReports  = 3    // ACK frames that list a late packet: one of them may well be lost
	maxOOOSpans  = 1024 // out-of-order stream ranges held for reassembly
)

func (c *Conn) run() {
	defer close(c.exited)
	var buf []byte
	defer c.timer.Stop()
	c.mu.Lock()
	for {
		now := c.now()
		if cap(buf) < c.maxPacket {
			buf = make([]byte, 0, c.maxPacket)
		}
		var pkt []byte
		if c.ended {
			if pkt = c.finalPacket(buf[:0], now); pkt == nil {
				c.mu.Unlock()
				return
			}
		} else {
			c.onTimers(now)
			if !c.ended && c.reportStall() {
				continue // the lock was released: look again
			}
			if !c.ended {
				pkt = c.nextPacket(buf[:0], now)
			}
		}
		if pkt != nil {
			c.mu.Unlock()
			err := c.cfg.Output(pkt)
			c.mu.Lock()
			if err != nil {
				c.stats.OutputErrors++
				if c.stats.OutputErrors == 1 {
					c.log.Debug("arq: output failed", "err", err)
				}
			}
			continue
		}
		if c.ended {
			continue
		}
		c.sleeping, c.armedAt = true, c.nextTimer(now)
		c.timer.Reset(max(time.Duration(c.armedAt-now), 0))
		c.mu.Unlock()
		select {
		case <-c.wake:
		case <-c.timer.C:
		}
		c.mu.Lock()
		c.sleeping = false
	}
}

// rearm brings the sleeping sender's timer forward when a deadline moved
// earlier (a delayed ACK, a loss timer), so that Input need not wake it
// just to set a timer (mu held).
func (c *Conn) rearm(now int64) {
	if !c.sleeping {
		return // it computes its timer before it sleeps again
	}
	if t := c.nextTimer(now); t < c.armedAt {
		c.armedAt = t
		c.timer.Reset(max(time.Duration(t-now), 0))
	}
}

// senderHasWork reports whether the sender goroutine can do something now
// (mu held): send an ACK, data, a window update, a CLOSE or a PING, or
// finish a Shutdown.
func (c *Conn) senderHasWork() bool {
	return c.ackNow || c.windowWant || c.closeWanted || c.pingWanted || c.probes > 0 ||
		c.shutdown || !c.rtx.empty() || (c.sndNxt < c.sndEnd && c.sndNxt < c.peerMaxData)
}

// flowBlocked reports whether data waits only for the peer's window.
func (c *Conn) flowBlocked() bool {
	return c.rtx.empty() && c.sndNxt < c.sndEnd && c.sndNxt >= c.peerMaxData
}

func (c *Conn) blockedInterval() int64 {
	return min(c.pto()<<min(c.blockedProbe, 16), int64(c.cfg.KeepAlive))
}

// onTimers runs whatever timer is due (mu held).
func (c *Conn) onTimers(now int64) {
	if now-c.lastRecv >= int64(c.cfg.IdleTimeout) {
		c.end(ErrPeerGone)
		return
	}
	if c.lossTime != 0 && now >= c.lossTime {
		c.detectLosses(now)
	}
	c.confirmLosses(now)
	c.checkStall(now)
	if d := c.ptoDeadline(); d != 0 && now >= d {
		c.onPTO(now)
		if c.ended {
			return
		}
	}
	if now-c.lastSent >= int64(c.cfg.KeepAlive) {
		c.pingWanted = true
	}
	if c.cc.inFlight <= 0 && c.flowBlocked() && now-c.lastSent >= c.blockedInterval() {
		c.pingWanted = true
		c.blockedProbe++
	}
	c.retire(now)
}

// nextTimer returns when the goroutine must wake up next (mu held).
func (c *Conn) nextTimer(now int64) int64 {
	t := min(c.lastRecv+int64(c.cfg.IdleTimeout), c.lastSent+int64(c.cfg.KeepAlive))
	if c.lossTime != 0 {
		t = min(t, c.lossTime)
	}
	if d := c.ptoDeadline(); d != 0 {
		t = min(t, d)
	}
	if c.ackDirty && c.ackDeadline != 0 {
		t = min(t, c.ackDeadline)
	}
	if d := c.stallDeadline(); d != 0 {
		t = min(t, d)
	}
	if c.pace.wait != 0 {
		t = min(t, c.pace.wait)
	}
	if c.cc.inFlight <= 0 && c.flowBlocked() {
		t = min(t, c.lastSent+c.blockedInterval())
	}
	return max(t, now)
}

// ackRangesFor is how many ACK ranges a packet of size mss may carry: in a
// packet that carries data the ACK frame stays within about a quarter of
// it; a packet of its own may fill the packet, even with every number
// at its longest encoding.
func ackRangesFor(mss int, alone bool) int {
	if alone {
		return max(1, min(MaxAckRanges, (mss-48)/(2*binary.MaxVarintLen64)))
	}
	return max(1, min(MaxAckRanges, (mss/4-24)/6))
}

// appendAck appends an ACK frame (c.hasRecv must hold). It lists the
// highest range, every range holding a packet that arrived late since the
// last ACK frame (so a reordered packet is reported however many gaps lie
// above it), then the next highest ranges not yet known to the peer, up to
// ackRangesFor(mss, alone) ranges.
func (c *Conn) appendAck(b []byte, now int64, mss int, alone bool) []byte {
	s := c.recvPN.s
	limit := ackRangesFor(mss, alone)
	var arr [MaxAckRanges]int
	idx := arr[:0]
	if len(s) <= limit {
		for i := len(s) - 1; i >= 0; i-- {
			idx = append(idx, i)
		}
		for range c.late.n { // every late packet is listed in this frame
			e := c.late.front()
			c.late.pop()
			if e.left > 1 {
				c.late.push(latePN{e.pn, e.left - 1})
			}
		}
	} else {
		// idx[1:] stays sorted in descending order, so membership is a
		// binary search.
		has := func(i int) bool {
			if i == idx[0] {
				return true
			}
			rest := idx[1:]
			j := sort.Search(len(rest), func(k int) bool { return rest[k] <= i })
			return j < len(rest) && rest[j] == i
		}
		insert := func(i int) {
			rest := idx[1:]
			j := sort.Search(len(rest), func(k int) bool { return rest[k] <= i })
			idx = slices.Insert(idx, 1+j, i)
		}
		idx = append(idx, len(s)-1)
		unlisted := false
		for range c.late.n {
			e := c.late.front()
			c.late.pop()
			i := sort.Search(len(s), func(i int) bool { return s[i].hi > e.pn })
			if i == len(s) || s[i].lo > e.pn {
				continue // no longer tracked
			}
			if !has(i) {
				if len(idx) == limit {
					c.late.push(e) // no room: a later frame lists it
					unlisted = true
					continue
				}
				insert(i)
			}
			if e.left > 1 {
				c.late.push(latePN{e.pn, e.left - 1})
			}
		}
		if unlisted {
			c.ackDirty, c.ackNow = true, true // more to report: another ACK frame soon
		}
		for i := len(s) - 2; i >= 0 && len(idx) < limit && s[i].hi > c.ackFloor; i-- {
			if !has(i) {
				insert(i)
			}
		}
	}
	delay := uint64(max(now-c.largestAt, 0)) / uint64(time.Microsecond)
	return appendAckSpans(b, s, idx, delay)
}

// nextPacket builds the next packet to send into b, or returns nil if
// nothing is due (mu held).
func (c *Conn) nextPacket(b []byte, now int64) []byte {
	if c.shutdown && c.closeSent == 0 && c.sndUna == c.sndEnd {
		c.closeWanted = true
	}
	ackDue := c.ackDirty && (c.ackNow || (c.ackDeadline != 0 && now >= c.ackDeadline))
	hasRtx := !c.rtx.empty()
	hasNew := c.sndNxt < c.sndEnd && c.sndNxt < c.peerMaxData
	probe := c.probes > 0
	data := probe
	c.pace.wait = 0
	if !probe && (hasRtx || hasNew) && c.cc.canSend() {
		if t := c.paceReady(now); t == 0 {
			data = true
		} else {
			c.pace.wait = t
		}
	}
	if !ackDue && !c.windowWant && !c.closeWanted && !data && !c.pingWanted {
		return nil
	}

	pn := c.sent.end()
	b = appendHeader(b, pn)
	hdr := len(b)
	e := sentPacket{sent: now}
	mss := c.maxPacket
	if c.hasRecv && (c.ackDirty || ackDue || c.windowWant) {
		c.ackDirty, c.ackNow, c.ackElicited, c.ackDeadline = false, false, 0, 0
		b = c.appendAck(b, now, mss, !data)
		e.ackOf = c.recvPN.last().hi
		c.windowWant = true // MAX_DATA rides along every ACK frame
	}
	if c.windowWant {
		c.maxDataSent = max(c.maxDataSent, c.readOff+uint64(c.cfg.RecvWindow))
		b = appendMaxData(b, c.maxDataSent)
		c.windowWant = false
	}
	if c.closeWanted {
		b = appendClose(b, CloseGraceful)
		c.closeWanted = false
		c.closeSent++
		e.flags |= sentClose | sentEliciting
	}
	if data {
		space := mss - len(b)
		var off uint64
		n := 0
		switch {
		case hasRtx:
			r := c.rtx.first()
			off = r.lo
			n = streamFit(off, space, int(min(r.hi-r.lo, uint64(mss))))
			c.rtx.remove(off, off+uint64(n))
			c.stats.BytesRetransmitted += uint64(n)
		case probe && c.sndUna < c.sndNxt:
			// Tail probe: resend the oldest unacknowledged bytes.
			off = c.sndUna
			hi := c.sndNxt
			if !c.ackedBytes.empty() {
				hi = min(hi, c.ackedBytes.first().lo)
			}
			n = streamFit(off, space, int(min(hi-off, uint64(mss))))
			c.stats.BytesRetransmitted += uint64(n)
		case hasNew:
			off = c.sndNxt
			n = streamFit(off, space, int(min(c.sndEnd-off, c.peerMaxData-off, uint64(mss))))
			c.sndNxt += uint64(n)
			c.stats.BytesSent += uint64(n)
		}
		if n > 0 {
			b = appendStreamHeader(b, off, n)
			b = b[:len(b)+n]
			c.sbuf.read(off, b[len(b)-n:])
			e.off, e.n = off, uint32(n)
			e.flags |= sentEliciting
		}
	}
	if e.flags&sentEliciting == 0 && (probe || c.pingWanted || len(b) == hdr) {
		b = append(b, framePing)
		e.flags |= sentEliciting
	}
	c.pingWanted = false
	if probe {
		c.probes--
	} else if data {
		c.paceSpend(len(b))
	}
	e.size = uint32(len(b))
	if e.flags&sentEliciting != 0 {
		c.cc.inFlight += len(b)
		c.lastElicit = now
		c.elicited(now)
		if 2*float64(c.cc.inFlight) >= c.cc.cwnd {
			e.flags |= sentLimited
		}
	}
	c.sent.push(e)
	c.lastSent = now
	c.stats.PacketsSent++
	return b
}

// finalPacket builds the last packet of an ended Conn: CLOSE(abort) after
// Close, or the ACK of the peer's CLOSE; nil when there is none (mu held).
func (c *Conn) finalPacket(b []byte, now int64) []byte {
	if !c.sendClose && !c.finalAck {
		return nil
	}
	b = appendHeader(b, c.sent.end())
	if c.hasRecv {
		b = c.appendAck(b, now, c.maxPacket, true)
	}
	if c.sendClose {
		b = appendClose(b, CloseAbort)
	} else if !c.hasRecv {
		b = append(b, framePing)
	}
	c.sendClose, c.finalAck = false, false
	c.sent.push(sentPacket{sent: now, size: uint32(len(b))})
	c.stats.PacketsSent++
	return b
}
