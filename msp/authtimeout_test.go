package msp

import (
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
)

// windowConn is a connection with a receive window to open, as a splitter
// session behind a gated listener has.
type windowConn struct {
	net.Conn
	opened atomic.Int32
}

func (w *windowConn) OpenWindow() { w.opened.Add(1) }

// TestUnauthenticatedStreamDropped: a connection on which no session is
// confirmed within authTimeout is closed by the listener (a split session
// that never completes the MSP handshake holds nothing for long); one
// whose session is confirmed stays, and its window is opened once.
func TestUnauthenticatedStreamDropped(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	l := Listen(nil, server, 5000, Config{})
	defer l.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan *windowConn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			w := &windowConn{Conn: c}
			served <- w
			l.Serve(NewStreamTransport(w))
		}
	}()
	idle, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	idleSide := <-served
	s, _, err := dialStreamPort(t, ln.Addr().String(), client, server.SID(), 5000, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	authed := <-served
	start := time.Now()
	idle.SetReadDeadline(start.Add(authTimeout + 3*time.Second))
	if _, err := io.Copy(io.Discard, idle); err != nil {
		t.Fatalf("the idle connection was not closed within %v: %v", authTimeout+3*time.Second, err)
	}
	if d := time.Since(start); d < authTimeout-time.Second {
		t.Fatalf("the idle connection was closed after %v, before authTimeout %v", d, authTimeout)
	}
	if idleSide.opened.Load() != 0 {
		t.Fatal("the idle connection's window was opened")
	}
	// The authenticated one is still up and its window was opened once.
	if n := authed.opened.Load(); n != 1 {
		t.Fatalf("the authenticated connection's window was opened %d times, want 1", n)
	}
	select {
	case <-s.Done():
		t.Fatalf("the authenticated session ended: %v", s.Err())
	default:
	}
}
