package instance

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// memPair starts two nodes on memnet, a knowing b as a peer, with the
// identities given (nil: a new one), and waits until each reaches the
// other.
func memPair(t *testing.T, ida, idb *identity.Identity) (a, b *mesh.Node) {
	t.Helper()
	ids := []*identity.Identity{ida, idb}
	m := meshtest.Pair(t, memnet.LinkConfig{Delay: time.Millisecond},
		meshtest.Timers(50*time.Millisecond, 3*time.Second),
		meshtest.Configure(func(i int, c *mesh.Config) {
			if ids[i] != nil {
				c.Identity = ids[i]
			}
		}))
	return m.Nodes[0], m.Nodes[1]
}

// echoListener serves an echo on every stream of lis until it closes.
func echoListener(lis *msp.Listener) {
	for {
		st, err := lis.Accept()
		if err != nil {
			return
		}
		go func() {
			io.Copy(st, st)
			st.Close()
		}()
	}
}

// echoOn starts an echo listener (fastEnd) on MDP port of node n.
func echoOn(t *testing.T, n *mesh.Node, port uint16) *msp.Listener {
	t.Helper()
	lis, err := Listen(Embed(n), port, fastEnd)
	if err != nil {
		t.Fatal(err)
	}
	go echoListener(lis)
	return lis
}

// echo writes msg on st and checks it comes back.
func echo(t *testing.T, st net.Conn, msg string) {
	t.Helper()
	st.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := st.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	st.(interface{ CloseWrite() error }).CloseWrite()
	b, err := io.ReadAll(st)
	if err != nil || string(b) != msg {
		t.Fatalf("echo: %q, %v; want %q", b, err, msg)
	}
	st.Close()
}

// checkMesh checks what m shows of a mesh where it has the one neighbour
// far, and that a session through m reaches an echo listener on far.
func checkMesh(t *testing.T, m Mesh, far *mesh.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.WaitReachable(ctx, far.SID()); err != nil {
		t.Fatal(err)
	}
	routes, err := m.Routes()
	if err != nil || len(routes) != 1 || routes[0].SID != far.SID() || routes[0].Hops != 1 {
		t.Fatalf("Routes = %v, %v; want one route to %s", routes, err, far.SID().Short())
	}
	nbs, err := m.Neighbours()
	if err != nil || len(nbs) != 1 || nbs[0].SID != far.SID() {
		t.Fatalf("Neighbours = %v, %v; want %s", nbs, err, far.SID().Short())
	}
	if m.UDPAddr() == nil {
		t.Error("no UDP address")
	}
	lis, err := Listen(Embed(far), 7, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go echoListener(lis)
	s, err := DialSession(ctx, m, far.SID(), 7, msp.Config{})
	if err != nil {
		t.Fatalf("DialSession: %v", err)
	}
	defer s.Close()
	if s.Peer() != far.SID() {
		t.Errorf("session peer %s, want %s", s.Peer(), far.SID())
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, st, "through "+far.SID().Short())
}

func TestEmbeddedMesh(t *testing.T) {
	a, b := memPair(t, nil, nil)
	m := Embed(a)
	if m.Identity().SID() != a.SID() {
		t.Fatalf("Identity %s, want %s", m.Identity().SID(), a.SID())
	}
	checkMesh(t, m, b)

	// A bound port is the node's: a second Bind of it fails.
	tr, err := m.Bind(9)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Bind(9); !errors.Is(err, mesh.ErrPortInUse) {
		t.Errorf("second Bind(9) = %v, want ErrPortInUse", err)
	}
	tr.Close()
	// Listen (on m) accepts a session that b dials.
	lis, err := Listen(m, 8, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go echoListener(lis)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := DialSession(ctx, Embed(b), a.SID(), 8, msp.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := s.OpenStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	echo(t, st, "to the listener on m")
}

func TestDialSessionNoRoute(t *testing.T) {
	a, _ := memPair(t, nil, nil)
	stranger, _ := identity.Generate(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if s, err := DialSession(ctx, Embed(a), stranger.SID(), 7, msp.Config{}); err == nil {
		s.Close()
		t.Fatal("DialSession reached a node that is not in the mesh")
	}
}

// TestOpenDaemon: with the instance's daemon running, Open reaches the
// mesh through it (the node options, even bad ones, are ignored), and a
// daemon whose node is not the keyring's identity is refused.
func TestOpenDaemon(t *testing.T) {
	dir := t.TempDir()
	id, err := Identity(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := memPair(t, id, nil)
	serveDaemon(t, dir, a)

	m, err := Open(dir, NodeOptions{UDP: "not an address"})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer m.Close()
	if _, ok := m.(viaDaemon); !ok {
		t.Fatalf("Open returned %T, want the daemon", m)
	}
	if m.Identity().SID() != id.SID() || m.Changed() != nil {
		t.Errorf("through the daemon: SID %s (want %s), Changed %v (want nil)", m.Identity().SID(), id.SID(), m.Changed())
	}
	checkMesh(t, m, b)

	// The keyring changed under the daemon: Open says so.
	other := t.TempDir()
	if _, err := Identity(other); err != nil {
		t.Fatal(err)
	}
	kb, err := os.ReadFile(KeyringPath(other))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(KeyringPath(dir), kb, 0o600); err != nil {
		t.Fatal(err)
	}
	if m2, err := Open(dir, NodeOptions{}); err == nil || !strings.Contains(err.Error(), "restart it") {
		if m2 != nil {
			m2.Close()
		}
		t.Errorf("Open with another keyring: %v, want a restart hint", err)
	}
}

// TestOpenEmbedded: without a daemon, Open starts a node of the
// instance's identity (creating the keyring) on the UDP address given.
func TestOpenEmbedded(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(dir, NodeOptions{UDP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, ok := m.(*embedded); !ok {
		t.Fatalf("Open returned %T, want an embedded node", m)
	}
	id, err := Identity(dir)
	if err != nil || id.SID() != m.Identity().SID() {
		t.Fatalf("keyring identity %v (%v), node %s", id, err, m.Identity().SID())
	}
	if a, ok := m.UDPAddr().(*net.UDPAddr); !ok || !a.IP.IsLoopback() || a.Port == 0 {
		t.Errorf("UDP address %v, want a loopback port", m.UDPAddr())
	}
	// Nothing to learn: Settle returns once the table is quiet.
	start := time.Now()
	Settle(context.Background(), m, 10*time.Second)
	if d := time.Since(start); d < QuietPeriod || d > 5*time.Second {
		t.Errorf("Settle took %v, want about %v", d, QuietPeriod)
	}
}

// TestQuietPeriod: Settle waits for two of an embedded node's hello
// intervals without change.
func TestQuietPeriod(t *testing.T) {
	if h := mesh.DefaultConfig().HelloInterval; QuietPeriod < 2*h {
		t.Errorf("QuietPeriod %v is less than two hello intervals (%v)", QuietPeriod, 2*h)
	}
}

// TestRefuseUnbound: a session asked for on an MDP port nothing is bound
// to on a node started by the instance is refused at once ("no listener"),
// not left to time out.
func TestRefuseUnbound(t *testing.T) {
	a, b := memPair(t, nil, nil)
	if err := refuseUnbound(b, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t0 := time.Now()
	_, err := DialSession(ctx, Embed(a), b.SID(), 999, msp.Config{})
	if !errors.Is(err, msp.ErrRefused) || !strings.Contains(err.Error(), "MDP port 999") || !strings.Contains(err.Error(), "nothing listens on that port") {
		t.Fatalf("dial to an unbound port: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("refused after %v", d)
	}
}
