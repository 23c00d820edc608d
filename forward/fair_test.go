package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestServeFreshAmongIdle is the done-when of fair forwarding: with 2,000
// idle connections held from 127.0.0.1 (more than the MaxConns slots, all
// from the address every local client shares), each of 5 fresh connections
// echoes within 2 s.
func TestServeFreshAmongIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 connections")
	}
	const idle, fresh = 2000, 5
	ln := listen(t)
	open, _ := memEchoOpener(t)
	f := &Forwarder{IdleTimeout: DefaultIdleTimeout}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := goRun(func() error { return f.Serve(ctx, ln, open) })
	defer srv.wait(t, promptly, "Serve after cancel")
	defer cancel()

	for range idle {
		dialTCP(t, ln.Addr().String())
	}
	for i := range fresh {
		start := time.Now()
		err := goRun(func() error {
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				return err
			}
			defer c.Close()
			return roundTrip(c.(*net.TCPConn), []byte(fmt.Sprintf("fresh %d", i)))
		}).wait(t, 2*time.Second, fmt.Sprintf("fresh connection %d among %d idle", i, idle))
		if err != nil {
			t.Fatalf("fresh connection %d: %v", i, err)
		}
		t.Logf("fresh connection %d echoed in %v", i, time.Since(start))
	}
	st := f.Stats()
	t.Logf("stats %+v", st)
	if st.Accepted != idle+fresh {
		t.Errorf("accepted %d, want %d", st.Accepted, idle+fresh)
	}
	if st.Active > MaxConns {
		t.Errorf("%d pairs held, above MaxConns %d", st.Active, MaxConns)
	}
	if min := uint64(idle + 1 - MaxConns); st.Evicted < min {
		t.Errorf("evicted %d, want at least %d", st.Evicted, min)
	}
}

// TestEvictionChoosesIdlestOfBusiestPeer checks the listener side: one peer
// cannot take every slot, and its floods evict its own streams, never those
// of a peer holding fewer. It runs on a fake clock so that the streams age
// past activeGrace between arrivals.
func TestEvictionChoosesIdlestOfBusiestPeer(t *testing.T) {
	synctest.Test(t, testEvictionChoosesIdlestOfBusiestPeer)
}

func testEvictionChoosesIdlestOfBusiestPeer(t *testing.T) {
	q := make(streamQueue)
	f := &Forwarder{MaxConns: 4}
	defer serveEchoStreams(t, f, q)()
	// open pushes a stream from peer and waits for one echo through it, so
	// the stream is joined (and any eviction it caused done); then time
	// passes, so that every stream is idle for longer than activeGrace.
	open := func(peer string) *memConn {
		t.Helper()
		far := q.pushFrom(t, peer)
		ping(t, far)
		time.Sleep(activeGrace)
		return far
	}
	var a []*memConn
	for range 4 {
		a = append(a, open("peerA:1"))
	}
	b1 := open("peerB:7")
	expectClosed(t, a[0]) // A's idlest went for B
	// A holds 3, B 1: A's new streams replace A's own, idlest first
	for i := range 5 {
		a = append(a, open(fmt.Sprintf("peerA:%d", 100+i)))
		expectClosed(t, a[i+1])
	}
	ping(t, b1)
	b2 := open("peerB:8") // A held 3, B 1 (+1): A gives one up
	expectClosed(t, a[6])
	for i := range 3 {
		a = append(a, open("peerA:1"))
		expectClosed(t, a[7+i])
	}
	ping(t, b1)
	ping(t, b2)
	for _, c := range a[len(a)-2:] {
		ping(t, c)
	}
	if st := f.Stats(); st.Evicted != 10 || st.Active != 4 || st.Accepted != 14 {
		t.Fatalf("stats %+v, want 14 accepted, 10 evicted, 4 active", st)
	}
}

