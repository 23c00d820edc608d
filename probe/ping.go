package probe

// The ping side: echo requests at an interval, replies matched to them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// ErrNoReply means nothing answered: no echo reply to any request, or no
// trace reply from a hop.
var ErrNoReply = errors.New("no reply")

// PingConfig configures RunPing. Zero Interval and Wait take the defaults
// of DefaultPingConfig; Size is used as it is.
type PingConfig struct {
	// Count is how many requests to send; 0 sends until ctx ends.
	Count int
	// Interval is the time between requests. Default 1 s, at least 1 ms.
	Interval time.Duration
	// Size is the data bytes of each request after its HeaderLen-byte
	// header, 0 to MaxData. Default 56: 64-byte datagrams, as ping(8).
	Size int
	// Wait is how long replies are waited for after the last request.
	// Default 2 s.
	Wait time.Duration
}

// DefaultPingConfig returns the defaults: 56 data bytes a second, replies
// waited for 2 s after the last, until ctx ends.
func DefaultPingConfig() PingConfig {
	return PingConfig{Interval: time.Second, Size: 56, Wait: 2 * time.Second}
}

func (c *PingConfig) fill() {
	d := DefaultPingConfig()
	if c.Interval == 0 {
		c.Interval = d.Interval
	}
	if c.Wait == 0 {
		c.Wait = d.Wait
	}
}

// Validate reports a configuration that cannot work.
func (c *PingConfig) Validate() error {
	switch {
	case c.Count < 0:
		return fmt.Errorf("probe: ping count %d", c.Count)
	case c.Interval < time.Millisecond:
		return fmt.Errorf("probe: ping interval %v (at least 1ms)", c.Interval)
	case c.Size < 0 || c.Size > MaxData:
		return fmt.Errorf("probe: ping size %d (0 to %d)", c.Size, MaxData)
	case c.Wait < 0:
		return fmt.Errorf("probe: ping wait %v", c.Wait)
	}
	return nil
}

// Reply is one echo reply, or one request that could not be sent.
type Reply struct {
	Seq  uint32
	From identity.SID
	// Size is the length of the reply datagram, header included.
	Size int
	// Hops is the responder's hop count to the asker; HopsUnknown when it
	// had no route.
	Hops int
	RTT  time.Duration
	// Dup marks a second reply to Seq; it does not count as received.
	Dup bool
	// Err is set when the request Seq could not be sent (the other fields
	// are then zero).
	Err error
}

// String formats r as ping(8) does a reply:
// "64 bytes from 4F3A09B1: seq=1 hops=3 time=2.41 ms" ("hops=?" when the
// responder had no route, " (DUP!)" after a duplicate), or
// "seq=1: ERROR" for a request that could not be sent.
func (r Reply) String() string {
	if r.Err != nil {
		return fmt.Sprintf("seq=%d: %v", r.Seq, r.Err)
	}
	hops := "?"
	if r.Hops != HopsUnknown {
		hops = fmt.Sprint(r.Hops)
	}
	s := fmt.Sprintf("%d bytes from %s: seq=%d hops=%s time=%s ms", r.Size, r.From.Short(), r.Seq, hops, rttString(r.RTT))
	if r.Dup {
		s += " (DUP!)"
	}
	return s
}

// rttString formats d in milliseconds as ping(8) does: three significant
// digits below 100 ms (0.123, 2.41, 24.1), whole milliseconds above (241).
func rttString(d time.Duration) string {
	m := float64(d) / float64(time.Millisecond)
	switch {
	case m >= 100:
		return fmt.Sprintf("%.0f", m)
	case m >= 10:
		return fmt.Sprintf("%.1f", m)
	case m >= 1:
		return fmt.Sprintf("%.2f", m)
	}
	return fmt.Sprintf("%.3f", m)
}

// Summary sums up a run of RunPing.
type Summary struct {
	To identity.SID
	// Sent counts requests, Received the first reply to each; Duplicates
	// the replies after the first, Errors the requests not sent.
	Sent, Received, Duplicates, Errors int
	// Min, Avg, Max and Mdev are over the received replies' RTTs; Mdev is
	// ping(8)'s: sqrt(mean(RTT²) − mean(RTT)²).
	Min, Avg, Max, Mdev time.Duration
	// Time is how long the run took.
	Time time.Duration
}

// Loss is the percentage of requests sent that got no reply.
func (s Summary) Loss() float64 {
	if s.Sent == 0 {
		return 0
	}
	return float64(s.Sent-s.Received) * 100 / float64(s.Sent)
}

// String formats s as ping(8)'s last two lines.
func (s Summary) String() string {
	out := fmt.Sprintf("%d packets transmitted, %d received", s.Sent, s.Received)
	if s.Duplicates > 0 {
		out += fmt.Sprintf(", +%d duplicates", s.Duplicates)
	}
	if s.Errors > 0 {
		out += fmt.Sprintf(", +%d errors", s.Errors)
	}
	out += fmt.Sprintf(", %g%% packet loss, time %dms", math.Round(s.Loss()*100)/100, s.Time.Milliseconds())
	if s.Received > 0 {
		out += fmt.Sprintf("\nrtt min/avg/max/mdev = %s/%s/%s/%s ms", ms(s.Min), ms(s.Avg), ms(s.Max), ms(s.Mdev))
	}
	return out
}

// ms formats d in milliseconds with three decimals, as ping(8) does.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/float64(time.Millisecond)) }

// rtts accumulates round trips as ping(8) does.
type rtts struct {
	n               int
	min, max        time.Duration
	sum, sumSquares float64 // nanoseconds
}

