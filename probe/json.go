package probe

// JSON forms of ping replies, ping summaries and trace hops: the lines of
// `servald ping --json` and `servald trace --json`. Field names are stable.

import (
	"encoding/json"
	"time"
)

// replyJSON is a ping reply ("reply"), or a request that could not be sent
// ("error").
type replyJSON struct {
	Type  string  `json:"type"`
	Seq   uint32  `json:"seq"`
	From  string  `json:"from,omitempty"`
	Bytes int     `json:"bytes,omitempty"`
	Hops  *int    `json:"hops,omitempty"` // absent: the replying node had no route back
	RTT   float64 `json:"time_ms,omitempty"`
	Dup   bool    `json:"dup,omitempty"`
	Error string  `json:"error,omitempty"`
}

// summaryJSON is the last line of ping --json.
type summaryJSON struct {
	Type       string  `json:"type"`
	To         string  `json:"to"`
	Sent       int     `json:"sent"`
	Received   int     `json:"received"`
	Duplicates int     `json:"duplicates"`
	Errors     int     `json:"errors"`
	Loss       float64 `json:"loss_pct"`
	Min        float64 `json:"min_ms"`
	Avg        float64 `json:"avg_ms"`
	Max        float64 `json:"max_ms"`
	Mdev       float64 `json:"mdev_ms"`
	Time       float64 `json:"elapsed_ms"`
}

// hopJSON is a line of trace --json.
type hopJSON struct {
	Hop  int     `json:"hop"`
	SID  string  `json:"sid"`
	Addr string  `json:"addr,omitempty"`
	RTT  float64 `json:"time_ms,omitempty"`
	Hops int     `json:"hops_left"`
	Lost bool    `json:"lost,omitempty"`
}

func msFloat(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MarshalJSON is the reply as a line of ping --json.
func (r Reply) MarshalJSON() ([]byte, error) {
	if r.Err != nil {
		return json.Marshal(replyJSON{Type: "error", Seq: r.Seq, Error: r.Err.Error()})
	}
	j := replyJSON{Type: "reply", Seq: r.Seq, From: r.From.String(), Bytes: r.Size, RTT: msFloat(r.RTT), Dup: r.Dup}
	if r.Hops != HopsUnknown {
		j.Hops = &r.Hops
	}
	return json.Marshal(j)
}

// MarshalJSON is the summary as the last line of ping --json.
func (s Summary) MarshalJSON() ([]byte, error) {
	return json.Marshal(summaryJSON{Type: "summary", To: s.To.String(), Sent: s.Sent, Received: s.Received,
		Duplicates: s.Duplicates, Errors: s.Errors, Loss: s.Loss(),
		Min: msFloat(s.Min), Avg: msFloat(s.Avg), Max: msFloat(s.Max), Mdev: msFloat(s.Mdev), Time: msFloat(s.Time)})
}

// MarshalJSON is the hop as a line of trace --json.
func (h Hop) MarshalJSON() ([]byte, error) {
	return json.Marshal(hopJSON{Hop: h.N, SID: h.SID.String(), Addr: h.Addr, RTT: msFloat(h.RTT), Hops: h.Hops, Lost: h.Lost})
}
