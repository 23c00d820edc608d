package main

// End-to-end tests of the plain split tunnel with real servald processes
// on loopback: split connect -> (N TCP connections) -> split listen.

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// startSplitCmdListen runs `servald split listen` with args on
// 127.0.0.1:0 and returns it with the address it listens on.
func startSplitCmdListen(t testing.TB, stdin io.Reader, stdout io.Writer, args ...string) (*proc, string) {
	t.Helper()
	p := start(t, stdin, stdout, append(append([]string{"split", "listen"}, args...), "127.0.0.1:0")...)
	m := p.waitLine(`split listening on TCP (127\.0\.0\.1:\d+)`)
	return p, m[1]
}

// startSplitCmdTunnel runs split listen --forward=target and split
// connect --forward to it on a free local port, with the flags both on
// both and connectOnly on connect, and returns both processes with that
// port's address.
func startSplitCmdTunnel(t testing.TB, target string, both []string, connectOnly ...string) (l, c *proc, addr string) {
	t.Helper()
	l, laddr := startSplitCmdListen(t, nil, nil, append([]string{"--forward", target}, both...)...)
	port := freePort(t)
	args := append([]string{"split", "connect", "--forward", strconv.Itoa(port)}, both...)
	c = start(t, nil, nil, append(append(args, connectOnly...), laddr)...)
	c.waitLine(`forwarding TCP`)
	return l, c, fmt.Sprintf("127.0.0.1:%d", port)
}

// TestSplitCmdForward: 20 concurrent TCP connections through split
// connect/listen --forward each echo 1 MiB byte-exact; then, through a
// --once pair with -v, 64 MiB arrive with the same SHA-256, both sides
// exit 0 once that connection has closed and print their counters.
func TestSplitCmdForward(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	_, _, addr := startSplitCmdTunnel(t, strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), []string{"--fec=4:2", "--payload=8192"}, "--conns=4")
	const conns, size = 20, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- echoOnce(addr, size)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	l, c, addr := startSplitCmdTunnel(t, strconv.Itoa(sink.Addr().(*net.TCPAddr).Port), []string{"--once", "-v"})
	sendToSink(t, addr, sink, 64<<20)
	c.exitsZero(30*time.Second, "connect --once")
	l.exitsZero(30*time.Second, "listen --once")
	cc, lc := splitCounters(t, c.stderr.String()), splitCounters(t, l.stderr.String())
	t.Logf("connect: %v; listen: %v", cc, lc)
	if cc["sessions"] != 1 || lc["sessions"] != 1 || cc["connections opened"] < 8 {
		t.Errorf("counters: connect %v, listen %v: want 1 session each, 8 connections", cc, lc)
	}
}

// TestSplitCmdHalfClose: a TCP client that half-closes still receives the
// whole reply of a service that answers only after the request's end.
func TestSplitCmdHalfClose(t *testing.T) {
	t.Parallel()
	svc, reply := replyService(t)
	_, _, addr := startSplitCmdTunnel(t, strconv.Itoa(svc.Addr().(*net.TCPAddr).Port), nil)
	halfCloseReply(t, addr, reply)
}

// TestSplitCmdStdio moves 8 MiB through stdin/stdout in each direction;
// the side that sends nothing half-closes at once and still receives it
// all.
func TestSplitCmdStdio(t *testing.T) {
	t.Parallel()
	stdioBothWays(t, 8<<20, splitCmdStdioListen)
}

// TestSplitCmdOneSession: a stdio listener serves one session; a second
// connect is turned away (non-zero exit) rather than left waiting, and
// the first goes on.
func TestSplitCmdOneSession(t *testing.T) {
	t.Parallel()
	inR, inW := io.Pipe()
	defer inW.Close()
	outR, outW := io.Pipe()
	defer outR.Close()
	l, addr := startSplitCmdListen(t, nil, outW)
	first := start(t, inR, io.Discard, "split", "connect", addr)
	read := func(want string) {
		t.Helper()
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(outR, buf); err != nil || string(buf) != want {
			t.Fatalf("listener's stdout: %q, %v; want %q", buf, err, want)
		}
	}
	inW.Write([]byte("first "))
	read("first ") // the first session is the listener's
	code, _, errOut := runOnce(t, strings.NewReader("second"), "split", "connect", addr)
	if code == 0 {
		t.Fatalf("a second connect to a stdio listener exited 0: %s", errOut)
	}
	oneLine(t, errOut, "stream broke: the other side closed the connection; it said: reset")
	l.waitLine(`turned a session away`)
	inW.Write([]byte("still here"))
	read("still here")
	inW.Close()
	first.exitsZero(30*time.Second, "first connect")
	l.exitsZero(30*time.Second, "listener")
}

// TestSplitCmdKillPeer: kill -9 of either side mid-transfer closes the
// other side's TCP connection within 15 s; in stdio mode the survivor
// exits non-zero, and so does the receiver when the sender is stopped by
// SIGTERM.
func TestSplitCmdKillPeer(t *testing.T) {
	t.Parallel()
	killPeerCases(t, func(t *testing.T, svcPort string) (*proc, *proc, int) {
		l, c, addr := startSplitCmdTunnel(t, svcPort, nil)
		return l, c, tcpPort(t, addr)
	}, splitCmdStdioListen)
	// A sender stopped by a signal resets its session: the receiver must
	// not take the stream cut short for a complete one and exit 0.
	t.Run("stdio/term-connect", func(t *testing.T) {
		t.Parallel()
		killStdio(t, "connect", syscall.SIGTERM, splitCmdStdioListen)
	})
}

