package msp

import (
	"bytes"
	"context"
	"crypto/rand"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	stranger, _ := identity.Generate(nil)
	l := ListenTransport(nil, server, 5000, Config{Allow: func(s identity.SID) bool { return s == client.SID() }})
	defer l.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			l.Serve(NewStreamTransport(c))
		}
	}()
	echoServer(t, l)
	dial := func(id *identity.Identity, port uint16) (*Session, error) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tr := NewStreamTransport(c)
		return DialTransport(ctx, tr, id, server.SID(), StreamAddr{c.RemoteAddr()}, port, Config{})
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
