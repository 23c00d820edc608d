package daemon

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newNode starts a node on loopback UDP.
func newNode(t testing.TB, peers ...net.Addr) *mesh.Node {
	t.Helper()
	return meshtest.UDPNode(t, peers, meshtest.Timers(200*time.Millisecond, time.Second))
}

// pair starts two linked nodes; a knows b as a peer.
func pair(t testing.TB) (*mesh.Node, *mesh.Node) {
	t.Helper()
	return meshtest.UDPPair(t, meshtest.Timers(200*time.Millisecond, time.Second))
}

// serve runs a daemon server for n in a fresh directory until the test ends.
func serve(t testing.TB, n *mesh.Node) (*Server, string) {
	t.Helper()
	dir := t.TempDir()
	return serveWith(t, Config{Dir: dir, Node: n, RequestTimeout: 2 * time.Second}), dir
}

func dial(t testing.TB, path string) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func bind(t testing.TB, c *Client, port uint16) *Port {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p, err := c.Bind(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func TestSocketModeAndStatus(t *testing.T) {
	a, b := pair(t)
	srv, dir := serve(t, a)
	fi, err := os.Stat(srv.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want a socket with 0600", fi.Mode())
	}
	if pid, running := Probe(dir); !running || pid != os.Getpid() {
		t.Errorf("Probe = %d, %v; want %d, true", pid, running, os.Getpid())
	}
	c := dial(t, srv.SocketPath())
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.SID != a.SID() || st.PID != os.Getpid() || st.UDP.String() != a.LocalAddr().String() || st.Neighbours != 1 || st.Routes < 1 {
		t.Errorf("status %+v; want SID %s pid %d UDP %s, 1 neighbour", st, a.SID(), os.Getpid(), a.LocalAddr())
	}
	rs, err := c.Routes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].SID != b.SID() || rs[0].NextHop != b.SID() || rs[0].Hops != 1 || rs[0].Metric <= 0 || rs[0].MTU <= 0 {
		t.Errorf("routes %+v; want one to %s", rs, b.SID())
	}
	ns, err := c.Neighbours(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 1 || ns[0].SID != b.SID() || ns[0].Addr.String() != b.LocalAddr().String() || ns[0].Up.IsZero() {
		t.Errorf("neighbours %+v; want %s at %s", ns, b.SID(), b.LocalAddr())
	}
	if err := c.WaitReachable(ctx, b.SID()); err != nil {
		t.Errorf("WaitReachable(neighbour): %v", err)
	}
}

func TestNotRunning(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("no socket: %v, want ErrNotRunning", err)
	}
	// A socket file nobody listens on: a killed daemon's.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stale socket: %v, want ErrNotRunning", err)
	}
	// A daemon that takes the connection and dies before it answers (as
	// one does just after stop or kill -9).
	os.Remove(SocketPath(dir))
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		c, err := ln.AcceptUnix()
		if err == nil {
			c.Read(make([]byte, 1)) // the request has come; the rest is left unread
			c.Close()
		}
	}()
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("a daemon hanging up at once: %v, want ErrNotRunning", err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	// And a stale pid file with it: the next daemon takes over.
	os.WriteFile(PidPath(dir), []byte("999999\n"), 0o600)
	if _, running := Probe(dir); running {
		t.Error("Probe says running with a stale pid file")
	}
	n := newNode(t)
	srv, err := Listen(Config{Dir: dir, Node: n})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := Listen(Config{Dir: dir, Node: n}); err == nil {
		t.Fatal("second Listen in the same directory succeeded")
	} else if re := (*RunningError)(nil); !errors.As(err, &re) || re.PID != os.Getpid() {
		t.Errorf("second Listen: %v, want RunningError with pid %d", err, os.Getpid())
	}
	b, _ := os.ReadFile(PidPath(dir))
	if strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Errorf("pid file %q, want %d", b, os.Getpid())
	}
	srv.Close()
	if _, err := os.Stat(PidPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after Close: %v", err)
	}
}

