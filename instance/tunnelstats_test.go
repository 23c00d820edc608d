package instance

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// lineRe reads a stats line.
var lineRe = regexp.MustCompile(`^servald: stats: sent (\S+ \S+)/s, received (\S+ \S+)/s, rtt (-|[0-9.]+ ms), loss (-|[0-9.]+%), retransmitted (\S+ \S+), streams (\d+), sessions (\d+)$`)

// summaryRe reads a summary line.
var summaryRe = regexp.MustCompile(`^servald: summary: sent \S+ \S+ \((\d+) bytes\), received \S+ \S+ \((\d+) bytes\) in \S+, mean \S+ \S+/s sent, \S+ \S+/s received, retransmitted \S+ \S+, peak streams (\d+), sessions (\d+)$`)

// summaryFields are the numbers of a summary line: bytes sent and
// received, peak streams, sessions.
func summaryFields(t *testing.T, line string) [4]uint64 {
	t.Helper()
	m := summaryRe.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("summary %q does not read as one", line)
	}
	var out [4]uint64
	for i := range out {
		out[i], _ = strconv.ParseUint(m[i+1], 10, 64)
	}
	return out
}

// pushThrough writes n bytes on st, half-closes it and reads the echo.
func pushThrough(t *testing.T, st net.Conn, n int) {
	t.Helper()
	st.SetDeadline(time.Now().Add(20 * time.Second))
	errc := make(chan error, 1)
	go func() {
		_, err := st.Write(make([]byte, n))
		st.(interface{ CloseWrite() error }).CloseWrite()
		errc <- err
	}()
	got, err := io.Copy(io.Discard, st)
	if werr := <-errc; werr != nil || err != nil || got != int64(n) {
		t.Fatalf("echo of %d bytes: read %d, %v; write %v", n, got, err, werr)
	}
}

