package msp

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// udpNodes starts two mesh nodes on loopback UDP; a knows b as a peer.
func udpNodes(t testing.TB) (*mesh.Node, *mesh.Node) {
	t.Helper()
	return meshtest.UDPPair(t, meshtest.Timers(200*time.Millisecond, 2*time.Second))
}

// listenMesh listens on MDP port of node n.
func listenMesh(n *mesh.Node, port uint16, cfg Config) (*Listener, error) {
	pc, err := n.Bind(port)
	if err != nil {
		return nil, err
	}
	return Listen(pc, n.Identity(), port, cfg), nil
}

// dialMesh opens a session from node n with the listener at (sid, port),
// over an ephemeral port of n, once n has a route to sid.
func dialMesh(ctx context.Context, n *mesh.Node, sid identity.SID, port uint16, cfg Config) (*Session, error) {
	if err := n.WaitReachable(ctx, sid); err != nil {
		return nil, err
	}
	pc, err := n.Bind(0)
	if err != nil {
		return nil, err
	}
	return Dialer{Identity: n.Identity(), Config: cfg}.Dial(ctx, pc, sid, port)
}

func echoServer(t testing.TB, l *Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(c, c)
				c.(interface{ CloseWrite() error }).CloseWrite()
				c.Close()
			}()
		}
	}()
}

func TestStreamEchoAndHalfClose(t *testing.T) {
	a, b := udpNodes(t)
	l, err := listenMesh(b, 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dialMesh(ctx, a, b.SID(), 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Peer() != b.SID() {
		t.Fatalf("peer %v", s.Peer())
	}
	const size = 4 << 20
	data := make([]byte, size)
	rand.Read(data)
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		st.Write(data)
		st.(interface{ CloseWrite() error }).CloseWrite()
	}()
	st.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatalf("read after %d bytes: %v", len(got), err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("echo differs: %d bytes back", len(got))
	}
	st.Close()
	t.Logf("session stats: %+v", s.Stats())
}

func TestAllowRefuses(t *testing.T) {
	a, b := udpNodes(t)
	l, err := listenMesh(b, 6000, Config{Allow: func(identity.SID) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = dialMesh(ctx, a, b.SID(), 6000, Config{})
	if !errors.Is(err, ErrRefused) {
		t.Fatalf("err = %v, want ErrRefused", err)
	}
	if !bytes.Contains([]byte(err.Error()), []byte("not allowed")) {
		t.Fatalf("refusal does not say why: %v", err)
	}
}

func TestDialNoListener(t *testing.T) {
	a, b := udpNodes(t)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	_, err := dialMesh(ctx, a, b.SID(), 7000, Config{})
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("err = %v, want a timeout", err)
	}
}
