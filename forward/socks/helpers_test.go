package socks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// promptly bounds how long a test waits for something that should happen
// at once. It is a deadline on a blocking wait, never a sleep.
const promptly = 5 * time.Second

// listen returns a TCP listener on 127.0.0.1:0, closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// syncBuffer is a bytes.Buffer safe for concurrent use, for logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// env is a SOCKS server whose streams are loopback TCP connections to an
// Exit, standing in for MSP streams.
type env struct {
	proxy   string      // the SOCKS server's address
	exitLog *syncBuffer // what the exit logged
	srv     *Server
	// stop ends both Serve calls and waits for every connection to end,
	// so that counters are final; it also runs at cleanup.
	stop func()
}

// startEnv runs exit behind a SOCKS server with auth until cleanup.
func startEnv(t *testing.T, exit *Exit, auth *Auth) env {
	t.Helper()
	e := env{exitLog: new(syncBuffer)}
	if exit.Logger == nil {
		exit.Logger = slog.New(slog.NewTextHandler(e.exitLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	streamLn := listen(t)
	proxyLn := listen(t)
	e.proxy = proxyLn.Addr().String()
	e.srv = &Server{
		Open: func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", streamLn.Addr().String())
		},
		Auth: auth,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var exitErr, srvErr error
	wg.Go(func() {
		exitErr = exit.Serve(ctx, func(context.Context) (net.Conn, error) { return streamLn.Accept() })
	})
	wg.Go(func() { srvErr = e.srv.Serve(ctx, proxyLn) })
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			streamLn.Close()
			wg.Wait()
		})
	}
	t.Cleanup(func() {
		e.stop()
		if exitErr != nil && !errors.Is(exitErr, context.Canceled) {
			t.Errorf("Exit.Serve = %v", exitErr)
		}
		if !errors.Is(srvErr, context.Canceled) {
			t.Errorf("Server.Serve = %v, want context.Canceled", srvErr)
		}
	})
	return e
}

// errAuthFailed is what socksDial returns when the server refuses the
// username and password.
var errAuthFailed = errors.New("authentication failed")

// socksDial connects to dest through the SOCKS5 server at proxy, with
// username/password authentication if user is not empty, and returns the
// connection (nil unless the server replied Succeeded) and the reply code.
func socksDial(proxy string, dest Addr, user, pass string) (net.Conn, Status, error) {
	c, err := net.DialTimeout("tcp", proxy, promptly)
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(2 * SetupTimeout))
	fail := func(err error) (net.Conn, Status, error) {
		c.Close()
		return nil, 0, err
	}
	method := byte(methodNoAuth)
	if user != "" {
		method = methodUserPass
	}
	if _, err := c.Write([]byte{socksVersion, 1, method}); err != nil {
		return fail(err)
	}
	var b [2]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return fail(fmt.Errorf("read method: %w", err))
	}
	if b != [2]byte{socksVersion, method} {
		return fail(fmt.Errorf("server chose method %#x", b[1]))
	}
	if user != "" {
		msg := append([]byte{userPassVersion, byte(len(user))}, user...)
		msg = append(append(msg, byte(len(pass))), pass...)
		if _, err := c.Write(msg); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return fail(fmt.Errorf("read auth status: %w", err))
		}
		if b[0] != userPassVersion || b[1] != userPassSuccess {
			return fail(fmt.Errorf("%w: status %d", errAuthFailed, b[1]))
		}
	}
	if _, err := c.Write(dest.Append([]byte{socksVersion, cmdConnect, 0})); err != nil {
		return fail(err)
	}
	rep, err := readMessage(c, socksRequestHead)
	if err != nil {
		return fail(fmt.Errorf("read reply: %w", err))
	}
	if rep[0] != socksVersion || rep[2] != 0 {
		return fail(fmt.Errorf("bad reply %x", rep))
	}
	if st := Status(rep[1]); st != Succeeded {
		c.Close()
		return nil, st, nil
	}
	c.SetDeadline(time.Time{})
	return c, Succeeded, nil
}

// mustDial is socksDial that fails the test unless the reply is Succeeded.
func mustDial(t testing.TB, proxy string, dest Addr) net.Conn {
	t.Helper()
	c, st, err := socksDial(proxy, dest, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if st != Succeeded {
		t.Fatalf("CONNECT %s: %s", dest, st)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// httpGetVia fetches / from the HTTP server at dest through the proxy.
func httpGetVia(t *testing.T, proxy string, dest Addr) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		c, st, err := socksDial(proxy, dest, "", "")
		if err == nil && st != Succeeded {
			err = fmt.Errorf("CONNECT %s: %s", dest, st)
		}
		return c, err
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 2 * SetupTimeout}).Get("http://servald.test/x")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// helloHandler answers "hello" and the path.
var helloHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "hello "+r.URL.Path)
})

// echoServer runs a TCP echo server (with half-close) on addr ("127.0.0.1:0")
// until cleanup and returns its address.
func echoServer(t *testing.T, addr string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				c.Close()
			})
		}
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// closedPort returns a loopback address where nothing listens.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// ipAddr is the Addr of ap.
func ipAddr(ap netip.AddrPort) Addr { return Addr{IP: ap.Addr(), Port: ap.Port()} }

// mustRules parses rules or fails the test.
func mustRules(t testing.TB, specs ...string) Rules {
	t.Helper()
	r, err := ParseRules(specs)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// fakeResolver resolves names from a map, and fails for others as a DNS
// server would.
type fakeResolver map[string][]netip.Addr

func (f fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := f[strings.ToLower(host)]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}
