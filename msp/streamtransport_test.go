package msp

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/identity"
)

// TestSessionOverStream: the same session (handshake, --allow, streams)
// over a reliable byte stream instead of the mesh.
func TestSessionOverStream(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	stranger, _ := identity.Generate(nil)
	l := Listen(nil, server, 5000, Config{Allow: func(s identity.SID) bool { return s == client.SID() }})
	defer l.Close()
	addr := streamListener(t, l)
	echoServer(t, l)
	dial := func(id *identity.Identity, port uint16) (*Session, error) {
		s, _, err := dialStreamPort(t, addr, id, server.SID(), port, 5*time.Second)
		return s, err
	}
	s, err := dial(client, 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	rand.Read(data)
	go func() {
		st.Write(data)
		st.(interface{ CloseWrite() error }).CloseWrite()
	}()
	st.SetReadDeadline(time.Now().Add(30 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("echo over a stream transport: %d bytes, %v", len(got), err)
	}
	st.Close()
	if _, err := dial(stranger, 5000); !errors.Is(err, ErrRefused) {
		t.Fatalf("a SID not allowed: %v", err)
	}
	if _, err := dial(client, 5001); !errors.Is(err, ErrRefused) {
		t.Fatalf("wrong port: %v", err)
	}
}

// streamListener serves l on TCP 127.0.0.1:0 with a stream transport per
// accepted connection and returns the address.
func streamListener(t *testing.T, l *Listener) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.Serve(NewStreamTransport(c))
		}
	}()
	return ln.Addr().String()
}

// dialStream opens a session for port 5000 over a new TCP connection to addr.
func dialStream(t *testing.T, addr string, id *identity.Identity, peer identity.SID, timeout time.Duration) (*Session, net.Conn, error) {
	t.Helper()
	return dialStreamPort(t, addr, id, peer, 5000, timeout)
}

func dialStreamPort(t *testing.T, addr string, id *identity.Identity, peer identity.SID, port uint16, timeout time.Duration) (*Session, net.Conn, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s, err := Dialer{Identity: id}.Dial(ctx, NewStreamTransport(c), peer, port)
	return s, c, err
}

func (l *Listener) endpoints() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.eps)
}

// TestStreamTransportWrongSID: over a stream transport the far end is one
// node; asking it for another SID fails at once, not after a timeout.
func TestStreamTransportWrongSID(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	other, _ := identity.Generate(nil)
	l := Listen(nil, server, 5000, Config{})
	defer l.Close()
	addr := streamListener(t, l)
	start := time.Now()
	_, _, err := dialStream(t, addr, client, other.SID(), 10*time.Second)
	if err == nil || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("dial of another SID = %v, want the transport closed", err)
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("dial of another SID failed after %v", el)
	}
	waitEndpoints(t, l, 0)
}

func waitEndpoints(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.endpoints() != n {
		if time.Now().After(deadline) {
			t.Fatalf("listener holds %d endpoints, want %d", l.endpoints(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamTransportEnds: the listener lets go of transports that ended,
// and a session whose transport breaks ends at once on both sides instead
// of waiting for IdleTimeout.
func TestStreamTransportEnds(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	l := Listen(nil, server, 5000, Config{})
	defer l.Close()
	addr := streamListener(t, l)
	echoServer(t, l)

	// Clean ends: the listener keeps no endpoint per finished session.
	for i := range 20 {
		s, _, err := dialStream(t, addr, client, server.SID(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("hi")); err != nil {
			t.Fatalf("session %d: write: %v (session: %v)", i, err, s.Err())
		}
		st.(interface{ CloseWrite() error }).CloseWrite()
		if b, err := io.ReadAll(st); err != nil || string(b) != "hi" {
			t.Fatalf("session %d: echo %q, %v (session: %v, %+v)", i, b, err, s.Err(), s.Stats())
		}
		st.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s.Shutdown(ctx)
		cancel()
	}
	waitEndpoints(t, l, 0)

	// A broken transport: streams on both sides fail promptly.
	s, c, err := dialStream(t, addr, client, server.SID(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.OpenStream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	st.Write([]byte("x"))
	if _, err := io.ReadFull(st, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	waitEndpoints(t, l, 1)
	start := time.Now()
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("dialling session still up 2 s after its transport broke")
	}
	waitEndpoints(t, l, 0)
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("listener let go of the broken transport after %v (IdleTimeout is 10 s)", el)
	}
}

// FuzzStreamTransport feeds arbitrary bytes to the read side of a stream
// transport: it must cut them into datagrams or fail, never panic or
// return more than it was given.
func FuzzStreamTransport(f *testing.F) {
	var seed []byte
	for _, d := range [][]byte{{1, 2, 3}, {}, bytes.Repeat([]byte{7}, 1000)} {
		seed = binary.BigEndian.AppendUint16(seed, uint16(len(d)))
		seed = append(seed, d...)
	}
	f.Add(seed)
	f.Add([]byte{0xff, 0xff, 0})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, in []byte) {
		a, z := net.Pipe()
		defer a.Close()
		go func() {
			z.Write(in)
			z.Close()
		}()
		tr := NewStreamTransport(a)
		buf := make([]byte, 65536)
		total := 0
		for {
			n, _, err := tr.ReadFrom(buf)
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Fatalf("ReadFrom error %v does not wrap net.ErrClosed (the endpoint would spin)", err)
				}
				break
			}
			total += 2 + n
			if n > streamMaxPayload || total > len(in) {
				t.Fatalf("datagram of %d bytes, %d of %d input bytes used", n, total, len(in))
			}
		}
	})
}
