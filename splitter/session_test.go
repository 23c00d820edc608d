package splitter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// refusals collects the errors a Listener reports through OnRefused.
type refusals struct {
	mu   sync.Mutex
	errs []error
}

func (r *refusals) add(err error) {
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *refusals) wait(t *testing.T, n int) []error {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r.mu.Lock()
		errs := append([]error(nil), r.errs...)
		r.mu.Unlock()
		if len(errs) >= n || time.Now().After(deadline) {
			return errs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNegotiationMismatch(t *testing.T) {
	tests := []struct {
		name       string
		mod        func(*Config)
		param      string
		clientWant string
		serverWant string
	}{
		{"fec", func(c *Config) { c.DataShards, c.ParityShards = 8, 2 }, "fec",
			"splitter: peer refused: fec mismatch: local 10:3, peer 8:2",
			"fec mismatch: local 8:2, peer 10:3"},
		{"fec off", func(c *Config) { c.DataShards, c.ParityShards = 0, 0 }, "fec",
			"splitter: peer refused: fec mismatch: local 10:3, peer 0:0",
			"fec mismatch: local 0:0, peer 10:3"},
		{"payload", func(c *Config) { c.PayloadSize = 8192 }, "payload size",
			"splitter: peer refused: payload size mismatch: local 16384, peer 8192",
			"payload size mismatch: local 8192, peer 16384"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got refusals
			scfg := testConfig()
			tt.mod(&scfg)
			scfg.OnRefused = got.add
			ln := listen(t, scfg)

			_, err := Dial(context.Background(), ln.Addr().String(), testConfig())
			var ne *NegotiationError
			if !errors.As(err, &ne) || !ne.ByPeer || ne.Param != tt.param {
				t.Fatalf("Dial = %v, want a NegotiationError on %s", err, tt.param)
			}
			if err.Error() != tt.clientWant {
				t.Errorf("client error %q, want %q", err, tt.clientWant)
			}
			errs := got.wait(t, 1)
			if len(errs) != 1 {
				t.Fatalf("listener reported %d refusals, want 1", len(errs))
			}
			if !errors.As(errs[0], &ne) || ne.ByPeer || !strings.Contains(errs[0].Error(), tt.serverWant) {
				t.Errorf("listener error %q, want a NegotiationError containing %q", errs[0], tt.serverWant)
			}
			if st := ln.Stats(); st.SessionsRefused != 1 || st.SessionsAccepted != 0 {
				t.Errorf("listener stats %+v", st)
			}
		})
	}
}

// rawHello sends a hand-made hello and returns the reply.
func rawHello(t *testing.T, addr string, h wire.Hello) wire.Reply {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	r, err := exchange(c, h)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestVersionMismatch(t *testing.T) {
	var got refusals
	cfg := testConfig()
	cfg.OnRefused = got.add
	ln := listen(t, cfg)
	// A newer peer: the listener must answer in a form any version reads.
	h := wire.Hello{Version: wire.Version + 1, Kind: wire.KindNew, Params: cfg.params(), Window: 8}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	c.Write(wire.AppendHello(nil, h))
	buf := make([]byte, 300)
	n, _ := io.ReadAtLeast(c, buf, wire.HelloPrefixLen+9)
	r, _, err := wire.ParseReply(buf[:n])
	if err != nil || r.Status != wire.StatusRefused || r.Code != wire.RefuseVersion {
		t.Fatalf("reply %+v, %v; want a version refusal", r, err)
	}
	// As the newer peer would see it (its local version is ours + 1).
	e := refusalError(r, cfg.params(), "x").(*NegotiationError)
	if e.Param != "version" || e.Peer != strconv.Itoa(wire.Version) {
		t.Errorf("refusal %+v", e)
	}
	errs := got.wait(t, 1)
	if len(errs) != 1 || errs[0].Error() != fmt.Sprintf("splitter: refused session from %s: version mismatch: local %d, peer %d", c.LocalAddr(), wire.Version, wire.Version+1) {
		t.Errorf("listener reported %v", errs)
	}
}

func TestJoinNeedsToken(t *testing.T) {
	var got refusals
	cfg := testConfig()
	cfg.Conns = 2
	cfg.OnRefused = got.add
	ln := listen(t, cfg)
	c, _ := pair(t, ln, ln.Addr().String(), cfg)
	waitLive(t, c, 2)

	base := wire.Hello{Version: wire.Version, Kind: wire.KindJoin, Params: cfg.params(), Session: c.SessionID()}
	tests := []struct {
		name string
		mod  func(*wire.Hello)
		code uint8
	}{
		{"bad token", func(h *wire.Hello) { h.Token = c.token; h.Token[0] ^= 1 }, wire.RefuseBadToken},
		{"no token", func(h *wire.Hello) {}, wire.RefuseBadToken},
		{"unknown session", func(h *wire.Hello) { h.Session ^= 1; h.Token = c.token }, wire.RefuseUnknownSession},
	}
	for i, tt := range tests {
		h := base
		tt.mod(&h)
		r := rawHello(t, ln.Addr().String(), h)
		if r.Status != wire.StatusRefused || r.Code != tt.code {
			t.Errorf("%s: reply %+v, want refusal code %d", tt.name, r, tt.code)
		}
		if errs := got.wait(t, i+1); len(errs) != i+1 {
			t.Errorf("%s: refusal not reported", tt.name)
		}
	}
	// The right token joins (up to MaxConns).
	h := base
	h.Token = c.token
	if r := rawHello(t, ln.Addr().String(), h); r.Status != wire.StatusOK || r.Session != c.SessionID() {
		t.Errorf("join with the token: %+v", r)
	}
	if st := ln.Stats(); st.JoinsRefused != 3 {
		t.Errorf("JoinsRefused = %d, want 3", st.JoinsRefused)
	}
}

func TestListenerGarbage(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 200 * time.Millisecond
	ln := listen(t, cfg)
	for _, junk := range []string{"GET / HTTP/1.1\r\n\r\n", wire.Magic + string([]byte{wire.Version, 7, 0, 0}), ""} {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(junk))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c) // the listener closes it
		c.Close()
	}
	// The listener still works.
	cl, _ := pair(t, ln, ln.Addr().String(), cfg)
	if _, err := cl.Write([]byte("ok")); err != nil {
		t.Fatal(err)
	}
	if st := ln.Stats(); st.HandshakeErrors != 3 {
		t.Errorf("HandshakeErrors = %d, want 3", st.HandshakeErrors)
	}
}

