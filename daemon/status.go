package daemon

// The daemon's status snapshot: the node, its neighbours with byte rates,
// the tunnels its clients reported, the drop counters. No packet flows
// through this file; the sampler goroutine wakes once a second.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// StatusSnapshot is what `servald status` shows; its JSON field names are
// `status --json`'s, documented in the README: keep them stable.
type StatusSnapshot struct {
	Node       NodeStatus        `json:"node"`
	Neighbours []NeighbourStatus `json:"neighbours"`
	// Tunnels are the ports bound through the daemon whose processes
	// reported what they do (Port.SetReporter), by port; TunnelsOmitted
	// were left out for room.
	Tunnels        []Report `json:"tunnels"`
	TunnelsOmitted int      `json:"tunnels_omitted,omitempty"`
	// Drops are the node's non-zero drop counters (DropCounters).
	Drops []Drop `json:"drops"`
	// Stats are all the node's counters (not in the JSON: Drops and
	// NodeStatus carry the documented ones).
	Stats mesh.Stats `json:"-"`
}

// NodeStatus describes the daemon's node.
type NodeStatus struct {
	SID        identity.SID `json:"sid"`
	PID        int          `json:"pid"`
	UDP        []string     `json:"udp"`     // the node's UDP socket addresses
	Version    string       `json:"version"` // the daemon's (Config.Version)
	Started    time.Time    `json:"started"`
	UptimeS    float64      `json:"uptime_s"`
	Neighbours int          `json:"neighbours"`
	Routes     int          `json:"routes"`
	FramesIn   uint64       `json:"frames_in"`  // datagrams read, all kinds
	FramesOut  uint64       `json:"frames_out"` // datagrams written, all kinds
}

// NeighbourStatus describes one neighbour and its link.
type NeighbourStatus struct {
	SID     identity.SID `json:"sid"`
	Addr    string       `json:"addr"`
	MTU     int          `json:"mtu"`
	RTTus   int64        `json:"rtt_us"`   // smoothed per-hop round trip
	LossOut float64      `json:"loss_out"` // recent fraction of frames sent that needed resending
	LossIn  float64      `json:"loss_in"`  // recent fraction of its frames missing at their first sending
	// Link traffic since it came up (authenticated frames, trailer
	// included; not hellos), and bytes per second over the last 1-2 s.
	BytesIn    uint64    `json:"bytes_in"`
	BytesOut   uint64    `json:"bytes_out"`
	FramesIn   uint64    `json:"frames_in"`
	FramesOut  uint64    `json:"frames_out"`
	RateIn     float64   `json:"bytes_in_per_s"`
	RateOut    float64   `json:"bytes_out_per_s"`
	Up         time.Time `json:"up"`
	LastHeard  time.Time `json:"last_heard"`
	RouteCost  int       `json:"cost"`     // routing cost of the link: 256 when clean
	Deliveries float64   `json:"delivery"` // fraction of hellos that get through, both ways multiplied
}

// Drop is one non-zero drop counter of the node.
type Drop struct {
	Group  string `json:"group"`  // "link", "auth", "admission", "routing", "queue"
	Reason string `json:"reason"` // the counter, snake_case
	Count  uint64 `json:"count"`
}

