package main

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTunnelManyConnections: 100 concurrent TCP connections through one
// tunnel each echo 1 MiB byte-exact, then one 256 MiB transfer arrives with
// the same SHA-256.
func TestTunnelManyConnections(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	l := startListen(t, nil, nil, "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	start(t, nil, nil, connectArgs(t, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dialRetry(t, addr).Close()

	const conns, size = 100, 1 << 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := 0; i < conns; i++ {
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

	big := int64(256 << 20)
	if testing.Short() {
		big = 32 << 20
	}
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	l2 := startListen(t, nil, nil, "--once", "--forward", strconv.Itoa(sink.Addr().(*net.TCPAddr).Port), "5001")
	port2 := freePort(t)
	start(t, nil, nil, connectArgs(t, l2, "--once", "--forward", strconv.Itoa(port2), l2.sid, "5001")...)
	sendToSink(t, fmt.Sprintf("127.0.0.1:%d", port2), sink, big)
}

// sendToSink sends size random bytes into the tunnel at addr, whose far
// end forwards to sink, and checks that sink receives them with the same
// SHA-256.
func sendToSink(t *testing.T, addr string, sink net.Listener, size int64) {
	t.Helper()
	c := dialRetry(t, addr)
	defer c.Close()
	got := make(chan [32]byte, 1)
	go func() {
		s, err := sink.Accept()
		if err != nil {
			got <- [32]byte{}
			return
		}
		h := sha256.New()
		io.Copy(h, s)
		s.Close()
		got <- [32]byte(h.Sum(nil))
	}()
	h := sha256.New()
	start := time.Now()
	if _, err := io.Copy(c, io.TeeReader(io.LimitReader(rand.Reader, size), h)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	select {
	case sum := <-got:
		if sum != [32]byte(h.Sum(nil)) {
			t.Fatalf("%d MiB transfer: SHA-256 differs", size>>20)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("%d MiB transfer did not finish", size>>20)
	}
	t.Logf("%d MiB in %v", size>>20, time.Since(start).Round(time.Millisecond))
}

func echoOnce(addr string, size int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	data := make([]byte, size)
	rand.Read(data)
	go func() {
		c.Write(data)
		c.(*net.TCPConn).CloseWrite()
	}()
	c.SetReadDeadline(time.Now().Add(2 * time.Minute))
	back, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("echo: read after %d bytes: %w", len(back), err)
	}
	if !bytes.Equal(back, data) {
		return fmt.Errorf("echo: %d bytes back, differ from the %d sent", len(back), len(data))
	}
	return nil
}

// TestStdio moves 64 MiB through stdin/stdout in each direction.
func TestStdio(t *testing.T) {
	t.Parallel()
	size := 64 << 20
	if testing.Short() {
		size = 8 << 20
	}
	stdioBothWays(t, size, meshStdioListen)
}

// stdioBothWays moves size random bytes through stdin/stdout, connect to
// listen and then listen to connect: listen starts the listener and
// returns the arguments of the connect to it. Both must exit 0, and the
// data arrive identical with nothing the other way.
func stdioBothWays(t *testing.T, size int, listen func(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string)) {
	t.Helper()
	in := filepath.Join(t.TempDir(), "in")
	data := make([]byte, size)
	rand.Read(data)
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dirn := range []string{"connect-to-listen", "listen-to-connect"} {
		t.Run(dirn, func(t *testing.T) { stdioCase(t, in, data, dirn, listen) })
	}
}

// stdioCase is one direction of stdioBothWays; file in holds data.
func stdioCase(t *testing.T, in string, data []byte, dirn string, listen func(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string)) {
	t.Helper()
	inF, _ := os.Open(in)
	defer inF.Close()
	empty, _ := os.Open(os.DevNull)
	defer empty.Close()
	var lOut, cOut bytes.Buffer
	lIn, cIn := empty, inF
	if dirn == "listen-to-connect" {
		lIn, cIn = inF, empty
	}
	l, args := listen(t, lIn, &lOut)
	c := start(t, cIn, &cOut, args...)
	if code := c.wait(2 * time.Minute); code != 0 {
		t.Fatalf("connect exited %d: %s", code, c.stderr)
	}
	if code := l.wait(30 * time.Second); code != 0 {
		t.Fatalf("listen exited %d: %s", code, l.stderr)
	}
	got, other := lOut.Bytes(), cOut.Bytes()
	if dirn == "listen-to-connect" {
		got, other = other, got
	}
	if !bytes.Equal(got, data) || len(other) != 0 {
		t.Fatalf("%d bytes arrived (want %d identical), %d went the other way", len(got), len(data), len(other))
	}
}

// TestHalfCloseReply: a client that half-closes still gets the whole reply.
func TestHalfCloseReply(t *testing.T) {
	t.Parallel()
	svc, reply := replyService(t)
	l := startListen(t, nil, nil, "--forward", strconv.Itoa(svc.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	start(t, nil, nil, connectArgs(t, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	halfCloseReply(t, fmt.Sprintf("127.0.0.1:%d", port), reply)
}

// replyService runs a TCP service that reads each request to its end,
// then answers with the 4 MiB it returns.
func replyService(t *testing.T) (net.Listener, []byte) {
	t.Helper()
	reply := make([]byte, 4<<20)
	rand.Read(reply)
	return tcpService(t, func(c net.Conn) {
		io.Copy(io.Discard, c)
		c.Write(reply)
	}), reply
}

// halfCloseReply sends a request through the tunnel at addr to a
// replyService, half-closes, and checks that the whole reply arrives.
func halfCloseReply(t *testing.T, addr string, reply []byte) {
	t.Helper()
	c := dialRetry(t, addr)
	defer c.Close()
	c.Write([]byte("request"))
	c.(*net.TCPConn).CloseWrite()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("reply after half-close: %d of %d bytes, %v", len(got), len(reply), err)
	}
}

// TestOnceAndIdle: --once with --forward exits 0 after its one connection
// closes, and an idle connection survives 30 s.
func TestOnceAndIdle(t *testing.T) {
	t.Parallel()
	idle := 30 * time.Second
	if testing.Short() {
		idle = 3 * time.Second
	}
	echo := echoServer(t)
	l := startListen(t, nil, nil, "--once", "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	cp := start(t, nil, nil, connectArgs(t, l, "--once", "--forward", strconv.Itoa(port), l.sid, "5000")...)
	c := dialRetry(t, fmt.Sprintf("127.0.0.1:%d", port))
	ping := func() {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("echo: %q %v", buf, err)
		}
	}
	ping()
	time.Sleep(idle)
	ping()
	c.Close()
	cp.exitsZero(20*time.Second, "connect --once")
	l.exitsZero(20*time.Second, "listen --once")
}

// TestKillPeer: kill -9 of either side mid-transfer closes the other side's
// TCP connections within 15 s; in stdio mode the survivor exits non-zero.
func TestKillPeer(t *testing.T) {
	t.Parallel()
	killPeerCases(t, func(t *testing.T, svcPort string) (*proc, *proc, int) {
		l := startListen(t, nil, nil, "--forward", svcPort, "5000")
		port := freePort(t)
		cp := start(t, nil, nil, connectArgs(t, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
		return l.proc, cp, port
	}, meshStdioListen)
}

// killPeerCases runs, in parallel, killForward with tunnel (unless nil)
// and killStdio with listen, each with either side as the victim of
// SIGKILL.
func killPeerCases(t *testing.T, tunnel func(t *testing.T, svcPort string) (l, c *proc, port int),
	listen func(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string)) {
	t.Helper()
	for _, victim := range []string{"listen", "connect"} {
		if tunnel != nil {
			t.Run("forward/kill-"+victim, func(t *testing.T) {
				t.Parallel()
				killForward(t, victim, tunnel)
			})
		}
		t.Run("stdio/kill-"+victim, func(t *testing.T) {
			t.Parallel()
			killStdio(t, victim, syscall.SIGKILL, listen)
		})
	}
}

// killForward streams random bytes through a --forward tunnel to a service
// that reads forever, kills one side (victim "listen" or "connect") with
// SIGKILL mid-transfer and checks that the other side's TCP connection
// (the client's, or the listener's to the service) is closed within 15 s.
// tunnel starts the listener, forwarding to svcPort, and the connector,
// and returns them with the connector's local TCP port.
func killForward(t *testing.T, victim string, tunnel func(t *testing.T, svcPort string) (l, c *proc, port int)) {
	t.Helper()
	// A service that reads forever, so the transfer is mid-way.
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	svcConns := make(chan net.Conn, 1)
	go func() {
		c, err := svc.Accept()
		if err == nil {
			svcConns <- c
			io.Copy(io.Discard, c)
		}
	}()
	l, cp, port := tunnel(t, strconv.Itoa(svc.Addr().(*net.TCPAddr).Port))
	c := dialRetry(t, fmt.Sprintf("127.0.0.1:%d", port))
	defer c.Close()
	go io.Copy(c, io.LimitReader(rand.Reader, 1<<40))
	var sc net.Conn
	select {
	case sc = <-svcConns:
	case <-time.After(15 * time.Second):
		t.Fatal("service got no connection")
	}
	time.Sleep(300 * time.Millisecond)
	survivor := sc // the listener side's TCP connection
	if victim == "listen" {
		l.cmd.Process.Signal(syscall.SIGKILL)
		survivor = c
	} else {
		cp.cmd.Process.Signal(syscall.SIGKILL)
	}
	t0 := time.Now()
	survivor.SetReadDeadline(time.Now().Add(20 * time.Second))
	_, err = io.Copy(io.Discard, survivor)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("surviving TCP connection still open after 20 s")
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("surviving TCP connection closed after %v, want within 15 s", d)
	} else {
		t.Logf("surviving TCP connection closed %v after the kill", d.Round(time.Millisecond))
	}
}

// killStdio streams random bytes from connect's stdin to the listener's
// stdout, kills one of them (victim "listen" or "connect") with sig
// and checks that the other exits non-zero within 15 s; listen starts the
// listener and returns the arguments of the connect to it.
func killStdio(t *testing.T, victim string, sig syscall.Signal, listen func(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string)) {
	t.Helper()
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.Copy(pw, io.LimitReader(rand.Reader, 1<<40))
	l, args := listen(t, nil, io.Discard)
	cp := start(t, pr, io.Discard, args...)
	time.Sleep(time.Second)
	killed, survivor := l, cp
	if victim == "connect" {
		killed, survivor = cp, l
	}
	killed.cmd.Process.Signal(sig)
	t0 := time.Now()
	code := survivor.wait(20 * time.Second)
	if code == 0 {
		t.Fatalf("the survivor exited 0 after %s got %v", victim, sig)
	}
	if d := time.Since(t0); d > 15*time.Second {
		t.Fatalf("the survivor exited %v after the kill of %s, want within 15 s", d, victim)
	}
	t.Logf("survivor exited %d %v after the kill of %s: %s", code, time.Since(t0).Round(time.Millisecond), victim, lastLine(survivor.stderr.String()))
}

func lastLine(s string) string {
	s = string(bytes.TrimSpace([]byte(s)))
	if i := bytes.LastIndexByte([]byte(s), '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// meshStdioListen starts a listener on MDP port 5000 for the stdio tests
// and returns it with the arguments of the connect to it.
func meshStdioListen(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string) {
	l := startListen(t, stdin, stdout, "5000")
	return l.proc, connectArgs(t, l, l.sid, "5000")
}
