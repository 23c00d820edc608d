package instance

// A tunnel process's statistics (msp listen / msp connect --stats and -v):
// the MSP sessions it has had, live and ended, read through
// msp.Session.Info. No packet flows through this file; it reads counters.
//
//	listener: Accept ─► the listener's sessions ─┐
//	connect:  Redialer.Watch (each dial, each stream) ─┴─► TunnelStats ─► a line per interval, a summary at Stop

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/servald/servald/msp"
)

// MinStatsInterval is the shortest interval between two stats lines.
const MinStatsInterval = 100 * time.Millisecond

// StatsConfig says what a TunnelStats prints, and where.
type StatsConfig struct {
	// Out receives the lines (stderr).
	Out io.Writer
	// Interval between two stats lines (--stats); 0: none. Otherwise at
	// least MinStatsInterval.
	Interval time.Duration
	// Summary asks for a summary line at Stop (-v).
	Summary bool
	// Now tells the time; nil: time.Now.
	Now func() time.Time
}

// TunnelStats keeps the MSP sessions of a tunnel process (those of the
// listeners it watches and those added to it) and sums their counters.
// A session that ended is kept as its final counters, so that totals and
// rates never go backwards. Every interval it prints a line of rates
// (Line); at Stop, with Summary, a summary line. Safe for concurrent use.
type TunnelStats struct {
	cfg StatsConfig

	mu    sync.Mutex
	live  map[*msp.Session]uint64 // guarded by mu; live sessions, with the bytes each had moved at the last line
	lis   []*msp.Listener         // guarded by mu; listeners whose sessions are added when polled
	ended statsTotals             // guarded by mu; the final counters of the sessions that ended
	// guarded by mu: sessions ever added, the most streams open at once
	// (sampled when a stream opens and at each line), when the first
	// session was added, and the totals and time of the last line.
	opened int
	peak   int
	first  time.Time
	prev   statsTotals
	prevAt time.Time

	stopOnce sync.Once
	stop     chan struct{} // closed by Stop
	done     chan struct{} // closed when the ticker has returned (nil: no ticker)
}

// statsTotals are counters summed over sessions.
type statsTotals struct {
	sent, received, retransmitted uint64 // stream bytes
	packetsSent, packetsLost      uint64
}

func (t *statsTotals) add(i msp.SessionInfo) {
	t.sent += i.BytesSent
	t.received += i.BytesReceived
	t.retransmitted += i.BytesRetransmitted
	t.packetsSent += i.PacketsSent
	t.packetsLost += i.PacketsLost
}

// NewTunnelStats checks cfg: an Interval below zero or below
// MinStatsInterval (but not 0) is a *UsageError. Nothing runs until Start.
func NewTunnelStats(cfg StatsConfig) (*TunnelStats, error) {
	if cfg.Interval < 0 || (cfg.Interval > 0 && cfg.Interval < MinStatsInterval) {
		return nil, usagef("--stats %v: want an interval of at least %v (0: no stats lines)", cfg.Interval, MinStatsInterval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	t := &TunnelStats{cfg: cfg, live: make(map[*msp.Session]uint64), stop: make(chan struct{})}
	t.prevAt = cfg.Now()
	return t, nil
}

// StartTunnelStats is NewTunnelStats, then Start.
func StartTunnelStats(ctx context.Context, cfg StatsConfig) (*TunnelStats, error) {
	t, err := NewTunnelStats(cfg)
	if err == nil {
		t.Start(ctx)
	}
	return t, err
}

// Start prints a line every Interval (none when it is 0) until ctx ends
// or Stop. Call it once at most, before Stop, from the goroutine that
// calls Stop.
func (t *TunnelStats) Start(ctx context.Context) {
	if t.cfg.Interval == 0 {
		return
	}
	t.done = make(chan struct{})
	go func() {
		defer close(t.done)
		tick := time.NewTicker(t.cfg.Interval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				fmt.Fprintln(t.cfg.Out, t.Line())
			case <-ctx.Done():
				return
			case <-t.stop:
				return
			}
		}
	}()
}

// Stop stops the lines and, with Summary, prints the summary line. Later
// calls do nothing.
func (t *TunnelStats) Stop() {
	t.stopOnce.Do(func() {
		close(t.stop)
		if t.done != nil {
			<-t.done
		}
		if t.cfg.Summary {
			fmt.Fprintln(t.cfg.Out, t.Summary())
		}
	})
}

// Add watches s (again: nothing more), keeps the sessions that ended as
// their final counters and, when it prints (Interval or Summary), counts
// the streams open now towards the peak. Redialer.Watch takes it.
func (t *TunnelStats) Add(s *msp.Session) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(s)
	t.pruneLocked()
	if t.printing() {
		t.sampleLocked()
	}
}

// printing reports whether t prints anything: without, Accept and Add
// cost next to nothing.
func (t *TunnelStats) printing() bool { return t.cfg.Interval > 0 || t.cfg.Summary }

func (t *TunnelStats) addLocked(s *msp.Session) {
	if _, ok := t.live[s]; ok {
		return
	}
	t.live[s] = 0
	t.opened++
	if t.first.IsZero() {
		t.first = t.cfg.Now()
	}
}

// Watch adds the sessions lis has whenever the stats are read.
func (t *TunnelStats) Watch(lis *msp.Listener) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.lis = append(t.lis, lis)
}

