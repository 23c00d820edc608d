package arq

// Stall detection: a path that stopped carrying packets while it still
// exists (a relay that acknowledges per hop and then drops, attracting
// traffic with a route it does not serve). After stallPTOs probe timeouts
// in a row with no acknowledgement, and at least stallTime since the last
// one, the sender goroutine calls Config.Stalled. If that reports that the
// path changed, the probe timeout's back-off starts again, so that the new
// path is probed within one PTO instead of after the seconds the backed-off
// timer would wait. A further report needs stallPTOs more timeouts and
// stallTime more, so that a new path gets time to answer before it is
// blamed too.

import "time"

const (
	// stallPTOs is how many probe timeouts in a row, without an
	// acknowledgement, make a stall.
	stallPTOs = 3
	// stallTime is the least time without an acknowledgement (and between
	// two reports) that makes a stall: on a path of a few milliseconds,
	// three PTOs are too short to tell a dead path from a scheduling pause
	// or a hop's retransmission.
	stallTime = int64(300 * time.Millisecond)
)

// checkStall runs on a probe timeout (mu held): it marks a report due when
// the Conn has stalled.
func (c *Conn) checkStall(now int64) {
	c.stallPTOs++
	if c.cfg.Stalled == nil || c.stallPTOs < stallPTOs || now-max(c.lastProgress, c.lastStall) < stallTime {
		return
	}
	c.stallPTOs = 0
	c.lastStall = now
	c.stallDue = true
	c.stats.Stalls++
}

// progress notes an acknowledgement of something new (mu held).
func (c *Conn) progress(now int64) {
	c.lastProgress = now
	c.stallPTOs = 0
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