func (r *rtts) add(d time.Duration) {
	if r.n == 0 || d < r.min {
		r.min = d
	}
	r.max = max(r.max, d)
	r.n++
	r.sum += float64(d)
	r.sumSquares += float64(d) * float64(d)
}

func (r *rtts) fill(s *Summary) {
	if r.n == 0 {
		return
	}
	avg := r.sum / float64(r.n)
	s.Min, s.Max, s.Avg = r.min, r.max, time.Duration(avg)
	s.Mdev = time.Duration(math.Sqrt(max(r.sumSquares/float64(r.n)-avg*avg, 0)))
}

// pingWindow is how many of the latest requests a reply is matched
// against; a reply to an older one is not counted.
const pingWindow = 4096

type pending struct {
	seq      uint32
	sent     time.Time
	answered bool
}

// Ping sends one echo request with size data bytes to node to through pc
// (an unused MDP port, which Ping closes) and waits for its reply until ctx
// ends.
func Ping(ctx context.Context, pc PacketConn, to identity.SID, size int) (Reply, error) {
	var reply Reply
	_, err := RunPing(ctx, pc, to, PingConfig{Count: 1, Size: size, Wait: math.MaxInt64}, func(r Reply) {
		if r.Err == nil && !r.Dup {
			reply = r
		}
	})
	return reply, err
}

// RunPing sends echo requests to node to through pc (an unused MDP port,
// which RunPing closes) as cfg says, calls each (if not nil) with every
// reply as it comes and every request that could not be sent, and returns
// the summary when cfg.Count requests were sent and all were answered or
// cfg.Wait has passed since the last, or when ctx ends. The error wraps
// ErrNoReply when nothing answered, and is the write error (wrapping
// mesh.ErrNoRoute) when a request could not be sent for want of a route
// before any reply came: the run then stops at once.
func RunPing(ctx context.Context, pc PacketConn, to identity.SID, cfg PingConfig, each func(Reply)) (Summary, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		pc.Close()
		return Summary{}, err
	}
	if each == nil {
		each = func(Reply) {}
	}
	a := newAsker(ctx, pc)
	defer a.close()

	start := time.Now()
	sum := Summary{To: to}
	var acc rtts
	var window [pingWindow]pending
	data := make([]byte, cfg.Size)
	for i := range data {
		data[i] = byte(i)
	}
	buf := make([]byte, 0, HeaderLen+cfg.Size)
	dst := mesh.Addr{SID: to, Port: EchoPort}

	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	var waitT *time.Timer // started once the last request is sent
	var wait <-chan time.Time
	defer func() {
		if waitT != nil {
			waitT.Stop()
		}
	}()
	seq := uint32(0)
	var lastErr error
	send := func() error {
		next := seq + 1
		sent := time.Now()
		_, err := pc.WriteTo(Echo{ID: a.id, Seq: next, Data: data}.Append(buf[:0]), dst)
		if errors.Is(err, net.ErrClosed) {
			return err // stopping: this request does not count
		}
		seq = next
		sum.Sent++
		window[seq%pingWindow] = pending{seq: seq, sent: sent, answered: err != nil}
		if err != nil {
			sum.Errors++
			lastErr = err
			each(Reply{Seq: seq, Err: err})
			if sum.Received == 0 && noRoute(err) {
				return err
			}
		}
		if cfg.Count > 0 && sum.Sent >= cfg.Count {
			tick.Stop()
			waitT = time.NewTimer(cfg.Wait)
			wait = waitT.C
		}
		return nil
	}
	// done reports whether every request was sent and answered.
	done := func() bool {
		if cfg.Count == 0 || sum.Sent < cfg.Count {
			return false
		}
		return sum.Received+sum.Errors >= sum.Sent
	}

	fail := send()
loop:
	for fail == nil && !done() {
		select {
		case <-tick.C:
			fail = send()
		case r, ok := <-a.in:
			if !ok {
				if ctx.Err() == nil {
					fail = a.err
				}
				break loop
			}
			if r.from.SID != to || r.from.Port != EchoPort {
				continue
			}
			e, _, err := ParseEcho(r.b)
			if err != nil || !e.Reply || e.ID != a.id || !bytes.Equal(e.Data, data) {
				continue
			}
			p := &window[e.Seq%pingWindow]
			if p.seq != e.Seq || p.sent.IsZero() || e.Seq > seq {
				continue
			}
			rep := Reply{Seq: e.Seq, From: to, Size: len(r.b), Hops: e.Hops, RTT: r.at.Sub(p.sent)}
			if p.answered {
				rep.Dup = true
				sum.Duplicates++
			} else {
				p.answered = true
				sum.Received++
				acc.add(rep.RTT)
			}
			each(rep)
		case <-wait:
			break loop
		case <-ctx.Done():
			break loop
		}
	}
	sum.Time = time.Since(start)
	acc.fill(&sum)
	switch {
	case sum.Received > 0:
		return sum, nil
	case fail != nil && !errors.Is(fail, net.ErrClosed):
		return sum, fmt.Errorf("probe: ping %s: %w", to.Short(), fail)
	case lastErr != nil && !errors.Is(lastErr, net.ErrClosed):
		return sum, fmt.Errorf("probe: ping %s: %w (%v)", to.Short(), ErrNoReply, lastErr)
	}
	return sum, fmt.Errorf("probe: ping %s: %w", to.Short(), ErrNoReply)
}

// noRoute reports whether a write error says that no path to the
// destination is known (mesh.ErrNoRoute, also through a daemon).
func noRoute(err error) bool {
	var e interface{ NoRoute() bool }
	return errors.As(err, &e) && e.NoRoute()
}
