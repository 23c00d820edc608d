package arq

// The receive path: Input decodes a packet from the peer, records its
// number for the next ACK frame, applies its frames (ACK to the loss and
// congestion state, MAX_DATA to the send credit, STREAM into the receive
// ring, CLOSE to the lifecycle) and pokes the sender goroutine and readers.
// It never calls Output and never waits for the sender.

import (
	"errors"
	"net"
)

var errAckUnsent = errors.New("arq: ACK of a packet number never sent")

// Input processes one packet from the peer. It copies what it keeps. A
// malformed packet is counted and reported as an error; nothing in it is
// applied. After the Conn ended, Input returns net.ErrClosed.
func (c *Conn) Input(pkt []byte) error {
	var p Packet
	if err := p.Unmarshal(pkt); err != nil {
		c.mu.Lock()
		c.stats.MalformedReceived++
		c.mu.Unlock()
		return err
	}
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return net.ErrClosed
	}
	if p.HasAck && p.AckRanges[0].Largest >= c.sent.end() {
		c.stats.MalformedReceived++
		c.mu.Unlock()
		return errAckUnsent
	}
	now := c.now()
	c.lastRecv = now
	c.stats.PacketsReceived++
	wake, readable := false, false
	pn := p.Number
	refused := p.HasStream && !c.streamAcceptable(p.Offset, p.Data)
	switch {
	case refused:
		// Its data cannot be kept: the packet is not acknowledged, so the
		// peer sends the data again. Its other frames still apply.
		p.HasStream = false
	case pn < c.pnFloor:
		// No longer tracked: apply (every frame is idempotent), do not ACK.
	case c.recvPN.contains(pn):
		c.stats.DuplicatesReceived++
		c.mu.Unlock()
		return nil
	default:
		ooo := c.hasRecv && pn != c.largestRecv+1
		if c.hasRecv && pn < c.largestRecv {
			c.late.push(latePN{pn, lateReports}) // report it in the next ACK frames
		}
		c.recvPN.add(pn, pn+1, nil)
		if c.recvPN.count() > maxRecvSpans {
			c.recvPN.dropFirst(1)
			c.pnFloor = c.recvPN.first().lo
		}
		if !c.hasRecv || pn > c.largestRecv {
			c.hasRecv = true
			c.largestRecv = pn
			c.largestAt = now
		}
		c.ackDirty = true
		if p.AckEliciting() {
			c.ackElicited++
			if c.ackElicited >= ackEvery || ooo {
				c.ackNow = true
				wake = true
			} else if c.ackDeadline == 0 {
				c.ackDeadline = now + maxAckDelay // rearm below
			}
		}
	}
	if p.HasAck && c.onAck(&p, now) && c.senderHasWork() {
		wake = true // the window opened for data waiting, or a Shutdown may end
	}
	if p.HasMaxData && p.MaxData > c.peerMaxData {
		c.peerMaxData = p.MaxData
		c.blockedProbe = 0
		wake = true
	}
	if p.HasStream && c.onStream(p.Offset, p.Data) {
		readable = true
	}
	if p.HasClose && !c.ended {
		c.log.Debug("arq: peer closed", "code", p.CloseCode)
		c.finalAck = true
		if p.CloseCode == CloseGraceful {
			c.end(ErrPeerClosed)
		} else {
			c.end(ErrPeerAborted)
		}
		readable = true
	}
	if !wake {
		c.rearm(now)
	}
	c.mu.Unlock()
	if wake {
		poke(c.wake)
	}
	if readable {
		poke(c.readC)
	}
	return nil
}

// streamAcceptable reports whether STREAM data at off can be kept. Data
// beyond the advertised window (a protocol violation), or that would need
// more than maxOOOSpans reassembly ranges, cannot; it is counted.
func (c *Conn) streamAcceptable(off uint64, data []byte) bool {
	end := off + uint64(len(data))
	if end > c.maxDataSent {
		c.stats.FlowViolations++
		return false
	}
	if off > c.recvNext && c.ooo.count() >= maxOOOSpans && !c.ooo.touches(off, end) {
		c.stats.ReassemblyDrops++
		return false
	}
	return true
}

// onStream stores STREAM data at its offset (streamAcceptable must hold)
// and reports whether bytes became readable.
func (c *Conn) onStream(off uint64, data []byte) bool {
	end := off + uint64(len(data))
	if end <= c.recvNext || len(data) == 0 {
		return false
	}
	if off < c.recvNext {
		data = data[c.recvNext-off:]
		off = c.recvNext
	}
	live := c.recvNext
	if !c.ooo.empty() {
		live = max(live, c.ooo.last().hi)
	}
	c.rbuf.ensure(c.readOff, live, int(end-c.readOff))
	if off == c.recvNext && c.ooo.empty() {
		c.rbuf.write(off, data)
		c.recvNext = end
		c.stats.BytesReceived += uint64(len(data))
		return true
	}
	c.rbuf.write(off, data)
	c.ooo.add(off, end, nil)
	if f := c.ooo.first(); f.lo <= c.recvNext {
		c.stats.BytesReceived += f.hi - c.recvNext
		c.recvNext = f.hi
		c.ooo.dropFirst(1)
		return true
	}
	return false
}