func TestWaitReachableExplains(t *testing.T) {
	n := newNode(t) // no neighbours
	srv, _ := serve(t, n)
	c := dial(t, srv.SocketPath())
	var far identity.SID
	far[0] = 1
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.WaitReachable(ctx, far)
	if !errors.Is(err, mesh.ErrNoRoute) || !strings.Contains(err.Error(), "--peer") || !strings.HasPrefix(err.Error(), "daemon: ") {
		t.Errorf("WaitReachable: %v; want the mesh's no-route hint", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("WaitReachable took %v, want about 200ms", d)
	}
	// Cancelled, not timed out: at once, with the context's error.
	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel2)
	if err := c.WaitReachable(ctx2, far); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled WaitReachable: %v", err)
	}
	// Own SID: at once.
	if err := c.WaitReachable(context.Background(), n.SID()); err != nil {
		t.Errorf("WaitReachable(self): %v", err)
	}
}

func TestBindPortInUseAndUnbindOnClose(t *testing.T) {
	n := newNode(t)
	srv, _ := serve(t, n)
	c := dial(t, srv.SocketPath())
	ctx := context.Background()
	p := bind(t, c, 7)
	if got := p.LocalAddr(); got != (mesh.Addr{SID: n.SID(), Port: 7}) {
		t.Errorf("LocalAddr %v", got)
	}
	if _, err := c.Bind(ctx, 7); !errors.Is(err, mesh.ErrPortInUse) {
		t.Errorf("second bind: %v, want ErrPortInUse", err)
	}
	if _, err := n.Bind(7); !errors.Is(err, mesh.ErrPortInUse) {
		t.Errorf("node bind of a daemon-bound port: %v", err)
	}
	p.Close()
	// Close returns once the daemon has unbound: no waiting needed.
	p2, err := c.Bind(ctx, 7)
	if err != nil {
		t.Fatalf("bind after close: %v", err)
	}
	p2.Close()
	if _, _, err := p.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Close: %v", err)
	}
	if _, err := p.WriteTo([]byte("x"), mesh.Addr{SID: n.SID(), Port: 7}); !errors.Is(err, net.ErrClosed) {
		t.Errorf("WriteTo after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Port 0 picks a free one and says which.
	p3 := bind(t, c, 0)
	if p3.LocalAddr().(mesh.Addr).Port == 0 {
		t.Error("bind 0 reported port 0")
	}
	// Client.Close closes its ports.
	c.Close()
	if _, _, err := p3.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadFrom after Client.Close: %v", err)
	}
	if _, err := c.Bind(ctx, 0); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Bind after Client.Close: %v", err)
	}
}

