package main

// End-to-end tests of the forwarders' limits (issue 10 item 5): idle
// connections cannot lock fresh ones out, and --idle-timeout closes idle
// connections.

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestForwardFreshAmongIdle: with 2,000 idle local connections to
// `msp connect --forward`, 5 fresh connections each echo within 2 s.
func TestForwardFreshAmongIdle(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000 connections")
	}
	t.Parallel()
	echo := echoServer(t)
	l := startListen(t, nil, nil, "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	cp := start(t, nil, nil, connectArgs(t, l, "-v", "--forward", strconv.Itoa(port), l.sid, "5000")...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dialRetry(t, addr).Close()
	defer func() {
		if t.Failed() {
			out := cp.stderr.String()
			t.Logf("connect stderr (%d bytes), last part:\n%s", len(out), out[max(0, len(out)-3000):])
		}
	}()

	const idle, fresh = 2000, 5
	for range idle {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
	}
	for i := range fresh {
		start := time.Now()
		if err := echoWithin(addr, fmt.Sprintf("fresh %d", i), 2*time.Second); err != nil {
			t.Fatalf("fresh connection %d among %d idle: %v", i, idle, err)
		}
		t.Logf("fresh connection %d echoed in %v", i, time.Since(start))
	}
}

// echoWithin connects to addr and checks that msg comes back, all within d.
func echoWithin(addr, msg string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d))
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// TestForwardIdleTimeout: with --idle-timeout on both ends, an idle
// tunnelled connection is closed, and one that moves a byte every 100 ms
// is not.
func TestForwardIdleTimeout(t *testing.T) {
	t.Parallel()
	const timeout = time.Second
	flag := "--idle-timeout=" + timeout.String()
	echo := echoServer(t)
	l := startListen(t, nil, nil, flag, "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	start(t, nil, nil, connectArgs(t, l, flag, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	dialRetry(t, addr).Close() // the port is up
	begin := time.Now()        // before the idle connection's accept
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	active, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer active.Close()
	closed := make(chan time.Duration, 1)
	go func() {
		io.Copy(io.Discard, idle)
		closed <- time.Since(begin)
	}()
	ping := func() {
		t.Helper()
		active.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := active.Write([]byte("p")); err != nil {
			t.Fatalf("active connection: %v", err)
		}
		if _, err := io.ReadFull(active, make([]byte, 1)); err != nil {
			t.Fatalf("active connection: %v", err)
		}
	}
	for time.Since(begin) < 3*timeout {
		ping()
		time.Sleep(timeout / 10)
	}
	select {
	case d := <-closed:
		if d < timeout {
			t.Errorf("idle connection closed after %v, before --idle-timeout %v", d, timeout)
		}
		t.Logf("idle connection closed after %v", d)
	case <-time.After(10 * time.Second):
		t.Fatal("idle connection still open")
	}
	ping()
}

// TestIdleTimeoutNegative: a negative --idle-timeout is a usage error.
func TestIdleTimeoutNegative(t *testing.T) {
	sid := strings.Repeat("AB", 32)
	for _, args := range [][]string{
		{"msp", "connect", "--idle-timeout=-1s", "--forward=1", sid, "5000"},
		{"msp", "listen", "--idle-timeout=-1s", "--forward=1", "5000"},
		{"split", "connect", "--idle-timeout=-1s", "--forward=1", "127.0.0.1:1"},
	} {
		code, _, errs := runInProcess(t, args...)
		if code != 2 || !strings.Contains(errs, "--idle-timeout must not be negative") {
			t.Errorf("servald %s: exit %d, %q; want a usage error", strings.Join(args, " "), code, errs)
		}
	}
}
