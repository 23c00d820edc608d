package mesh_test

// A node restarted under the same SID on a new loopback UDP port is heard
// by its peer at once (samesid_test.go has the memnet tests and the
// replays).

import (
	"net"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// roundTrip sends one datagram each way between a and b (port 100) and waits
// up to within for both.
func roundTrip(t *testing.T, a, b *mesh.Node, within time.Duration) {
	t.Helper()
	pa, pb := bindPair(t, a, b)
	defer pa.Close()
	defer pb.Close()
	for _, dir := range []struct{ from, to *mesh.PacketConn }{{pa, pb}, {pb, pa}} {
		if _, err := dir.from.WriteTo([]byte("ping"), dir.to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		dir.to.SetReadDeadline(time.Now().Add(within))
		buf := make([]byte, 100)
		if k, _, err := dir.to.ReadFrom(buf); err != nil || string(buf[:k]) != "ping" {
			t.Fatalf("datagram %s → %s: %q, %v", dir.from.LocalAddr(), dir.to.LocalAddr(), buf[:k], err)
		}
	}
}

func TestRestartOnNewPortUDP(t *testing.T) {
	const hello = time.Second // the default
	timers := meshtest.Timers(hello, 5*time.Second)
	x := meshtest.UDPNode(t, nil, timers)
	aid, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	asA := meshtest.Configure(func(_ int, c *mesh.Config) { c.Identity = aid })
	a1 := meshtest.UDPNode(t, []net.Addr{x.LocalAddr()}, timers, asA)
	meshtest.WaitConverged(t, meshtest.DefaultWait, x, a1)
	roundTrip(t, x, a1, 5*time.Second)

	// The new incarnation's socket is opened before the first one closes,
	// so its port is another.
	c2, err := mesh.ListenUDP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	a1.Close()
	start := time.Now()
	a2 := meshtest.Start(t, c2, []net.Addr{x.LocalAddr()}, timers, asA)
	for {
		nbs := x.Neighbours()
		if len(nbs) > 1 {
			t.Fatalf("x has %d neighbours (the old entry kept beside the new): %+v", len(nbs), nbs)
		}
		if len(nbs) == 1 && nbs[0].Addr.String() == c2.LocalAddr().String() {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("x did not take the restarted a at %s: neighbours %+v", c2.LocalAddr(), nbs)
		}
		time.Sleep(time.Millisecond)
	}
	moved := time.Since(start)
	meshtest.WaitConverged(t, 10*time.Second, x, a2)
	roundTrip(t, x, a2, 10*time.Second)
	through := time.Since(start)
	t.Logf("restarted on %s (was %s): x moved its entry in %v, a datagram each way through in %v (hello interval %v)",
		c2.LocalAddr(), a1.LocalAddr(), moved, through, hello)
	if through >= hello {
		t.Errorf("the restarted node took %v to be heard, want less than one hello interval (%v)", through, hello)
	}
	if nbs := x.Neighbours(); len(nbs) != 1 || nbs[0].SID != aid.SID() {
		t.Fatalf("x's neighbours %+v, want only a", nbs)
	}
}