// TestRoundTrip sends datagrams through the daemon to a second node and back.
func TestRoundTrip(t *testing.T) {
	a, b := pair(t)
	srv, _ := serve(t, a)
	c := dial(t, srv.SocketPath())
	p := bind(t, c, 0)
	pb, err := b.Bind(9)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	// The path MTU is learnt asynchronously: ask until it beats the default.
	def := p.MaxPayload(b.SID())
	if def <= 0 {
		t.Fatalf("MaxPayload %d", def)
	}
	if got := p.MaxPayload(a.SID()); got != mesh.MaxPayload {
		t.Errorf("MaxPayload(self) = %d", got)
	}

	const count = 2000
	to := mesh.Addr{SID: b.SID(), Port: 9}
	errc := make(chan error, 1)
	go func() {
		msg := make([]byte, 1000)
		for i := 0; i < count; i++ {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := p.WriteTo(msg, to); err != nil {
				errc <- err
				return
			}
		}
		errc <- nil
	}()
	buf := make([]byte, 2000)
	pb.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < count; i++ {
		k, from, err := pb.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if k != 1000 || binary.BigEndian.Uint32(buf) != uint32(i) {
			t.Fatalf("datagram %d: %d bytes, number %d", i, k, binary.BigEndian.Uint32(buf))
		}
		if from != p.LocalAddr() {
			t.Fatalf("from %v, want %v", from, p.LocalAddr())
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// And back, of every size up to the path's largest.
	p.SetReadDeadline(time.Now().Add(10 * time.Second))
	for _, size := range []int{0, 1, 1000, def} {
		msg := bytes.Repeat([]byte{byte(size)}, size)
		if _, err := pb.WriteTo(msg, p.LocalAddr()); err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		k, from, err := p.ReadFrom(buf[:cap(buf)])
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if from != to || !bytes.Equal(buf[:k], msg) {
			t.Fatalf("size %d: got %d bytes from %v", size, k, from)
		}
	}
	// A read deadline gives a timeout and leaves the connection usable.
	p.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, _, err := p.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadFrom past deadline: %v", err)
	}
	p.SetReadDeadline(time.Now().Add(5 * time.Second))
	pb.WriteTo([]byte("again"), p.LocalAddr())
	if k, _, err := p.ReadFrom(buf); err != nil || string(buf[:k]) != "again" {
		t.Fatalf("ReadFrom after a timeout: %q, %v", buf[:k], err)
	}
	// The MaxPayload answer has come in by now (ReadFrom took it): the
	// node's own figure.
	direct, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	// Answers are used for 250 ms, then asked again: within a few
	// seconds the port's figure is the node's.
	want := direct.MaxPayload(b.SID())
	for deadline := time.Now().Add(3 * time.Second); ; {
		mp := p.MaxPayload(b.SID())
		if mp == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MaxPayload %d, node says %d", mp, want)
		}
		p.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		p.ReadFrom(buf) // takes the answer in
	}
}

// TestWriteErrorsComeBack: a datagram to an unknown SID or too large for
// the path fails on the next write to that SID, with the mesh's error.
func TestWriteErrorsComeBack(t *testing.T) {
	a, b := pair(t)
	srv, _ := serve(t, a)
	c := dial(t, srv.SocketPath())
	p := bind(t, c, 0)
	var far identity.SID
	far[0] = 9
	dst := mesh.Addr{SID: far, Port: 1}
	if _, err := p.WriteTo([]byte("x"), dst); err != nil {
		t.Fatalf("first write: %v", err)
	}
	// The error travels back while ReadFrom runs: give it a moment.
	p.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	p.ReadFrom(make([]byte, 10))
	if _, err := p.WriteTo([]byte("x"), dst); !errors.Is(err, mesh.ErrNoRoute) {
		t.Errorf("write after a no-route: %v", err)
	}
	if _, err := p.WriteTo([]byte("x"), dst); err != nil {
		t.Errorf("the error is reported once: %v", err)
	}
	if _, err := p.WriteTo(make([]byte, mesh.MaxPayload+1), mesh.Addr{SID: b.SID(), Port: 1}); !errors.Is(err, mesh.ErrTooLarge) {
		t.Errorf("oversized write: %v", err)
	}
	if _, err := p.WriteTo([]byte("x"), &net.UDPAddr{}); err == nil {
		t.Error("write to a UDP address succeeded")
	}
}