func TestNewTunnelStatsInterval(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{{0, true}, {MinStatsInterval, true}, {time.Second, true}, {-time.Second, false}, {time.Nanosecond, false}, {99 * time.Millisecond, false}} {
		_, err := NewTunnelStats(StatsConfig{Interval: tc.d})
		var ue *UsageError
		if tc.ok != (err == nil) || (err != nil && !errors.As(err, &ue)) {
			t.Errorf("interval %v: %v; want ok %v, else a *UsageError", tc.d, err, tc.ok)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	for _, tc := range []struct {
		n    float64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {1536, "1.5 KiB"}, {12 << 20, "12.0 MiB"}, {3 << 30, "3.0 GiB"}, {5 << 40, "5.0 TiB"}, {2048 << 40, "2048.0 TiB"}} {
		if got := humanBytes(tc.n); got != tc.want {
			t.Errorf("humanBytes(%v) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestTunnelStatsConnectSide: a Redialer watched by a TunnelStats. A line
// after 1 s (on a fake clock) of pushing 1 MiB shows the bytes sent per
// second in the right direction, the streams and the session; once the
// session has ended (its listener closed) the totals do not go back, the
// next line shows no rate and no session, and the redial adds a second
// session whose bytes add to the first's.
func TestTunnelStatsConnectSide(t *testing.T) {
	a, b := memPair(t, nil, nil)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	ts, err := NewTunnelStats(StatsConfig{Now: clk.now, Summary: true})
	if err != nil {
		t.Fatal(err)
	}
	lis := echoOn(t, b, 7)
	find := func(context.Context) (identity.SID, uint16, error) { return b.SID(), 7, nil }
	dial := func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error) {
		return DialSession(ctx, Embed(a), sid, port, fastEnd)
	}
	rd := NewRedialer(5*time.Second, find, dial)
	defer rd.Close()
	rd.Watch(ts.Add)
	ctx := context.Background()

	const n = 1 << 20
	st, err := rd.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := rd.Session(ctx)
	if got := ts.Sessions(); len(got) != 1 || got[0].Peer != b.SID() || !got[0].Initiator || got[0].Streams != 1 {
		t.Fatalf("Sessions = %+v, want one to %s with one stream", got, b.SID().Short())
	}
	// Send, and read the echo only after the line: the stream is open.
	st.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := st.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return first.Info().BytesSent >= n })
	clk.advance(time.Second)
	line := ts.Line()
	m := lineRe.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("line %q does not read as one", line)
	}
	if sent, err := strconv.ParseFloat(strings.TrimSuffix(m[1], " MiB"), 64); err != nil || sent < 0.99 || sent > 1.1 {
		t.Errorf("line %q: want about 1 MiB/s sent over 1 s of sending %d bytes", line, n)
	}
	if m[3] == "-" || m[6] != "1" || m[7] != "1" {
		t.Errorf("line %q: want an rtt, 1 stream, 1 session", line)
	}
	st.(interface{ CloseWrite() error }).CloseWrite()
	if got, err := io.Copy(io.Discard, st); err != nil || got != n {
		t.Fatalf("echo: %d bytes, %v", got, err)
	}
	st.Close()
	before := summaryFields(t, ts.Summary())

	lis.Close()
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after its listener closed")
	}
	clk.advance(time.Second)
	after := summaryFields(t, ts.Summary())
	if after[0] < before[0] || after[1] < before[1] || after[0] < n || after[1] < n || after[2] != 1 || after[3] != 1 {
		t.Fatalf("after the session ended: %v, before %v; want totals of at least %d each way, not less than before, peak 1, 1 session", after, before, n)
	}
	if got := ts.Sessions(); len(got) != 0 {
		t.Errorf("Sessions after the end = %+v, want none", got)
	}
	line = ts.Line()
	if m = lineRe.FindStringSubmatch(line); m == nil || m[3] != "-" || m[7] != "0" {
		t.Errorf("line after the end %q: want no rtt, 0 sessions", line)
	}

	lis = echoOn(t, b, 7)
	defer lis.Close()
	st, err = rd.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pushThrough(t, st, n)
	st.Close()
	again := summaryFields(t, ts.Summary())
	if again[0] < after[0]+n || again[1] < after[1]+n || again[3] != 2 {
		t.Errorf("after a second session: %v, after the first %v; want %d more each way, 2 sessions", again, after, n)
	}
}

// TestTunnelStatsListenSide: a listener's streams taken through Accept.
// Its sessions are listed while live; once both clients' sessions ended
// (and left the listener), the summary still counts their bytes, the peak
// of 2 streams open at once and the 2 sessions.
func TestTunnelStatsListenSide(t *testing.T) {
	a, b := memPair(t, nil, nil)
	ts, err := NewTunnelStats(StatsConfig{Summary: true})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait() // after the listener closed
	lis, err := Listen(Embed(b), 7, fastEnd)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accept := ts.Accept(lis)
	wg.Go(func() {
		for {
			st, err := accept(context.Background())
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(st, st)
				st.Close()
			})
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 256 << 10
	var sessions []*msp.Session
	var streams []net.Conn
	for range 2 {
		s, err := DialSession(ctx, Embed(a), b.SID(), 7, fastEnd)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		sessions, streams = append(sessions, s), append(streams, st)
	}
	// Both streams are accepted, and open, before either moves a byte.
	waitFor(t, func() bool {
		n := 0
		for _, i := range ts.Sessions() {
			n += i.Streams
		}
		return n == 2
	})
	got := ts.Sessions()
	if len(got) != 2 {
		t.Fatalf("Sessions = %+v, want 2", got)
	}
	for _, i := range got {
		if i.Initiator || i.Peer != a.SID() || i.Streams != 1 {
			t.Fatalf("Sessions = %+v, want 2 from %s with a stream each", got, a.SID().Short())
		}
	}
	for _, st := range streams {
		pushThrough(t, st, n)
		st.Close()
	}
	for _, s := range sessions {
		if err := s.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(lis.Sessions()) == 0 })
	sum := summaryFields(t, ts.Summary())
	if sum[0] < 2*n || sum[1] < 2*n || sum[0] > 2*n+64<<10 || sum[2] != 2 || sum[3] != 2 {
		t.Fatalf("summary %v: want %d to %d bytes each way (smux framing), peak 2 streams, 2 sessions", sum, 2*n, 2*n+64<<10)
	}
	if left := ts.Sessions(); len(left) != 0 {
		t.Errorf("Sessions after the end = %+v", left)
	}
}

// TestTunnelStatsTicker: Start prints a line per interval; Stop ends them
// and prints the summary, once.
func TestTunnelStatsTicker(t *testing.T) {
	var out syncBuffer
	ts, err := NewTunnelStats(StatsConfig{Out: &out, Interval: MinStatsInterval, Summary: true})
	if err != nil {
		t.Fatal(err)
	}
	ts.Start(context.Background())
	waitFor(t, func() bool { return strings.Count(out.String(), "\n") >= 2 })
	ts.Stop()
	ts.Stop()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines[:len(lines)-1] {
		if m := lineRe.FindStringSubmatch(l); m == nil || m[1] != "0 B" || m[4] != "-" || m[7] != "0" {
			t.Errorf("idle line %q", l)
		}
	}
	if last := lines[len(lines)-1]; last != "servald: summary: no session" {
		t.Errorf("last line %q, want the summary of no session", last)
	}
	n := len(lines)
	time.Sleep(3 * MinStatsInterval)
	if got := strings.Count(out.String(), "\n"); got != n {
		t.Errorf("%d lines after Stop, want %d", got, n)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
