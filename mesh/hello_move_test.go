package mesh

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// TestHelloForOthersDoesNotMoveNeighbour: a hello P sent to another node,
// replayed to N from an attacker's address, does not move P there; a hello
// addressed to N from a new address (NAT rebinding) does.
func TestHelloForOthersDoesNotMoveNeighbour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn, cp, ca := nw.Listen(), nw.Listen(), nw.Listen()
		n := StartNode(t, Config{}, cn, nil) // the default timers
		nid := n.Identity()
		p, _ := identity.Generate(nil)
		other, _ := identity.Generate(nil)
		seq := uint64(100)
		// P receives at both addresses, so it echoes N's cookie for each.
		echoP, echoA := askCookie(t, cp, cn.LocalAddr(), p), askCookie(t, ca, cn.LocalAddr(), p)
		hello := func(to identity.SID, echo wire.Cookie) []byte {
			seq++
			return wire.AppendHello(nil, wire.Hello{SID: p.SID(), To: to, Epoch: 7, Seq: seq, MTU: 1500, Echo: echo}, p)
		}
		addrOf := func() string {
			for _, nb := range n.Neighbours() {
				if nb.SID == p.SID() {
					return nb.Addr.String()
				}
			}
			return ""
		}
		waitAddr := func(want string) {
			t.Helper()
			deadline := time.Now().Add(2 * time.Second)
			for addrOf() != want {
				if time.Now().After(deadline) {
					t.Fatalf("P at %q, want %q", addrOf(), want)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		cp.WriteTo(hello(identity.SID{}, echoP), cn.LocalAddr())
		waitAddr(cp.LocalAddr().String())
		stale := n.Stats().StaleHello
		ca.WriteTo(hello(other.SID(), echoA), cn.LocalAddr())
		deadline := time.Now().Add(2 * time.Second)
		for n.Stats().StaleHello == stale {
			if time.Now().After(deadline) {
				t.Fatal("replayed hello not counted")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if got := addrOf(); got != cp.LocalAddr().String() {
			t.Fatalf("a hello meant for another node moved P to %s", got)
		}
		ca.WriteTo(hello(nid.SID(), echoA), cn.LocalAddr())
		waitAddr(ca.LocalAddr().String())
	})
}