// TestManyClients: many ports bound at once through one daemon, each
// echoing through the second node.
func TestManyClients(t *testing.T) {
	a, b := pair(t)
	srv, _ := serve(t, a)
	pb, err := b.Bind(5)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	go func() { // echo
		buf := make([]byte, 70000)
		for {
			k, from, err := pb.ReadFrom(buf)
			if err != nil {
				return
			}
			pb.WriteTo(buf[:k], from)
		}
	}()
	const clients, rounds = 20, 50
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, srv.SocketPath())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			p, err := c.Bind(ctx, 0)
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			p.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 100)
			for r := 0; r < rounds; r++ {
				msg := fmt.Sprintf("client %d round %d", i, r)
				if _, err := p.WriteTo([]byte(msg), mesh.Addr{SID: b.SID(), Port: 5}); err != nil {
					errs <- err
					return
				}
				k, _, err := p.ReadFrom(buf)
				if err != nil {
					errs <- fmt.Errorf("client %d round %d: %w", i, r, err)
					return
				}
				if string(buf[:k]) != msg {
					errs <- fmt.Errorf("client %d got %q, want %q", i, buf[:k], msg)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStop(t *testing.T) {
	n := newNode(t)
	dir := t.TempDir()
	srv, err := Listen(Config{Dir: dir, Node: n})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := srv.Serve(context.Background())
		n.Close()
		srv.Close()
		done <- err
	}()
	c := dial(t, srv.SocketPath())
	p := bind(t, c, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pid, err := c.Stop(ctx)
	if err != nil || pid != os.Getpid() {
		t.Fatalf("Stop: %d, %v", pid, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	// Stop returned after Close: the instance is free, the socket gone.
	if _, running := Probe(dir); running {
		t.Error("still running after Stop")
	}
	if _, err := os.Stat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v", err)
	}
	// The daemon said it was stopping before it closed the connection.
	if _, _, err := p.ReadFrom(make([]byte, 10)); !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrDaemonGone) || !errors.Is(err, ErrDaemonStopping) {
		t.Errorf("ReadFrom on a stopped daemon: %v, want ErrDaemonStopping", err)
	}
	if _, err := Dial(ctx, SocketPath(dir)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Dial after stop: %v", err)
	}
}

// TestMalformed: garbage gets an error reply or a closed connection, and
// the server goes on serving.
func TestMalformed(t *testing.T) {
	n := newNode(t)
	srv, _ := serve(t, n)
	req := func(s string) []byte { return appendFrame(nil, frameRequest, []byte(s)) }
	cases := []struct {
		name  string
		in    []byte
		reply string // substring of the error reply; "" = closed without one
	}{
		{"empty", nil, ""},
		{"short header", []byte{0, 0}, ""},
		{"zero length", []byte{0, 0, 0, 0}, "length 0"},
		{"huge length", []byte{0xff, 0xff, 0xff, 0xff, 'Q'}, "length"},
		{"truncated", []byte{0, 0, 0, 10, 'Q', '{'}, ""},
		{"not JSON", req("hello"), "request"},
		{"wrong version", req(`{"v":2,"op":"status"}`), "version"},
		{"unknown op", req(`{"v":1,"op":"format-disk"}`), "unknown op"},
		{"wait without sid", req(`{"v":1,"op":"wait","timeout_ms":10}`), "sid"},
		{"wait forever", req(`{"v":1,"op":"wait","sid":"` + strings.Repeat("A", 64) + `","timeout_ms":999999999999}`), "timeout"},
		{"bad sid", req(`{"v":1,"op":"wait","sid":"XYZ","timeout_ms":10}`), "request"},
		{"port too big", req(`{"v":1,"op":"bind","port":70000}`), "request"},
		{"advertise a bad name", req(`{"v":1,"op":"advertise","service":"a b","port":5000}`), "advertise"},
		{"advertise without a name", req(`{"v":1,"op":"advertise","port":5000}`), "advertise"},
		{"advertise at port 0", req(`{"v":1,"op":"advertise","service":"ssh"}`), "port 0"},
		{"datagram first", appendDatagram(nil, mesh.Addr{}, []byte("x")), "before a request"},
		{"bind then garbage", append(req(`{"v":1,"op":"bind","port":0}`), 0, 0, 0, 1, 'Z'), "bound"},
		{"bind then short datagram", append(req(`{"v":1,"op":"bind","port":0}`), 0, 0, 0, 2, 'D', 1), "bound"},
		{"bind then oversized", append(req(`{"v":1,"op":"bind","port":0}`), 0, 1, 0, 0, 'D'), "bound"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := rawExchange(t, srv.SocketPath(), tc.in)
			if tc.reply == "" {
				if len(out) != 0 {
					t.Errorf("got %q, want the connection closed", out)
				}
				return
			}
			if !strings.Contains(string(out), tc.reply) {
				t.Errorf("got %q, want a reply mentioning %q", out, tc.reply)
			}
		})
	}
	// Still serving, and every port bound above was unbound.
	c := dial(t, srv.SocketPath())
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Bind(32768); err != nil {
		t.Errorf("first ephemeral port still bound: %v", err)
	}
}

// rawExchange writes in to a new connection, half-closes, and returns what
// comes back until the server closes.
func rawExchange(t testing.TB, path string, in []byte) []byte {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write(in)
	conn.(*net.UnixConn).CloseWrite()
	var out bytes.Buffer
	_, err = out.ReadFrom(conn)
	if err != nil && !errors.Is(err, net.ErrClosed) && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("reading: %v (after %q)", err, out.Bytes())
	}
	return out.Bytes()
}