// TestSplitCmdRefusals: a --fec that differs is refused with one line
// naming fec and both values, on both sides, and the listener goes on
// serving; a forward target that refuses closes the connecting side's TCP
// connection, and the listener goes on serving.
func TestSplitCmdRefusals(t *testing.T) {
	t.Parallel()
	t.Run("fec mismatch", func(t *testing.T) {
		t.Parallel()
		l, addr := startSplitCmdListen(t, nil, nil, "--fec=8:2", "--forward", strconv.Itoa(echoServer(t).Addr().(*net.TCPAddr).Port))
		code, out, errOut := runOnce(t, strings.NewReader("x"), "split", "connect", "--fec=10:3", addr)
		if code != 1 || out != "" {
			t.Fatalf("connect with another --fec: exit %d, stdout %q", code, out)
		}
		oneLine(t, errOut, "fec mismatch: ours 10:3, the listener's 8:2")
		l.waitLine(`fec mismatch: local 8:2, peer 10:3`)
		code, out, errOut = runOnce(t, strings.NewReader("still here"), "split", "connect", "--fec=8:2", addr)
		if code != 0 || out != "still here" {
			t.Fatalf("after a refusal: exit %d, stdout %q, stderr %s", code, out, errOut)
		}
	})
	t.Run("fec mismatch with --forward", func(t *testing.T) {
		// Found at start, before any connection is accepted.
		t.Parallel()
		_, addr := startSplitCmdListen(t, nil, nil, "--fec=8:2", "--forward", "9")
		c := start(t, nil, nil, "split", "connect", "--forward", strconv.Itoa(freePort(t)), addr)
		if code := c.wait(30 * time.Second); code != 1 {
			t.Fatalf("connect --forward with another --fec: exit %d", code)
		}
		oneLine(t, c.stderr.String(), "fec mismatch: ours 10:3, the listener's 8:2")
	})
	t.Run("target down", func(t *testing.T) {
		t.Parallel()
		l, _, addr := startSplitCmdTunnel(t, strconv.Itoa(freePort(t)), nil)
		targetDown(t, l, tcpPort(t, addr))
	})
}

// TestSplitCmdBadInput: usage mistakes exit 2, a busy port, an address
// where nothing listens (after --timeout) exit 1, each with one line on
// stderr and nothing on stdout.
func TestSplitCmdBadInput(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { busy.Close() }) // after the parallel subtests
	nobody := "127.0.0.1:" + strconv.Itoa(freePort(t))
	listen := func(a ...string) []string { return append([]string{"split", "listen"}, a...) }
	connect := func(a ...string) []string { return append([]string{"split", "connect"}, a...) }
	checkRefusals(t, []refusalCase{
		{"listen port garbage", listen("127.0.0.1:x"), 2, `ADDR "127.0.0.1:x"`, 0},
		{"listen port too big", listen("70000"), 2, "0-65535", 0},
		{"listen bad host", listen("bad host:7000"), 2, "bad host", 0},
		{"listen no ADDR", listen(), 2, "accepts 1 arg", 0},
		{"connect without host", connect("7000"), 2, "HOST:PORT", 0},
		{"connect port zero", connect("127.0.0.1:0"), 2, "1-65535", 0},
		{"connect malformed", connect("1:2:3"), 2, "HOST:PORT", 0},
		{"conns zero", connect("--conns", "0", nobody), 2, "--conns 0", 0},
		{"fec garbage", listen("--fec", "ten", "127.0.0.1:0"), 2, "--fec", 0},
		{"payload too small", connect("--payload", "10", nobody), 2, "--payload", 0},
		{"forward port too big", listen("--forward", "99999", "127.0.0.1:0"), 2, "out of range", 0},
		{"conns on listen", listen("--conns", "4", "127.0.0.1:0"), 2, "unknown flag", 0},
		{"timeout zero", connect("--timeout", "0s", nobody), 2, "--timeout", 0},
		{"listen port in use", listen(busy.Addr().String()), 1, "in use", 0},
		{"connect --forward port in use", connect("--forward", busy.Addr().String(), nobody), 1, "in use", 0},
		{"nothing listening", connect("--timeout", "1s", nobody), 1, "unreachable after 1s", time.Second},
		{"nothing listening, --forward", connect("--timeout", "1s", "--forward", strconv.Itoa(freePort(t)), nobody), 1, "unreachable after 1s", time.Second},
	})
}

// tcpPort is the port of a host:port address.
func tcpPort(t testing.TB, addr string) int {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	p, err2 := strconv.Atoi(port)
	if err != nil || err2 != nil {
		t.Fatalf("address %q: no port", addr)
	}
	return p
}

// splitCmdStdioListen starts a stdio split listener and returns it with
// the arguments of the connect to it.
func splitCmdStdioListen(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string) {
	l, addr := startSplitCmdListen(t, stdin, stdout)
	return l, []string{"split", "connect", addr}
}