// TestNoEvictionWhileActive checks that a full loop does not evict a pair
// that moved a byte within activeGrace: the newcomer waits instead, and
// takes the slot once the pair has been idle that long.
func TestNoEvictionWhileActive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := make(streamQueue)
		f := &Forwarder{MaxConns: 1}
		defer serveEchoStreams(t, f, q)()
		active := q.pushFrom(t, "peer:1")
		ping(t, active)
		waiting := q.pushFrom(t, "peer:2")
		for range 10 { // the first stays active: the second waits
			time.Sleep(activeGrace / 2)
			ping(t, active)
		}
		if st := f.Stats(); st.Evicted != 0 || st.Active != 1 {
			t.Fatalf("stats %+v: want the active pair kept, the newcomer waiting", st)
		}
		start := time.Now()
		ping(t, waiting) // the first idle for activeGrace: the second gets in
		if d := time.Since(start); d != activeGrace {
			t.Errorf("newcomer waited %v after the last byte, want %v", d, activeGrace)
		}
		expectClosed(t, active)
		if st := f.Stats(); st.Evicted != 1 || st.Active != 1 {
			t.Fatalf("stats %+v, want 1 evicted, 1 active", st)
		}
	})
}

// TestEvictedDuringDial checks that a pair that never moved a byte is
// evicted even while its target is still being dialled (the dial is
// cancelled), and that this is logged at Debug only: its dial fails with
// ctx's error, not ErrEvicted.
func TestEvictedDuringDial(t *testing.T) {
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dialling := make(chan struct{}, 2)
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		dialling <- struct{}{}
		<-ctx.Done()
		return nil, ctx.Err()
	}
	q := make(streamQueue)
	f := &Forwarder{MaxConns: 1, Dial: dial, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	srv := goRun(func() error { return f.ServeStreams(ctx, q.accept, Endpoint{Network: "tcp", Addr: "target"}) })
	first := q.pushFrom(t, "peer:1")
	<-dialling
	q.pushFrom(t, "peer:2")
	<-dialling
	expectClosed(t, first)
	cancel()
	srv.wait(t, promptly, "ServeStreams after cancel")
	if st := f.Stats(); st.Evicted != 1 || st.Active != 0 {
		t.Errorf("stats %+v, want 1 evicted, 0 active", st)
	}
	out := logs.String()
	if !strings.Contains(out, "evicting a pair") {
		t.Errorf("no eviction logged:\n%s", out)
	}
	if strings.Contains(out, "level=WARN") {
		t.Errorf("eviction logged at Warn:\n%s", out)
	}
}

