package daemon

// Tunnel reports: what a client process does with the port it bound,
// for `servald status`.
//
// Data path: Port.SetReporter starts one goroutine that calls the
// client's function every interval and appends a REPORT frame (JSON,
// at most maxReport bytes: sessions beyond that are left out and
// counted) to the port's frameWriter, without waiting (a report that
// finds 256 KiB pending is dropped; the next one says it all again). The
// daemon's serveBound parses it and keeps the latest per connection
// (Server.tunnels) until the connection closes.

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/msp"
)

// Report roles.
const (
	RoleListen  = "listen"  // msp listen
	RoleService = "service" // msp listen --service
	RoleConnect = "connect" // msp connect
)

// Report is what a client process tells the daemon about a port it bound,
// for `servald status` (its JSON names are part of `status --json`).
type Report struct {
	Role    string `json:"role"`              // RoleListen, RoleService or RoleConnect
	Port    uint16 `json:"port"`              // the MDP port bound; the daemon sets it
	PID     int    `json:"pid,omitempty"`     // the reporting process; the daemon sets it (0: unknown)
	Service string `json:"service,omitempty"` // the service name it answers discovery for
	// Target: listen: where streams go (a --forward address, "socks" or
	// "stdio"); connect: the listener dialled, "SID:PORT".
	Target      string `json:"target,omitempty"`
	Connections int    `json:"connections"` // connections served now
	// Sessions: the MSP sessions on the port, busiest first; MoreSessions
	// were left out for room.
	Sessions     []msp.SessionInfo `json:"sessions"`
	MoreSessions int               `json:"more_sessions,omitempty"`
}

// Bounds of a report.
const (
	// maxReport bounds a REPORT frame's body.
	maxReport = 16 << 10
	// maxReportSessions bounds the sessions listed in one report.
	maxReportSessions = 32
	// maxReportText bounds Target and a session's Remote.
	maxReportText = 256
)

// appendReport appends a REPORT frame for r to b, leaving out the least
// busy sessions (counted in MoreSessions) until it fits maxReport.
func appendReport(b []byte, r Report) ([]byte, error) {
	ss := slices.Clone(r.Sessions)
	slices.SortStableFunc(ss, func(x, y msp.SessionInfo) int {
		bx, by := x.BytesSent+x.BytesReceived, y.BytesSent+y.BytesReceived
		switch {
		case bx > by:
			return -1
		case bx < by:
			return 1
		}
		return 0
	})
	if len(ss) > maxReportSessions {
		r.MoreSessions += len(ss) - maxReportSessions
		ss = ss[:maxReportSessions]
	}
	if len(r.Target) > maxReportText {
		r.Target = r.Target[:maxReportText]
	}
	for {
		r.Sessions = ss
		body, err := json.Marshal(r)
		if err != nil {
			return b, fmt.Errorf("daemon: report: %w", err)
		}
		if len(body) <= maxReport {
			return appendFrame(b, frameReport, body), nil
		}
		if len(ss) == 0 {
			return b, fmt.Errorf("daemon: report of %d bytes (limit %d)", len(body), maxReport)
		}
		k := len(ss) / 2
		r.MoreSessions += len(ss) - k
		ss = ss[:k]
	}
}

// parseReport decodes and checks a REPORT frame's body.
func parseReport(body []byte) (Report, error) {
	var r Report
	if len(body) > maxReport {
		return r, fmt.Errorf("%w: report of %d bytes", errMalformed, len(body))
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r, fmt.Errorf("%w: report: %v", errMalformed, err)
	}
	switch r.Role {
	case RoleListen, RoleService, RoleConnect:
	default:
		return r, fmt.Errorf("%w: report role %q", errMalformed, r.Role)
	}
	if r.Service != "" {
		if err := discovery.ValidName(r.Service); err != nil {
			return r, fmt.Errorf("%w: report: %v", errMalformed, err)
		}
	}
	switch {
	case !plainText(r.Target):
		return r, fmt.Errorf("%w: report target of %d bytes", errMalformed, len(r.Target))
	case r.Connections < 0 || r.MoreSessions < 0:
		return r, fmt.Errorf("%w: report counts %d, %d", errMalformed, r.Connections, r.MoreSessions)
	case len(r.Sessions) > maxReportSessions:
		return r, fmt.Errorf("%w: report of %d sessions", errMalformed, len(r.Sessions))
	}
	for _, s := range r.Sessions {
		if !plainText(s.Remote) || s.Streams < 0 || s.Cwnd < 0 || s.InFlight < 0 {
			return r, fmt.Errorf("%w: report: bad session with %s", errMalformed, s.Peer.Short())
		}
	}
	return r, nil
}

// plainText reports whether s is valid UTF-8 of at most maxReportText
// bytes without control characters (it is printed in a terminal).
func plainText(s string) bool {
	if len(s) > maxReportText || !utf8.ValidString(s) {
		return false
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f || (c >= 0x80 && c < 0xa0) {
			return false
		}
	}
	return true
}

// ReportEvery is SetReporter's default interval.
const ReportEvery = time.Second

// SetReporter has the port send f() to the daemon at once and then every
// interval (ReportEvery when every ≤ 0) until it is closed, for `servald
// status` to show; the daemon keeps the latest report and forgets it when
// the port closes. The report's Port and PID are the daemon's to fill in.
// A report is dropped when 256 KiB already wait for the daemon. Calling it
// again replaces f (the interval stays). f runs on a goroutine of the
// port's, which Close waits for: it must not wait for the port to close.
// It returns false, and sends nothing, when the daemon does not take
// reports (its bind reply did not say "report": an older daemon, which
// would close the connection on the frame).
func (p *Port) SetReporter(every time.Duration, f func() Report) bool {
	if !p.reports || f == nil {
		return false
	}
	if every <= 0 {
		every = ReportEvery
	}
	p.reportFn.Store(&f)
	p.reportOnce.Do(func() {
		p.reportWG.Add(1)
		go p.reportLoop(every)
	})
	return true
}

// reportLoop sends a report every interval until the port closes.
func (p *Port) reportLoop(every time.Duration) {
	defer p.reportWG.Done()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r := (*p.reportFn.Load())()
		if b, err := appendReport(nil, r); err == nil {
			p.fw.write(len(b), func(buf []byte) []byte { return append(buf, b...) }, false, nil)
		}
		select {
		case <-t.C:
		case <-p.done:
			return
		}
	}
}