// Accept is lis.AcceptContext, watching lis (Watch). When t prints, after
// each stream it adds the sessions lis has, among them the stream's,
// before the session can end unseen, and counts the streams open towards
// the peak: work in proportion to the sessions lis has (1024 at most by
// default), once per stream.
func (t *TunnelStats) Accept(lis *msp.Listener) func(context.Context) (net.Conn, error) {
	t.Watch(lis)
	if !t.printing() {
		return lis.AcceptContext
	}
	return func(ctx context.Context) (net.Conn, error) {
		st, err := lis.AcceptContext(ctx)
		if err == nil {
			t.mu.Lock()
			t.pollLocked()
			t.sampleLocked()
			t.mu.Unlock()
		}
		return st, err
	}
}

// pollLocked adds the watched listeners' sessions and keeps the ended
// ones as their final counters.
func (t *TunnelStats) pollLocked() {
	for _, l := range t.lis {
		for _, s := range l.Sessions() {
			t.addLocked(s)
		}
	}
	t.pruneLocked()
}

// pruneLocked keeps the sessions that ended as their final counters.
func (t *TunnelStats) pruneLocked() {
	for s := range t.live {
		select {
		case <-s.Done():
			t.ended.add(s.Info()) // final: an ended session counts no more
			delete(t.live, s)
		default:
		}
	}
}

// sampleLocked counts the streams open now towards the peak.
func (t *TunnelStats) sampleLocked() {
	n := 0
	for s := range t.live {
		n += s.Info().Streams
	}
	t.peak = max(t.peak, n)
}

// Sessions summarises the live sessions.
func (t *TunnelStats) Sessions() []msp.SessionInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pollLocked()
	out := make([]msp.SessionInfo, 0, len(t.live))
	for s := range t.live {
		out = append(out, s.Info())
	}
	return out
}

// Line returns the stats line for the time since the previous line (or
// NewTunnelStats): bytes per second sent and received, the smoothed RTT
// of the session that moved the most bytes in that time (of the one with
// the most bytes overall when none moved any; "-" with no session), the
// packets declared lost per packet sent (%; "-" when none was sent), the
// bytes retransmitted, and the streams and sessions open now.
func (t *TunnelStats) Line() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pollLocked()
	now := t.cfg.Now()
	cur := t.ended
	streams := 0
	var busiest msp.SessionInfo
	var busiestBy [2]uint64 // bytes moved in the interval, then overall
	for s, last := range t.live {
		i := s.Info()
		cur.add(i)
		streams += i.Streams
		moved := i.BytesSent + i.BytesReceived
		if by := [2]uint64{moved - last, moved}; by[0] > busiestBy[0] || (by[0] == busiestBy[0] && by[1] >= busiestBy[1]) {
			busiest, busiestBy = i, by
		}
		t.live[s] = moved
	}
	t.peak = max(t.peak, streams)
	secs := now.Sub(t.prevAt).Seconds()
	d := cur.minus(t.prev)
	t.prev, t.prevAt = cur, now
	rtt, loss := "-", "-"
	if len(t.live) > 0 && busiest.SRTTus > 0 {
		rtt = fmt.Sprintf("%.1f ms", float64(busiest.SRTTus)/1000)
	}
	if d.packetsSent > 0 {
		loss = fmt.Sprintf("%.1f%%", 100*float64(d.packetsLost)/float64(d.packetsSent))
	}
	return fmt.Sprintf("servald: stats: sent %s/s, received %s/s, rtt %s, loss %s, retransmitted %s, streams %d, sessions %d",
		humanBytes(rate(d.sent, secs)), humanBytes(rate(d.received, secs)), rtt, loss, humanBytes(float64(d.retransmitted)), streams, len(t.live))
}

// minus is t-u, counter by counter.
func (t statsTotals) minus(u statsTotals) statsTotals {
	return statsTotals{t.sent - u.sent, t.received - u.received, t.retransmitted - u.retransmitted,
		t.packetsSent - u.packetsSent, t.packetsLost - u.packetsLost}
}

// Summary returns the summary line: the bytes sent and received by all
// sessions (smux framing included), the time from the first session to
// now, the mean rates over it, the bytes retransmitted, the most streams
// open at once and the sessions opened.
func (t *TunnelStats) Summary() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := t.totalsLocked()
	if t.opened == 0 {
		return "servald: summary: no session"
	}
	took := t.cfg.Now().Sub(t.first)
	secs := took.Seconds()
	return fmt.Sprintf("servald: summary: sent %s (%d bytes), received %s (%d bytes) in %v, mean %s/s sent, %s/s received, retransmitted %s, peak streams %d, sessions %d",
		humanBytes(float64(cur.sent)), cur.sent, humanBytes(float64(cur.received)), cur.received, took.Round(time.Millisecond),
		humanBytes(rate(cur.sent, secs)), humanBytes(rate(cur.received, secs)), humanBytes(float64(cur.retransmitted)), t.peak, t.opened)
}

// totalsLocked polls and sums the counters of every session, live or
// ended.
func (t *TunnelStats) totalsLocked() statsTotals {
	t.pollLocked()
	cur := t.ended
	for s := range t.live {
		cur.add(s.Info())
	}
	return cur
}

// rate is n per second over secs (0 for no time).
func rate(n uint64, secs float64) float64 {
	if secs <= 0 {
		return 0
	}
	return float64(n) / secs
}

// humanBytes writes n bytes in binary units: "512 B", "1.5 KiB", "12.0 MiB".
func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
