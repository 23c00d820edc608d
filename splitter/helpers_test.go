package splitter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// testConfig is DefaultConfig with timers suited to tests.
func testConfig() Config {
	c := DefaultConfig()
	c.PeerTimeout = 3 * time.Second
	c.HandshakeTimeout = 2 * time.Second
	return c
}

// listen starts a Listener on 127.0.0.1:0 closed at the end of the test.
func listen(t testing.TB, cfg Config) *Listener {
	t.Helper()
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// pair opens a session to ln at addr (which may be a relay in front of
// ln) and returns both ends, closed at the end of the test.
func pair(t testing.TB, ln *Listener, addr string, cfg Config) (client, server *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	type res struct {
		c   *Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.AcceptContext(ctx)
		ch <- res{c, err}
	}()
	client, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		client.Close()
		t.Fatal(r.err)
	}
	server = r.c
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// waitLive waits until c has n live connections.
func waitLive(t testing.TB, c *Conn, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().ConnsLive < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d connections live", c.Stats().ConnsLive, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pattern is a deterministic byte stream: the same seed gives the same bytes.
type pattern struct{ r *rand.ChaCha8 }

func newPattern(seed uint64) *pattern {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return &pattern{rand.NewChaCha8(s)}
}

func (p *pattern) Read(b []byte) (int, error) { return p.r.Read(b) }

// sendPattern writes n bytes of the pattern seed to w in chunks of
// random sizes, then calls CloseWrite.
func sendPattern(w *Conn, seed uint64, n int64) error {
	p := newPattern(seed)
	buf := make([]byte, 256<<10)
	rng := rand.New(rand.NewPCG(seed, 1))
	for n > 0 {
		k := min(int64(1+rng.IntN(len(buf))), n)
		p.Read(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		n -= k
	}
	return w.CloseWrite()
}

// progress records the largest pause between reads that returned data.
type progress struct {
	mu     sync.Mutex
	last   time.Time
	maxGap time.Duration
	at     time.Time // when the largest gap ended
	times  []time.Time
	bytes  atomic.Int64
	// slow readers: sleep pause after every `every` bytes
	every int64
	pause time.Duration
}

func (p *progress) note(n int) {
	now := time.Now()
	p.mu.Lock()
	if !p.last.IsZero() {
		if g := now.Sub(p.last); g > p.maxGap {
			p.maxGap, p.at = g, now
		}
	}
	p.last = now
	p.times = append(p.times, now)
	p.mu.Unlock()
	if b := p.bytes.Add(int64(n)); p.every > 0 && b/p.every != (b-int64(n))/p.every {
		time.Sleep(p.pause)
	}
}

// gapIn returns the longest time without progress that overlaps [from, to].
func (p *progress) gapIn(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	var g time.Duration
	for i := 1; i < len(p.times); i++ {
		a, b := p.times[i-1], p.times[i]
		if b.Before(from) || a.After(to) {
			continue
		}
		g = max(g, b.Sub(a))
	}
	return g
}

func (p *progress) gap() (time.Duration, time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.maxGap, p.at
}

// recvPattern reads r to EOF and checks it is exactly n bytes of the pattern seed.
func recvPattern(r *Conn, seed uint64, n int64, prog *progress) error {
	p := newPattern(seed)
	buf := make([]byte, 64<<10)
	want := make([]byte, len(buf))
	var got int64
	for {
		k, err := r.Read(buf)
		if k > 0 {
			p.Read(want[:k])
			if !bytes.Equal(buf[:k], want[:k]) {
				i := 0
				for buf[i] == want[i] {
					i++
				}
				return fmt.Errorf("stream differs at byte %d", got+int64(i))
			}
			got += int64(k)
			if prog != nil {
				prog.note(k)
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read after %d bytes: %w", got, err)
		}
	}
	if got != n {
		return fmt.Errorf("got %d bytes, want %d", got, n)
	}
	return nil
}

// transfer sends n pattern bytes from a to b (and, if both, n from b to a)
// and checks them.
func transfer(t testing.TB, a, b *Conn, n int64, both bool, prog *progress) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs <- err
			}
		}()
	}
	run(func() error { return sendPattern(a, 1, n) })
	run(func() error { return recvPattern(b, 1, n, prog) })
	if both {
		run(func() error { return sendPattern(b, 2, n) })
		run(func() error { return recvPattern(a, 2, n, nil) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// relay is a TCP proxy between clients and a target that can reset,
// stall and rate-limit the connections it carries.
type relay struct {
	t      testing.TB
	ln     net.Listener
	target string
	rate   float64 // bytes per second per connection and direction; 0: unlimited

	accepts   atomic.Int64 // connections accepted
	reject    atomic.Bool  // close new connections at once
	killAfter atomic.Int64 // if set, new connections are closed after this many nanoseconds

	mu     sync.Mutex
	conns  []*relayConn
	closed bool
	wg     sync.WaitGroup
}

type relayConn struct {
	a, b    net.Conn // client side, target side
	stall   chan struct{}
	stalled atomic.Bool
	dead    atomic.Bool
}

func newRelay(t testing.TB, target string, rate float64) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, target: target, rate: rate}
	r.wg.Add(1)
	go r.serve()
	t.Cleanup(r.Close)
	return r
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	defer r.wg.Done()
	for {
		a, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.accepts.Add(1)
		if r.reject.Load() {
			a.Close()
			continue
		}
		b, err := net.Dial("tcp", r.target)
		if err != nil {
			a.Close()
			continue
		}
		if d := r.killAfter.Load(); d > 0 {
			a.SetDeadline(time.Now().Add(time.Duration(d)))
			b.SetDeadline(time.Now().Add(time.Duration(d)))
		}
		rc := &relayConn{a: a, b: b, stall: make(chan struct{})}
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			a.Close()
			b.Close()
			return
		}
		r.conns = append(r.conns, rc)
		r.wg.Add(2)
		r.mu.Unlock()
		go r.pipe(rc, a, b)
		go r.pipe(rc, b, a)
	}
}

func (r *relay) pipe(rc *relayConn, src, dst net.Conn) {
	defer r.wg.Done()
	defer func() {
		rc.dead.Store(true)
		src.Close()
		dst.Close()
	}()
	buf := make([]byte, 16<<10)
	chunk := len(buf)
	if r.rate > 0 {
		chunk = min(chunk, max(int(r.rate/100), 512))
	}
	tokens, burst := 0.0, float64(chunk)
	last := time.Now()
	for {
		n, err := src.Read(buf[:chunk])
		if n > 0 {
			if rc.stalled.Load() {
				<-rc.stall // closed by Close
				return
			}
			if r.rate > 0 {
				now := time.Now()
				tokens = min(burst, tokens+now.Sub(last).Seconds()*r.rate)
				last = now
				if need := float64(n) - tokens; need > 0 {
					time.Sleep(time.Duration(need / r.rate * float64(time.Second)))
					now = time.Now()
					tokens = min(burst, tokens+now.Sub(last).Seconds()*r.rate)
					last = now
				}
				tokens -= float64(n)
			}
			if rc.stalled.Load() {
				<-rc.stall
				return
			}
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			if rc.stalled.Load() {
				<-rc.stall // a stalled path does not carry the close either
			}
			return
		}
	}
}

// live returns the indices of connections that are still up.
func (r *relay) live() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	var idx []int
	for i, rc := range r.conns {
		if !rc.dead.Load() && !rc.stalled.Load() {
			idx = append(idx, i)
		}
	}
	return idx
}

// reset aborts connection i with a TCP reset on both sides.
func (r *relay) reset(i int) {
	r.mu.Lock()
	rc := r.conns[i]
	r.mu.Unlock()
	for _, c := range []net.Conn{rc.a, rc.b} {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}

// resetAll resets every connection.
func (r *relay) resetAll() {
	r.mu.Lock()
	n := len(r.conns)
	r.mu.Unlock()
	for i := range n {
		r.reset(i)
	}
}

// stallConn stops forwarding on connection i in both directions without
// closing it.
func (r *relay) stallConn(i int) {
	r.mu.Lock()
	r.conns[i].stalled.Store(true)
	r.mu.Unlock()
}

// Close stops the relay and closes every connection.
func (r *relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.ln.Close()
	for _, rc := range r.conns {
		close(rc.stall)
		rc.a.Close()
		rc.b.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// fdCount returns the number of open file descriptors of this process.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count fds: %v", err)
	}
	return len(ents)
}