func TestListenerClose(t *testing.T) {
	cfg := testConfig()
	cfg.Conns = 2
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	// A session nobody accepted is closed with the listener.
	c, err := Dial(context.Background(), ln.Addr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	errc := make(chan error, 1)
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	<-errc // the queued session
	go func() {
		_, err := ln.Accept()
		errc <- err
	}()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
	if _, err := Dial(context.Background(), ln.Addr().String(), cfg); err == nil {
		t.Error("Dial to a closed listener succeeded")
	}
}

func TestAcceptBacklog(t *testing.T) {
	cfg := testConfig()
	cfg.Conns = 1
	cfg.AcceptBacklog = 2
	var got refusals
	cfg.OnRefused = got.add
	ln := listen(t, cfg)
	for i := range 2 {
		c, err := Dial(context.Background(), ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		defer c.Close()
	}
	_, err := Dial(context.Background(), ln.Addr().String(), cfg)
	var re *RefusedError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "backlog") {
		t.Fatalf("third Dial = %v, want a backlog refusal", err)
	}
	for range 2 {
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
	}
}

// TestNoLeaks opens and closes 1000 sessions (with a little data each way)
// and checks that goroutines and file descriptors return to where they
// were.
func TestNoLeaks(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	cfg := testConfig()
	cfg.Conns = 3
	cfg.Linger = time.Second
	ln := listen(t, cfg)
	runtime.GC()
	baseG := runtime.NumGoroutine()
	baseFD := fdCount(t)

	ctx := context.Background()
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	for i := range n {
		acc := make(chan *Conn, 1)
		go func() {
			s, err := ln.AcceptContext(ctx)
			if err != nil {
				t.Error(err)
			}
			acc <- s
		}()
		c, err := Dial(ctx, ln.Addr().String(), cfg)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		s := <-acc
		if s == nil {
			t.FailNow()
		}
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, buf); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		if i%2 == 0 {
			// Half the time the server closes first.
			s, c = c, s
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		g, fd := runtime.NumGoroutine(), fdCount(t)
		if g <= baseG && fd <= baseFD {
			t.Logf("%d sessions: goroutines %d (baseline %d), fds %d (baseline %d)", n, g, baseG, fd, baseFD)
			break
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("after %d sessions: %d goroutines (baseline %d), %d fds (baseline %d)\n%s",
				n, g, baseG, fd, baseFD, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
	st := ln.Stats()
	if st.SessionsAccepted != uint64(n) || st.SessionsLive != 0 {
		t.Errorf("listener stats %+v, want %d accepted, 0 live", st, n)
	}
	// The listener's totals keep the counters of ended sessions.
	if want := uint64(n * len(msg)); st.Sessions.BytesReceived != want || st.Sessions.ConnsLive != 0 {
		t.Errorf("listener session totals %+v, want %d bytes received, 0 connections live", st.Sessions, want)
	}
}

// slowReplyListener delays, after the reply, the handling of the first
// connection it accepts: the client's joins then arrive before the
// listener has attached that connection to its new session.
type slowReplyListener struct {
	net.Listener
	n atomic.Int32
}

func (l *slowReplyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil && l.n.Add(1) == 1 {
		return &slowReplyConn{Conn: c}, nil
	}
	return c, err
}

type slowReplyConn struct {
	net.Conn
	once sync.Once
}

func (c *slowReplyConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.once.Do(func() { time.Sleep(300 * time.Millisecond) })
	return n, err
}

// TestFirstConnectionKeepsItsSlot: joins racing the first connection of
// a session cannot take the last slot from it (the session would be
// dropped after the client was told it exists).
func TestFirstConnectionKeepsItsSlot(t *testing.T) {
	scfg := testConfig()
	scfg.Conns, scfg.MaxConns = 1, 1
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := NewListener(&slowReplyListener{Listener: tl}, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg := testConfig()
	cfg.Conns = 2
	c, s := pair(t, ln, ln.Addr().String(), cfg)
	transfer(t, c, s, 1<<20, true, nil)
	if n := s.Stats().ConnsLive; n != 1 {
		t.Errorf("server session has %d connections, cap 1", n)
	}
	if st := ln.Stats(); st.JoinsRefused == 0 {
		t.Errorf("no join refused: %+v", st)
	}
}

// TestServerClosesAtOnce: a listener that closes a session while the
// client's other connections are still joining: the client reads io.EOF
// (a clean end), not the refusal of a join to a session that is gone.
func TestServerClosesAtOnce(t *testing.T) {
	cfg := testConfig()
	ln := listen(t, cfg)
	for i := range 20 {
		c, s := pair(t, ln, ln.Addr().String(), cfg)
		s.Close()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("session %d: client Read = %d, %v; want 0, EOF", i, n, err)
		}
		c.Close()
	}
}
