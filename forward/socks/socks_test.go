package socks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestConnectHTTP(t *testing.T) {
	srv := httptest.NewServer(helloHandler)
	defer srv.Close()
	ap := srv.Listener.Addr().(*net.TCPAddr).AddrPort()

	tests := []struct {
		name  string
		rules []string
		dest  Addr
	}{
		{"ipv4", []string{"127.0.0.0/8"}, ipAddr(ap)},
		{"name by CIDR rule", []string{"127.0.0.1:" + strconv.Itoa(int(ap.Port()))}, Addr{Name: "localhost", Port: ap.Port()}},
		{"name by host rule", []string{"LocalHost."}, Addr{Name: "localhost", Port: ap.Port()}},
		{"address sent as a name", []string{"127.0.0.1"}, Addr{Name: "127.0.0.1", Port: ap.Port()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startEnv(t, &Exit{Rules: mustRules(t, tt.rules...)}, nil)
			if got := httpGetVia(t, e.proxy, tt.dest); got != "hello /x" {
				t.Errorf("body %q", got)
			}
		})
	}
}

func TestConnectHTTPIPv6(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	srv := httptest.NewUnstartedServer(helloHandler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	e := startEnv(t, &Exit{Rules: mustRules(t, "[::1]:"+strconv.Itoa(int(ap.Port())))}, nil)
	if got := httpGetVia(t, e.proxy, ipAddr(ap)); got != "hello /x" {
		t.Errorf("body %q", got)
	}
	// The rule names ::1 only: the same port on 127.0.0.1 is refused.
	if _, st, err := socksDial(e.proxy, Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: ap.Port()}, "", ""); err != nil || st != NotAllowed {
		t.Errorf("CONNECT 127.0.0.1 under a ::1 rule: %v, %v; want %v", st, err, NotAllowed)
	}
}