// serveEchoStreams runs f.ServeStreams on the streams of q, with a Dial
// whose targets are in-memory echoes. stop cancels it and waits for it and
// for the echoes.
func serveEchoStreams(t *testing.T, f *Forwarder, q streamQueue) (stop func()) {
	var echoes sync.WaitGroup
	f.Dial = func(context.Context, string, string) (net.Conn, error) {
		near, far := memPair()
		echoes.Go(func() { echo(far) })
		return near, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := goRun(func() error { return f.ServeStreams(ctx, q.accept, Endpoint{Network: "tcp", Addr: "target"}) })
	return func() {
		cancel()
		srv.wait(t, promptly, "ServeStreams after cancel")
		echoes.Wait()
	}
}

// ping sends one byte through c and reads its echo.
func ping(t *testing.T, c io.ReadWriter) {
	t.Helper()
	err := goRun(func() error {
		if _, err := c.Write([]byte{'p'}); err != nil {
			return err
		}
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}).wait(t, promptly, "echo")
	if err != nil {
		t.Fatalf("echo: %v", err)
	}
}

// pushFrom queues a stream whose RemoteAddr is addr and returns its far end.
func (q streamQueue) pushFrom(t *testing.T, addr string) *memConn {
	a, b := memPair()
	t.Cleanup(func() { a.Close(); b.Close() })
	q <- addrConn{a, memAddr(addr)}
	return b
}

// addrConn is a memConn with a chosen RemoteAddr.
type addrConn struct {
	*memConn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// writerToConn is a memConn with a WriteTo method (as smux and MSP streams
// have), so Join copies from it through WriteTo.
type writerToConn struct{ *memConn }

func (c writerToConn) WriteTo(w io.Writer) (int64, error) {
	return io.CopyBuffer(writerOnly{w, nil}, readerOnly{c.memConn, nil}, make([]byte, BufferSize))
}

// readerFromConn is a memConn with a ReadFrom method, so Join copies to it
// through ReadFrom.
type readerFromConn struct{ *memConn }

func (c readerFromConn) ReadFrom(r io.Reader) (int64, error) {
	return io.CopyBuffer(writerOnly{c.memConn, nil}, readerOnly{r, nil}, make([]byte, BufferSize))
}

// TestIdleTimeout checks on a fake clock that a pair in which no byte moved
// for the idle timeout is closed at that moment, and that a pair moving a
// byte now and then in one direction only is not, whichever copy path
// carries it.
func TestIdleTimeout(t *testing.T) {
	const timeout = time.Minute
	tests := []struct {
		name string
		// wrap makes the stream and target ends of a pair
		stream, target func(*memConn) net.Conn
		want           path // of the stream->target direction
	}{
		{"buffer", func(c *memConn) net.Conn { return c }, func(c *memConn) net.Conn { return c }, viaBuffer},
		{"WriteTo", func(c *memConn) net.Conn { return writerToConn{c} }, func(c *memConn) net.Conn { return c }, viaWriterTo},
		{"ReadFrom", func(c *memConn) net.Conn { return c }, func(c *memConn) net.Conn { return readerFromConn{c} }, viaReaderFrom},
	}
	for _, tt := range tests {
		for _, dir := range []string{"stream->target", "target->stream"} {
			t.Run(tt.name+" "+dir, func(t *testing.T) {
				if got := copyPath(tt.target(nil), tt.stream(nil)); got != tt.want {
					t.Fatalf("stream->target path %d, want %d", got, tt.want)
				}
				synctest.Test(t, func(t *testing.T) { testIdleTimeout(t, timeout, tt.stream, tt.target, dir == "stream->target") })
			})
		}
	}
}

func testIdleTimeout(t *testing.T, timeout time.Duration, wrapStream, wrapTarget func(*memConn) net.Conn, up bool) {
	q := make(streamQueue)
	targets := make(chan *memConn, 2)
	dial := func(context.Context, string, string) (net.Conn, error) {
		near, far := memPair()
		targets <- far
		return wrapTarget(near), nil
	}
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := &Forwarder{IdleTimeout: timeout, Dial: dial, Logger: log}
	ctx, cancel := context.WithCancel(context.Background())
	srv := goRun(func() error { return f.ServeStreams(ctx, q.accept, Endpoint{Network: "tcp", Addr: "target"}) })
	push := func() (far, target *memConn) {
		near, far := memPair()
		q <- wrapStream(near)
		return far, <-targets
	}
	start := time.Now()
	idleFar, idleTarget := push()
	closedAt := goRun(func() time.Time {
		io.Copy(io.Discard, idleFar)
		return time.Now()
	})
	activeFar, activeTarget := push()
	from, to := activeTarget, activeFar
	if up {
		from, to = activeFar, activeTarget
	}
	for range 3 * timeout / (timeout / 2) {
		time.Sleep(timeout / 2)
		if _, err := from.Write([]byte{'x'}); err != nil {
			t.Fatalf("write to the active pair: %v", err)
		}
		if _, err := io.ReadFull(to, make([]byte, 1)); err != nil {
			t.Fatalf("read from the active pair: %v", err)
		}
	}
	synctest.Wait()
	select {
	case <-closedAt.done:
	default:
		t.Fatal("idle pair still open")
	}
	if got := closedAt.v.Sub(start); got != timeout {
		t.Errorf("idle pair closed after %v, want %v", got, timeout)
	}
	if _, err := idleTarget.Read(make([]byte, 1)); err == nil {
		t.Error("idle pair's target end still open")
	}
	if st := f.Stats(); st.IdleClosed != 1 || st.Active != 1 {
		t.Errorf("stats %+v, want 1 idle closed, 1 active", st)
	}
	if out := logs.String(); strings.Count(out, "closing an idle pair") != 1 || strings.Contains(out, "level=WARN") {
		t.Errorf("want one Debug line for the idle pair, no Warn:\n%s", out)
	}
	cancel()
	if err := srv.wait(t, promptly, "ServeStreams after cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeStreams = %v, want context.Canceled", err)
	}
	for _, c := range []*memConn{idleFar, idleTarget, activeFar, activeTarget} {
		c.Close()
	}
}

// TestServeIdleTimeoutTCP checks the idle timeout on real connections: an
// idle client is cut, one that sends a byte every 50 ms is not.
func TestServeIdleTimeoutTCP(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ln := listen(t)
	open, _ := memEchoOpener(t)
	f := &Forwarder{IdleTimeout: timeout}
	ctx, cancel := context.WithCancel(context.Background())
	srv := goRun(func() error { return f.Serve(ctx, ln, open) })
	defer func() {
		cancel()
		srv.wait(t, promptly, "Serve after cancel")
	}()
	start := time.Now() // before the idle connection's accept
	idle := dialTCP(t, ln.Addr().String())
	active := dialTCP(t, ln.Addr().String())
	idleDone := goRun(func() time.Duration {
		io.Copy(io.Discard, idle)
		return time.Since(start)
	})
	for time.Since(start) < 3*timeout {
		ping(t, active)
		time.Sleep(timeout / 10)
	}
	if d := idleDone.wait(t, promptly, "idle connection closed"); d < timeout {
		t.Errorf("idle connection closed after %v, before the timeout %v", d, timeout)
	}
	ping(t, active)
	if st := f.Stats(); st.IdleClosed != 1 {
		t.Errorf("stats %+v, want 1 idle closed", st)
	}
}

func TestTableVictim(t *testing.T) {
	const (
		never  = 0                       // no byte moved
		recent = int64(time.Hour) - 1000 // moved a byte just now
	)
	type spec struct {
		key  string
		last int64 // stamp of the last byte, or never
	}
	tests := []struct {
		name  string
		held  []spec // accepted in this order, stamps 1, 2, ...
		from  string
		wantI int // index in held of the victim; -1: none, wait
	}{
		{"own key on a tie", []spec{{"a", 50}, {"b", 10}}, "a", 0},
		{"busiest key", []spec{{"a", 50}, {"b", 10}, {"a", 60}, {"a", 55}}, "b", 0},
		{"never used first, oldest", []spec{{"a", 5}, {"a", never}, {"a", never}}, "a", 1},
		{"longest idle", []spec{{"a", 40}, {"a", 30}, {"a", 35}}, "c", 1},
		{"newcomer's key counts itself", []spec{{"a", 10}, {"a", 20}, {"b", 5}, {"b", 6}}, "b", 2},
		{"not while active", []spec{{"a", recent}, {"a", 30}, {"a", never}}, "a", 2},
		{"all busy: wait", []spec{{"a", recent}, {"a", recent}}, "b", -1},
		{"busiest busy: wait, not cut a lighter key", []spec{{"a", recent}, {"a", recent}, {"b", 10}}, "a", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab := newTable(len(tt.held))
			tab.base = time.Now().Add(-time.Hour) // stamps are an hour old
			var held []*pair
			for i, s := range tt.held {
				p := &pair{key: s.key, accepted: int64(i + 1)}
				p.act.base = tab.base
				p.act.last.Store(s.last)
				if v, ok, _ := tab.add(p); v != nil || !ok {
					t.Fatalf("add below the bound: victim %v, ok %v", v, ok)
				}
				held = append(held, p)
			}
			p := &pair{key: tt.from, accepted: 100}
			v, ok, retry := tab.add(p)
			if tt.wantI < 0 {
				if ok || v != nil {
					t.Fatalf("victim %+v, ok %v; want none", v, ok)
				}
				if retry <= 0 || retry > activeGrace {
					t.Errorf("retry in %v, want within activeGrace", retry)
				}
				return
			}
			if !ok || v != held[tt.wantI] {
				t.Fatalf("victim %+v (ok %v), want %+v", v, ok, held[tt.wantI])
			}
			if tab.remove(held[tt.wantI]) {
				t.Fatal("victim still held")
			}
			if !tab.remove(p) {
				t.Fatal("newcomer not held")
			}
		})
	}
}

func TestPeerKey(t *testing.T) {
	tests := []struct {
		addr net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4000}, "127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 4000}, "::1"},
		{memAddr("0A1B2C:5000"), "0A1B2C"},
		{memAddr("no-port"), "no-port"},
		{&net.UnixAddr{Name: "@", Net: "unix"}, "@"},
		{nil, "?"},
	}
	for _, tt := range tests {
		if got := peerKey(tt.addr); got != tt.want {
			t.Errorf("peerKey(%v) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}

func TestForwarderValidate(t *testing.T) {
	for _, f := range []*Forwarder{{MaxConns: -1}, {IdleTimeout: -time.Second}} {
		ln := listen(t)
		if err := f.Serve(context.Background(), ln, nil); err == nil {
			t.Errorf("Serve with %+v: no error", f)
		}
		if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
			t.Errorf("Serve with %+v left its listener open", f)
		}
	}
	if err := (&Forwarder{}).Validate(); err != nil {
		t.Errorf("zero Forwarder: %v", err)
	}
}

// lockedBuffer is a bytes.Buffer safe for concurrent log writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
