package msp

// Progress: a session whose packets stop being acknowledged although the
// transport still sends them somewhere (a relay that acknowledges per hop
// and drops, attracting the traffic with a cheap route) tells the
// transport, which may move the route (package mesh marks the next hop as
// failing for that destination). arq decides when a session has stalled
// (Config.Stalled: three probe timeouts in a row and 300 ms without an
// acknowledgement); a dial decides when its handshake went unanswered
// (dialStallSends INITs, then every dialStallEvery more).

import "github.com/servald/servald/identity"

const (
	// dialStallSends is how many INITs go unanswered (1.5 s with the
	// dial's back-off) before a dial reports no progress.
	dialStallSends = 4
	// dialStallEvery is how many more INITs a dial sends between reports.
	dialStallEvery = 3
)

// noProgress tells tr, if it can hear it (see Transport), that nothing
// reaches node sid although tr sends there. It reports whether tr has
// moved the path, so that a retry at once may get through.
func noProgress(tr Transport, sid identity.SID) bool {
	np, ok := tr.(interface{ NoProgress(identity.SID) bool })
	return ok && np.NoProgress(sid)
}

// dialStalled reports whether, after the INIT numbered sends (from 1) went
// unanswered, a dial should report no progress.
func dialStalled(sends int) bool {
	return sends >= dialStallSends && (sends-dialStallSends)%dialStallEvery == 0
}

// stalled is arq's Config.Stalled for the session (arq goroutine).
func (s *Session) stalled() bool {
	return noProgress(s.ep.tr, s.peer)
}