// dropCounters are mesh.Stats' counters of things dropped or ignored,
// grouped, in the order shown.
var dropCounters = []struct {
	group, reason string
	get           func(*mesh.Stats) uint64
}{
	{"link", "malformed", func(s *mesh.Stats) uint64 { return s.Malformed }},
	{"link", "unknown_source", func(s *mesh.Stats) uint64 { return s.UnknownSource }},
	{"link", "duplicates", func(s *mesh.Stats) uint64 { return s.Duplicates }},
	{"link", "beyond_window", func(s *mesh.Stats) uint64 { return s.BeyondWindow }},
	{"link", "abandoned", func(s *mesh.Stats) uint64 { return s.Abandoned }},
	{"link", "ttl_expired", func(s *mesh.Stats) uint64 { return s.TTLExpired }},
	{"link", "late", func(s *mesh.Stats) uint64 { return s.Late }},
	{"link", "read_errors", func(s *mesh.Stats) uint64 { return s.ReadErrors }},
	{"link", "write_errors", func(s *mesh.Stats) uint64 { return s.WriteErrors }},
	{"auth", "bad_mac", func(s *mesh.Stats) uint64 { return s.BadMAC }},
	{"auth", "unauthenticated", func(s *mesh.Stats) uint64 { return s.Unauthenticated }},
	{"auth", "replayed", func(s *mesh.Stats) uint64 { return s.Replayed }},
	{"admission", "bad_hello", func(s *mesh.Stats) uint64 { return s.BadHello }},
	{"admission", "stale_hello", func(s *mesh.Stats) uint64 { return s.StaleHello }},
	{"admission", "bad_cookie", func(s *mesh.Stats) uint64 { return s.BadCookie }},
	{"admission", "untrusted", func(s *mesh.Stats) uint64 { return s.Untrusted }},
	{"admission", "addr_taken", func(s *mesh.Stats) uint64 { return s.AddrTaken }},
	{"admission", "neighbour_cap", func(s *mesh.Stats) uint64 { return s.NeighbourCap }},
	{"admission", "verify_limited", func(s *mesh.Stats) uint64 { return s.VerifyLimited }},
	{"admission", "bad_sig_cached", func(s *mesh.Stats) uint64 { return s.BadSigCached }},
	{"routing", "no_route", func(s *mesh.Stats) uint64 { return s.NoRoute }},
	{"routing", "too_big", func(s *mesh.Stats) uint64 { return s.TooBig }},
	{"routing", "bad_route", func(s *mesh.Stats) uint64 { return s.BadRoute }},
	{"routing", "stale_route", func(s *mesh.Stats) uint64 { return s.StaleRoute }},
	{"routing", "route_cap", func(s *mesh.Stats) uint64 { return s.RouteCap }},
	{"routing", "new_origin_limited", func(s *mesh.Stats) uint64 { return s.NewOriginLimited }},
	{"routing", "implausible_route", func(s *mesh.Stats) uint64 { return s.ImplausibleRoute }},
	{"queue", "port_drops", func(s *mesh.Stats) uint64 { return s.PortDrops }},
	{"queue", "no_port", func(s *mesh.Stats) uint64 { return s.NoPort }},
	{"queue", "relay_drops", func(s *mesh.Stats) uint64 { return s.RelayDrops }},
	{"queue", "verify_queue_drops", func(s *mesh.Stats) uint64 { return s.VerifyQueueDrops }},
}

// DropCounters returns st's non-zero counters of frames dropped or
// ignored, grouped ("link", "auth", "admission", "routing", "queue");
// all of them, zero or not, with all set.
func DropCounters(st mesh.Stats, all bool) []Drop {
	out := []Drop{}
	for _, d := range dropCounters {
		if v := d.get(&st); v != 0 || all {
			out = append(out, Drop{Group: d.group, Reason: d.reason, Count: v})
		}
	}
	return out
}

// maxSnapshotReports bounds the report bytes in one snapshot, within
// maxReply.
const maxSnapshotReports = 4 << 20

// tunnel is one bound connection and the latest report of its process.
type tunnel struct {
	port uint16
	pid  int
	rep  *Report // nil until the first report
	size int     // the report's JSON size
}

// rateSample is one neighbour's byte counters at a moment.
type rateSample struct {
	at      time.Time
	in, out uint64
}

// statusState is the server's part of the snapshot that is not the
// node's: reports and rate samples.
type statusState struct {
	mu      sync.Mutex
	tunnels map[*tunnel]struct{}        // guarded by mu
	last    map[identity.SID]rateSample // the latest sample; guarded by mu
	prev    map[identity.SID]rateSample // the one before; guarded by mu
}

// addTunnel registers a bound connection of port from process pid.
func (s *Server) addTunnel(port uint16, pid int) *tunnel {
	t := &tunnel{port: port, pid: pid}
	s.st.mu.Lock()
	if s.st.tunnels == nil {
		s.st.tunnels = map[*tunnel]struct{}{}
	}
	s.st.tunnels[t] = struct{}{}
	s.st.mu.Unlock()
	return t
}

// setReport keeps r, of size bytes, as t's latest report.
func (s *Server) setReport(t *tunnel, r Report, size int) {
	r.Port, r.PID = t.port, t.pid
	s.st.mu.Lock()
	t.rep, t.size = &r, size
	s.st.mu.Unlock()
}

// removeTunnel forgets a connection that closed, and its report.
func (s *Server) removeTunnel(t *tunnel) {
	s.st.mu.Lock()
	delete(s.st.tunnels, t)
	s.st.mu.Unlock()
}

// sampleEvery is how often the byte rates are sampled.
const sampleEvery = time.Second

