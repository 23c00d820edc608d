package forward

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		{"22", Endpoint{"tcp", "127.0.0.1:22"}, ""},
		{"[::1]:80", Endpoint{"tcp", "[::1]:80"}, ""},
		{"unix:/run/x.sock", Endpoint{"unix", "/run/x.sock"}, ""},
		{"unix:rel/x", Endpoint{"unix", "rel/x"}, ""},
		{"unix:", Endpoint{}, "empty path"},
		{"unix", Endpoint{}, "bad TCP port"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEndpoint(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, err := ParseEndpoint(got.String()); err != nil || back != got {
			t.Errorf("ParseEndpoint(%q.String()) = %v, %v", tt.in, back, err)
		}
	}
}

// sockPath returns a path for a socket in a fresh directory.
func sockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "s.sock")
}

// httpGet fetches http://servald/ through a connection made by dial and
// returns the body.
func httpGet(t *testing.T, dial func(ctx context.Context) (net.Conn, error)) string {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://servald/")
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

func helloHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.URL.Path) })
}

// A client on a Unix socket is forwarded to an HTTP server on TCP.
func TestServeUnixListenerToTCP(t *testing.T) {
	srv := httptest.NewServer(helloHandler())
	defer srv.Close()
	path := sockPath(t)
	ep, err := ParseEndpoint("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ep.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("directory holds %d entries after listen, want only the socket", len(entries))
	}

	ctx, cancel := context.WithCancel(t.Context())
	open := func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
	}
	served := goRun(func() error { return Serve(ctx, ln, open, false, nil) })
	body := httpGet(t, func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	})
	if body != "hello /" {
		t.Errorf("body %q", body)
	}
	cancel()
	if err := served.wait(t, promptly, "Serve"); !errors.Is(err, context.Canceled) {
		t.Errorf("Serve = %v, want context.Canceled", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Serve closed the listener: %v", err)
	}
}

// A tunnelled stream is forwarded to an HTTP server on a Unix socket.
func TestServeStreamsToUnixTarget(t *testing.T) {
	path := sockPath(t)
	uln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(helloHandler())
	srv.Listener = uln
	srv.Start()
	defer srv.Close()

	ep, err := ParseEndpoint("unix:" + path)
	if err != nil {
		t.Fatal(err)
	}
	streams := make(chan net.Conn)
	accept := func(ctx context.Context) (net.Conn, error) {
		select {
		case c := <-streams:
			return c, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := goRun(func() error { return ServeStreamsTo(ctx, accept, ep, false, nil, nil) })
	body := httpGet(t, func(context.Context) (net.Conn, error) {
		a, b := memPair()
		streams <- b
		return a, nil
	})
	if body != "hello /" {
		t.Errorf("body %q", body)
	}
	cancel()
	if err := served.wait(t, promptly, "ServeStreamsTo"); !errors.Is(err, context.Canceled) {
		t.Errorf("ServeStreamsTo = %v, want context.Canceled", err)
	}
}

func TestListenUnixRefusesRegularFile(t *testing.T) {
	path := sockPath(t)
	if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	ln, err := ListenUnix(t.Context(), path)
	if err == nil {
		ln.Close()
		t.Fatal("ListenUnix over a regular file succeeded")
	}
	if !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("error %q does not say the path is not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "keep me" {
		t.Errorf("file changed: %q, %v", b, err)
	}
}

func TestListenUnixRefusesSocketInUse(t *testing.T) {
	path := sockPath(t)
	first, err := ListenUnix(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	ln, err := ListenUnix(t.Context(), path)
	if err == nil {
		ln.Close()
		t.Fatal("second ListenUnix on a socket in use succeeded")
	}
	if !strings.Contains(err.Error(), "in use") {
		t.Errorf("error %q does not say the socket is in use", err)
	}
	// The first listener still works.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("first listener's socket gone: %v", err)
	}
	c.Close()
}

func TestListenUnixReplacesStaleSocket(t *testing.T) {
	path := sockPath(t)
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // as a killed process leaves it
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("no stale socket to test with: %v", err)
	}

	ln, err := ListenUnix(t.Context(), path)
	if err != nil {
		t.Fatalf("ListenUnix over a stale socket: %v", err)
	}
	accepted := goRun(func() error {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		return err
	})
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := accepted.wait(t, promptly, "Accept"); err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ln.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v, want net.ErrClosed", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

// Close leaves alone a file that has replaced the socket.
func TestUnixListenerCloseKeepsReplacement(t *testing.T) {
	path := sockPath(t)
	ln, err := ListenUnix(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if b, err := os.ReadFile(path); err != nil || string(b) != "new" {
		t.Errorf("replacement changed: %q, %v", b, err)
	}
}

// A TCP port taken by another socket is refused in words, as EADDRINUSE.
func TestEndpointListenInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	ln, err := Endpoint{Network: "tcp", Addr: busy.Addr().String()}.Listen(t.Context())
	if err == nil {
		ln.Close()
		t.Fatal("listened on a port in use")
	}
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "TCP port "+busy.Addr().String()+" is in use") {
		t.Errorf("error %q, want one saying the port is in use (EADDRINUSE)", err)
	}
}
