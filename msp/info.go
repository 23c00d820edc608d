package msp

// Session summaries for status displays: no packet flows through this file.

import (
	"slices"

	"github.com/servald/servald/identity"
)

// SessionInfo summarises one session for `servald status`, `--stats` and
// metrics. Its JSON field names are part of the documented `--json`
// output; keep them stable.
type SessionInfo struct {
	Peer      identity.SID `json:"peer"`
	Remote    string       `json:"remote"`     // the peer's address (SID:port, or a split connection's)
	LocalPort uint16       `json:"local_port"` // the listener's MDP port (a dialled session: the port dialled; instance reports the one bound)
	Initiator bool         `json:"initiator"`  // this end dialled
	Streams   int          `json:"streams"`    // streams open now

	BytesSent          uint64 `json:"bytes_sent"`          // stream bytes sent for the first time
	BytesReceived      uint64 `json:"bytes_received"`      // stream bytes delivered in order
	BytesRetransmitted uint64 `json:"bytes_retransmitted"` // stream bytes sent again
	PacketsSent        uint64 `json:"packets_sent"`
	PacketsLost        uint64 `json:"packets_lost"` // packets declared lost

	SRTTus   int64 `json:"srtt_us"`   // smoothed round trip, µs
	MinRTTus int64 `json:"minrtt_us"` // least round trip seen, µs
	Cwnd     int   `json:"cwnd"`      // congestion window, bytes
	InFlight int   `json:"in_flight"` // bytes sent, neither acknowledged nor lost
}

// Info summarises the session now.
func (s *Session) Info() SessionInfo {
	st := s.Stats()
	return SessionInfo{
		Peer:      s.peer,
		Remote:    s.RemoteAddr().String(),
		LocalPort: s.ep.port,
		Initiator: s.client,
		Streams:   int(s.open.Load()),

		BytesSent:          st.BytesSent,
		BytesReceived:      st.BytesReceived,
		BytesRetransmitted: st.BytesRetransmitted,
		PacketsSent:        st.PacketsSent,
		PacketsLost:        st.PacketsLost,

		SRTTus:   st.SRTT.Microseconds(),
		MinRTTus: st.MinRTT.Microseconds(),
		Cwnd:     st.Cwnd,
		InFlight: st.BytesInFlight,
	}
}

// Sessions lists the sessions the listener holds now, on every transport
// it serves.
func (l *Listener) Sessions() []*Session {
	l.mu.Lock()
	eps := slices.Clone(l.eps) // forget edits l.eps in place
	l.mu.Unlock()
	var out []*Session
	for _, ep := range eps {
		ep.mu.Lock()
		for _, s := range ep.sessions {
			out = append(out, s)
		}
		ep.mu.Unlock()
	}
	return out
}