// sampleLoop samples the neighbours' byte counters every second until ctx
// ends.
func (s *Server) sampleLoop(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		s.sample(time.Now(), s.node.Neighbours())
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// sample records the neighbours' counters at now.
func (s *Server) sample(now time.Time, nbs []mesh.Neighbour) {
	m := make(map[identity.SID]rateSample, len(nbs))
	for _, nb := range nbs {
		m[nb.SID] = rateSample{at: now, in: nb.BytesIn, out: nb.BytesOut}
	}
	s.st.mu.Lock()
	s.st.prev, s.st.last = s.st.last, m
	s.st.mu.Unlock()
}

// minRateWindow is the shortest span a rate is computed over.
const minRateWindow = 200 * time.Millisecond

// rates returns nb's bytes per second in and out, from the oldest sample
// kept (1-2 s old while the sampler runs) to now. Called with st.mu held.
func (st *statusState) ratesLocked(now time.Time, nb mesh.Neighbour) (in, out float64) {
	ref, ok := st.prev[nb.SID]
	if !ok {
		ref, ok = st.last[nb.SID]
	}
	dt := now.Sub(ref.at)
	if !ok || dt < minRateWindow || nb.BytesIn < ref.in || nb.BytesOut < ref.out {
		return 0, 0 // no sample yet, too recent, or the neighbour came up again
	}
	return float64(nb.BytesIn-ref.in) / dt.Seconds(), float64(nb.BytesOut-ref.out) / dt.Seconds()
}

// Snapshot returns the daemon's status now: the node, its neighbours
// (with byte rates over the last 1-2 s, sampled every second while Serve
// runs), the tunnels its clients reported, the non-zero drop counters.
// Safe for concurrent use; the metrics endpoint may call it too.
func (s *Server) Snapshot() StatusSnapshot {
	now := time.Now()
	nbs := s.node.Neighbours()
	st := s.node.Stats()
	snap := StatusSnapshot{
		Node: NodeStatus{
			SID: s.node.SID(), PID: os.Getpid(), UDP: []string{s.node.LocalAddr().String()},
			Version: s.cfg.Version, Started: s.started, UptimeS: now.Sub(s.started).Seconds(),
			Neighbours: len(nbs), Routes: len(s.node.Routes()),
			FramesIn: st.FramesIn, FramesOut: st.FramesOut,
		},
		Neighbours: make([]NeighbourStatus, 0, len(nbs)),
		Tunnels:    []Report{},
		Drops:      DropCounters(st, false),
		Stats:      st,
	}
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	for _, nb := range nbs {
		in, out := s.st.ratesLocked(now, nb)
		addr := ""
		if nb.Addr != nil {
			addr = nb.Addr.String()
		}
		snap.Neighbours = append(snap.Neighbours, NeighbourStatus{
			SID: nb.SID, Addr: addr, MTU: nb.MTU, RTTus: nb.SRTT.Microseconds(),
			LossOut: nb.Loss, LossIn: nb.LossIn,
			BytesIn: nb.BytesIn, BytesOut: nb.BytesOut, FramesIn: nb.FramesIn, FramesOut: nb.FramesOut,
			RateIn: in, RateOut: out, Up: nb.Up, LastHeard: nb.LastHeard,
			RouteCost: nb.Cost, Deliveries: nb.Delivery,
		})
	}
	size := 0
	for t := range s.st.tunnels {
		if t.rep == nil {
			continue
		}
		if size += t.size; size > maxSnapshotReports {
			snap.TunnelsOmitted++
			continue
		}
		r := *t.rep
		r.Sessions = slices.Clone(r.Sessions)
		snap.Tunnels = append(snap.Tunnels, r)
	}
	slices.SortFunc(snap.Tunnels, func(a, b Report) int { return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.PID, b.PID)) })
	return snap
}

// Sessions lists the MSP sessions the daemon's clients reported last (for
// metrics; Snapshot bounds what it carries, this does not).
func (s *Server) Sessions() []msp.SessionInfo {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	var out []msp.SessionInfo
	for t := range s.st.tunnels {
		if t.rep != nil {
			out = append(out, t.rep.Sessions...)
		}
	}
	return out
}

// Snapshot returns the daemon's status snapshot (Server.Snapshot). A
// daemon older than the request answers with an error whose code is
// "bad-request".
func (c *Client) Snapshot(ctx context.Context) (StatusSnapshot, error) {
	rep, err := c.do(ctx, request{Op: opSnapshot})
	if err != nil {
		return StatusSnapshot{}, err
	}
	if rep.Snapshot == nil {
		return StatusSnapshot{}, fmt.Errorf("daemon: snapshot: %w: empty reply", errMalformed)
	}
	return *rep.Snapshot, nil
}