// exchange sends data on c, half-closes, and checks that the echo is
// byte-exact.
func exchange(c net.Conn, data []byte) error {
	var wg sync.WaitGroup
	var werr error
	wg.Go(func() {
		if _, werr = c.Write(data); werr == nil {
			werr = c.(*net.TCPConn).CloseWrite()
		}
	})
	h := sha256.New()
	n, err := io.Copy(h, c)
	wg.Wait()
	if err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	if n != int64(len(data)) || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// randBytes returns n pseudo-random bytes from a logged seed.
func randBytes(t testing.TB, n int) []byte {
	seed := rand.Uint64()
	t.Logf("data seed %d", seed)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

func TestConnect16MiB(t *testing.T) {
	if testing.Short() {
		t.Skip("16 MiB transfer skipped under -short")
	}
	ap := echoServer(t, "127.0.0.1:0")
	e := startEnv(t, &Exit{Rules: mustRules(t, "127.0.0.1")}, nil)
	c := mustDial(t, e.proxy, ipAddr(ap))
	if err := exchange(c, randBytes(t, 16<<20)); err != nil {
		t.Fatal(err)
	}
}

func TestConnectParallel(t *testing.T) {
	ap := echoServer(t, "127.0.0.1:0")
	e := startEnv(t, &Exit{Rules: mustRules(t, "127.0.0.0/8:"+strconv.Itoa(int(ap.Port())))}, nil)
	data := randBytes(t, 256<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for i := range 32 {
		wg.Go(func() {
			c, st, err := socksDial(e.proxy, ipAddr(ap), "", "")
			if err == nil && st != Succeeded {
				err = errors.New(st.String())
			}
			if err == nil {
				defer c.Close()
				err = exchange(c, data[i*1024:])
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestRefusedByRules(t *testing.T) {
	ap := echoServer(t, "127.0.0.1:0")
	port := int(ap.Port())
	other := strconv.Itoa(port%65535 + 1)
	tests := []struct {
		name  string
		rules Rules
		dest  Addr
	}{
		{"zero rules", Rules{}, ipAddr(ap)},
		{"other address", mustRules(t, "10.0.0.0/8"), ipAddr(ap)},
		{"other port", mustRules(t, "127.0.0.1:"+other), ipAddr(ap)},
		{"name not in rules", mustRules(t, "example.com"), Addr{Name: "localhost", Port: ap.Port()}},
		{"name rule on another port", mustRules(t, "localhost:"+other), Addr{Name: "localhost", Port: ap.Port()}},
		{"host rule does not admit an address", mustRules(t, "localhost"), ipAddr(ap)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exit := &Exit{Rules: tt.rules}
			e := startEnv(t, exit, nil)
			c, st, err := socksDial(e.proxy, tt.dest, "", "")
			if err != nil {
				t.Fatal(err)
			}
			if c != nil {
				c.Close()
			}
			if st != NotAllowed {
				t.Fatalf("status %v, want %v", st, NotAllowed)
			}
			checkLog(t, e.exitLog, "destination refused by the rules")
			e.stop()
			// One line per refusal: Serve does not log again what Handle logged.
			if n := strings.Count(e.exitLog.String(), "level=WARN"); n != 1 {
				t.Errorf("exit log has %d warnings, want 1:\n%s", n, e.exitLog)
			}
			if st := exit.Stats(); st != (ExitStats{Streams: 1, Refused: 1}) {
				t.Errorf("exit stats %+v", st)
			}
			if st := e.srv.Stats(); st != (ServerStats{Clients: 1, ExitFailures: 1}) {
				t.Errorf("server stats %+v", st)
			}
		})
	}
}

// checkLog checks that the log holds want. The exit logs a refusal before
// it replies, so once the client has the reply the line is there.
func checkLog(t *testing.T, log *syncBuffer, want string) {
	t.Helper()
	if !strings.Contains(log.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, log)
	}
}

func TestConnectionRefused(t *testing.T) {
	exit := &Exit{Rules: mustRules(t, "127.0.0.1")}
	e := startEnv(t, exit, nil)
	if _, st, err := socksDial(e.proxy, ipAddr(closedPort(t)), "", ""); err != nil || st != ConnectionRefused {
		t.Fatalf("CONNECT to a closed port: %v, %v; want %v", st, err, ConnectionRefused)
	}
	e.stop()
	if st := exit.Stats(); st != (ExitStats{Streams: 1, Unreachable: 1}) {
		t.Errorf("exit stats %+v", st)
	}
}

func TestUnresolvableName(t *testing.T) {
	exit := &Exit{Rules: AllowAll(), Resolver: fakeResolver{"empty.test": {}}}
	e := startEnv(t, exit, nil)
	for _, name := range []string{"nowhere.test", "empty.test", "bad name"} {
		if _, st, err := socksDial(e.proxy, Addr{Name: name, Port: 80}, "", ""); err != nil || st != HostUnreachable {
			t.Errorf("CONNECT to %q: %v, %v; want %v", name, st, err, HostUnreachable)
		}
	}
}

// A name that resolves to allowed and forbidden addresses is dialled only
// at the allowed ones, and one that resolves only to forbidden addresses is
// refused without a dial.
func TestNameDialsOnlyAllowedAddresses(t *testing.T) {
	ap := echoServer(t, "127.0.0.1:0")
	var mu sync.Mutex
	var dialled []string
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	exit := &Exit{
		Rules: mustRules(t, "127.0.0.0/8"),
		Dial:  dial,
		Resolver: fakeResolver{
			"mixed.test": {netip.MustParseAddr("10.9.9.9"), netip.MustParseAddr("::ffff:127.0.0.1")},
			"evil.test":  {netip.MustParseAddr("10.9.9.9")},
		},
	}
	e := startEnv(t, exit, nil)
	c := mustDial(t, e.proxy, Addr{Name: "mixed.test", Port: ap.Port()})
	if err := exchange(c, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, st, err := socksDial(e.proxy, Addr{Name: "evil.test", Port: ap.Port()}, "", ""); err != nil || st != NotAllowed {
		t.Fatalf("CONNECT evil.test: %v, %v; want %v", st, err, NotAllowed)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{ap.String()}; !slicesEqual(dialled, want) {
		t.Errorf("dialled %v, want %v", dialled, want)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func TestAuth(t *testing.T) {
	auth, err := ParseAuth(strings.NewReader("# users\nalice:s3cret:x\nbob:pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	ap := echoServer(t, "127.0.0.1:0")
	e := startEnv(t, &Exit{Rules: AllowAll()}, auth)

	for _, bad := range [][2]string{{"alice", "s3cret"}, {"alice", "pw"}, {"mallory", "pw"}, {"bob", "pw "}} {
		if c, _, err := socksDial(e.proxy, ipAddr(ap), bad[0], bad[1]); !errors.Is(err, errAuthFailed) {
			if c != nil {
				c.Close()
			}
			t.Errorf("user %q password %q: %v, want an authentication failure", bad[0], bad[1], err)
		}
	}
	// A client that offers no authentication is turned away.
	if _, _, err := socksDial(e.proxy, ipAddr(ap), "", ""); err == nil || !strings.Contains(err.Error(), "method 0xff") {
		t.Errorf("client without auth: %v, want method 0xff", err)
	}
	c, st, err := socksDial(e.proxy, ipAddr(ap), "alice", "s3cret:x")
	if err != nil || st != Succeeded {
		t.Fatalf("right password: %v, %v", st, err)
	}
	defer c.Close()
	if err := exchange(c, []byte("authenticated")); err != nil {
		t.Fatal(err)
	}
	e.stop()
	if st := e.srv.Stats(); st != (ServerStats{Clients: 6, Connected: 1, AuthFailures: 4, BadClients: 1}) {
		t.Errorf("server stats %+v", st)
	}
}

// Malformed greetings and requests get the reply the RFC prescribes, or the
// connection is closed; the server goes on serving.
func TestMalformedClient(t *testing.T) {
	ap := echoServer(t, "127.0.0.1:0")
	e := startEnv(t, &Exit{Rules: AllowAll()}, nil)
	req := func(cmd byte, rest ...byte) []byte { return append([]byte{5, 1, 0, 5, cmd, 0}, rest...) }
	tests := []struct {
		name string
		send []byte
		want []byte // the whole response before the server closes
	}{
		{"empty", nil, nil},
		{"SOCKS4", []byte{4, 1, 0, 80, 127, 0, 0, 1, 0}, nil},
		{"HTTP", []byte("GET / HTTP/1.1\r\n\r\n"), nil},
		{"no methods", []byte{5, 0}, []byte{5, 0xff}},
		{"only user/password offered", []byte{5, 1, 2}, []byte{5, 0xff}},
		{"truncated greeting", []byte{5, 3, 0}, nil},
		{"BIND", req(2, 1, 127, 0, 0, 1, 0, 80), []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"UDP ASSOCIATE", req(3, 1, 127, 0, 0, 1, 0, 80), []byte{5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"address type 9", req(1, 9, 0), []byte{5, 0, 5, 8, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"empty name", req(1, 3, 0), []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"wrong request version", append([]byte{5, 1, 0, 4, 1, 0}, ipAddr(ap).Append(nil)...), []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"truncated request", req(1, 1, 127, 0), []byte{5, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.proxy)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(promptly))
			c.Write(tt.send)
			c.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	// Still serving.
	c := mustDial(t, e.proxy, ipAddr(ap))
	if err := exchange(c, []byte("still here")); err != nil {
		t.Fatal(err)
	}
}

// An exit sent a stream without a Request gives up after HeaderTimeout; one
// sent an unknown address type replies AddressTypeNotSupported.
func TestExitBadStreams(t *testing.T) {
	exit := &Exit{Rules: AllowAll(), HeaderTimeout: 50 * time.Millisecond}
	a, b := net.Pipe()
	defer a.Close()
	done := make(chan error, 1)
	go func() { done <- exit.Handle(t.Context(), b) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "read request") {
			t.Errorf("Handle = %v, want a read request error", err)
		}
	case <-time.After(promptly):
		t.Fatal("Handle did not give up on a silent stream")
	}

	a, b = net.Pipe()
	defer a.Close()
	go func() { done <- exit.Handle(t.Context(), b) }()
	go a.Write([]byte{Version, 7, 0, 0, 0, 0})
	rep, err := ReadReply(a)
	if err != nil || rep.Status != AddressTypeNotSupported {
		t.Errorf("reply %+v, %v; want %v", rep, err, AddressTypeNotSupported)
	}
	if err := <-done; !errors.Is(err, ErrAddrType) {
		t.Errorf("Handle = %v, want ErrAddrType", err)
	}
}

// The setup of a connection whose exit never replies ends after Timeout
// with a general failure.
func TestServerExitSilent(t *testing.T) {
	streamLn := listen(t)
	held := make(chan net.Conn, 1)
	go func() {
		if c, err := streamLn.Accept(); err == nil {
			held <- c
		}
	}()
	srv := &Server{
		Open: func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", streamLn.Addr().String())
		},
		Timeout: 100 * time.Millisecond,
	}
	client, server := net.Pipe()
	defer client.Close()
	done := make(chan error, 1)
	go func() { done <- srv.ServeConn(t.Context(), server) }()
	go func() {
		client.Write([]byte{5, 1, 0})
		client.Write(Addr{IP: netip.MustParseAddr("127.0.0.1"), Port: 1}.Append([]byte{5, 1, 0}))
	}()
	got, _ := io.ReadAll(client)
	if want := []byte{5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0}; !bytes.Equal(got, want) {
		t.Errorf("client got %v, want %v", got, want)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "setup took longer") {
		t.Errorf("ServeConn = %v, want a setup timeout", err)
	}
	(<-held).Close()
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed")
	}
	srv := httptest.NewServer(helloHandler)
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	auth, err := ParseAuth(strings.NewReader("u:p w\n"))
	if err != nil {
		t.Fatal(err)
	}
	e := startEnv(t, &Exit{Rules: mustRules(t, "localhost")}, auth)
	ctx, cancel := context.WithTimeout(t.Context(), 2*SetupTimeout)
	defer cancel()
	url := "http://localhost:" + strconv.Itoa(port) + "/curl"
	out, err := exec.CommandContext(ctx, curl, "-sS", "--noproxy", "", "--socks5-hostname", e.proxy,
		"--proxy-user", "u:p w", url).CombinedOutput()
	if err != nil || string(out) != "hello /curl" {
		t.Errorf("curl: %v: %q", err, out)
	}
	// Refused by the rules: curl reports the SOCKS error.
	out, err = exec.CommandContext(ctx, curl, "-sS", "--noproxy", "", "--socks5-hostname", e.proxy,
		"--proxy-user", "u:p w", "http://127.0.0.1:"+strconv.Itoa(port)+"/").CombinedOutput()
	if err == nil {
		t.Errorf("curl to a refused destination succeeded: %q", out)
	}
	t.Logf("curl to a refused destination: %s", bytes.TrimSpace(out))
	checkLog(t, e.exitLog, "destination refused by the rules")
}

// A dial that does not complete within DialTimeout is answered TTLExpired.
func TestDialTimeout(t *testing.T) {
	dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: ctx.Err()}
	}
	e := startEnv(t, &Exit{Rules: AllowAll(), Dial: dial, DialTimeout: 50 * time.Millisecond}, nil)
	if _, st, err := socksDial(e.proxy, Addr{IP: netip.MustParseAddr("192.0.2.1"), Port: 80}, "", ""); err != nil || st != TTLExpired {
		t.Fatalf("CONNECT with a dial that times out: %v, %v; want %v", st, err, TTLExpired)
	}
}

// Cancelling the context ends open connections and both Serve calls.
func TestCancelEndsConnections(t *testing.T) {
	ap := echoServer(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	streamLn := listen(t)
	exit := &Exit{Rules: AllowAll()}
	srv := &Server{Open: func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", streamLn.Addr().String())
	}}
	proxyLn := listen(t)
	var wg sync.WaitGroup
	wg.Go(func() { exit.Serve(ctx, func(context.Context) (net.Conn, error) { return streamLn.Accept() }) })
	srvDone := make(chan error, 1)
	wg.Go(func() { srvDone <- srv.Serve(ctx, proxyLn) })
	c := mustDial(t, proxyLn.Addr().String(), ipAddr(ap))
	cancel()
	streamLn.Close()
	c.SetReadDeadline(time.Now().Add(promptly))
	if _, err := io.Copy(io.Discard, c); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client connection did not end: %v", err)
	}
	if err := <-srvDone; !errors.Is(err, context.Canceled) {
		t.Errorf("Server.Serve = %v, want context.Canceled", err)
	}
	wg.Wait()
}