func TestMaxConns(t *testing.T) {
	n := newNode(t)
	dir := t.TempDir()
	srv, err := Listen(Config{Dir: dir, Node: n, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done; srv.Close() }()
	c := dial(t, srv.SocketPath())
	// The slot of a connection just closed is freed a moment later.
	for i := 0; i < 2; i++ {
		for deadline := time.Now().Add(2 * time.Second); ; {
			p, err := c.Bind(context.Background(), 0)
			if err == nil {
				defer p.Close()
				break
			}
			if !strings.Contains(err.Error(), "too many") || time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := c.Bind(context.Background(), 0); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Errorf("third connection: %v", err)
	}
}

func TestSocketPathTooLong(t *testing.T) {
	n := newNode(t)
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 120))
	if _, err := Listen(Config{Dir: dir, Node: n}); err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("Listen: %v", err)
	}
}

// TestAdvertise: services advertised by several clients of one daemon are
// all answered on the node's one discovery port, each while its client
// keeps it; the port itself is the daemon's.
func TestAdvertise(t *testing.T) {
	a, b := pair(t)
	srv, _ := serve(t, a)
	c1, c2 := dial(t, srv.SocketPath()), dial(t, srv.SocketPath())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ad1, err := c1.Advertise(ctx, "ssh", 5000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Advertise(ctx, "web", 5001); err != nil {
		t.Fatal(err)
	}
	if _, err := c2.Advertise(ctx, "bad name", 1); err == nil {
		t.Error("Advertise accepted a bad name")
	}
	if _, err := c1.Bind(ctx, discovery.Port); !errors.Is(err, mesh.ErrPortInUse) {
		t.Errorf("Bind(discovery port) through the daemon: %v, want ErrPortInUse", err)
	}
	// From the other node: every service the daemon's clients advertise.
	services := func(want int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			pc, err := b.Bind(0)
			if err != nil {
				t.Fatal(err)
			}
			fctx, fcancel := context.WithTimeout(ctx, 500*time.Millisecond)
			got, err := discovery.Find(fctx, pc, b.SID(), []mesh.Route{{SID: a.SID(), Hops: 1}}, "")
			fcancel()
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, g := range got {
				if g.SID == a.SID() {
					out = append(out, g.Service.String())
				}
			}
			// Withdrawing is asynchronous (the daemon sees the
			// connection close): allow it a moment.
			if len(out) == want || time.Now().After(deadline) {
				return out
			}
		}
	}
	if got := services(2); len(got) != 2 || got[0] != "ssh.mdp.port=5000" || got[1] != "web.mdp.port=5001" {
		t.Fatalf("services of the daemon: %v", got)
	}
	ad1.Close()
	ad1.Close()
	if got := services(1); len(got) != 1 || got[0] != "web.mdp.port=5001" {
		t.Fatalf("after one advertisement was closed: %v", got)
	}
	c2.Close() // closing the client withdraws its services too
	if got := services(0); len(got) != 0 {
		t.Fatalf("after every client closed: %v", got)
	}
}
