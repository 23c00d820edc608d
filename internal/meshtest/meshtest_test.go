package meshtest_test

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestChain: a chain's ends reach each other through every node between,
// the options reach every node, and everything stops at the end of the
// test (the bubble would not end otherwise, and goleak checks the rest).
func TestChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var seen []int
		var mtu int
		m := meshtest.Chain(t, 4, memnet.LinkConfig{Delay: time.Millisecond},
			meshtest.Seed(7),
			meshtest.Timers(50*time.Millisecond, time.Second),
			meshtest.Network(func(nw *memnet.Network) { mtu = 1400; nw.SetMTU(mtu) }),
			meshtest.Configure(func(i int, c *mesh.Config) {
				seen = append(seen, i)
				if c.HelloInterval != 50*time.Millisecond || c.NeighbourTimeout != time.Second || c.Conn == nil || c.Identity == nil {
					t.Errorf("node %d: config %+v", i, c)
				}
			}),
		)
		if len(seen) != 4 || seen[0] != 0 || seen[3] != 3 {
			t.Fatalf("Configure saw nodes %v", seen)
		}
		if mtu != 1400 {
			t.Fatal("Network option not applied")
		}
		r := m.WaitRoute(0, 3, 3, 1, 10*time.Second)
		if r.MTU > 1400 {
			t.Fatalf("route MTU %d on a network of MTU 1400", r.MTU)
		}
		m.WaitRoute(3, 0, 3, 2, 10*time.Second)
		// The edges are the only links: node 0 and node 2 are not neighbours.
		for _, nb := range m.Nodes[0].Neighbours() {
			if nb.SID == m.Nodes[2].SID() {
				t.Fatal("node 0 has node 2 as a neighbour across a cut link")
			}
		}
	})
}

// TestUDPPair: two nodes on loopback UDP reach each other.
func TestUDPPair(t *testing.T) {
	a, b := meshtest.UDPPair(t)
	for _, r := range a.Routes() {
		if r.SID == b.SID() && r.Hops == 1 {
			return
		}
	}
	t.Fatalf("no 1-hop route from a to b: %v", a.Routes())
}
