package arq

// Stall detection: a path that stopped carrying packets while it still
// exists (a relay that acknowledges per hop and then drops, attracting
// traffic with a route it does not serve). When something ack-eliciting
// has been outstanding for max(stallPTOs PTOs, stallTime) and nothing new
// was acknowledged meanwhile, the sender goroutine calls Config.Stalled;
// while the stall lasts it calls it again after twice as long each time,
// so that a new path gets time to answer before it is blamed too. It is
// time-based, not a count of probe timeouts: an application that writes
// more often than the backed-off PTO keeps that timer from firing.
//
// If Stalled reports that the path changed, the probe timeout's back-off
// starts again, so that the new path is probed within one PTO instead of
// after the seconds the backed-off timer would wait.

import "time"

const (
	// stallPTOs is how many (not backed-off) PTOs without an
	// acknowledgement make a stall.
	stallPTOs = 3
	// stallTime is the least time without an acknowledgement that makes a
	// stall: on a path of a few milliseconds, three PTOs are too short to
	// tell a dead path from a scheduling pause or a hop's retransmission.
	stallTime = int64(300 * time.Millisecond)
	// maxStallShift bounds the doubling of the time between reports.
	maxStallShift = 5
)

// stallDeadline returns when the Conn counts as stalled; 0: not waiting
// for anything, or no one to tell (mu held).
func (c *Conn) stallDeadline() int64 {
	if c.cfg.Stalled == nil || !c.waiting {
		return 0
	}
	after := max(stallPTOs*c.pto(), stallTime)
	if c.stalls == 0 {
		return c.waitFrom + after
	}
	return c.lastStall + after<<min(c.stalls, maxStallShift)
}

// checkStall marks a report due when the Conn has stalled (mu held).
func (c *Conn) checkStall(now int64) {
	if d := c.stallDeadline(); d == 0 || now < d {
		return
	}
	c.stalls++
	c.lastStall = now
	c.stallDue = true
	c.stats.Stalls++
}

// elicited notes an ack-eliciting packet sent (mu held).
func (c *Conn) elicited(now int64) {
	if !c.waiting {
		c.waiting, c.waitFrom = true, now
	}
}

// progress notes an acknowledgement of something new (mu held, after the
// ACK frame was processed): what is still outstanding is waited for from
// now.
func (c *Conn) progress(now int64) {
	c.stalls = 0
	c.waiting, c.waitFrom = c.cc.inFlight > 0 || !c.rtx.empty(), now
}

// reportStall calls Config.Stalled if a report is due (mu held; released
// during the call). It reports whether it called it.
func (c *Conn) reportStall() bool {
	if !c.stallDue {
		return false
	}
	c.stallDue = false
	c.mu.Unlock()
	moved := c.cfg.Stalled()
	c.mu.Lock()
	if moved {
		c.ptoCount = 0 // probe the new path at once
	}
	return true
}
