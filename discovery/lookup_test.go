package discovery

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// nodeNet is a *mesh.Node as Lookup asks through it, counting rounds.
type nodeNet struct {
	n      *mesh.Node
	rounds atomic.Int32
}

func (nn *nodeNet) Self() identity.SID            { return nn.n.SID() }
func (nn *nodeNet) Routes() ([]mesh.Route, error) { return nn.n.Routes(), nil }
func (nn *nodeNet) Port() (PacketConn, error) {
	nn.rounds.Add(1)
	return nn.n.Bind(0)
}

// TestLookupWaitsForService: Lookup asks again in rounds until the
// service appears, and returns the nearest answer.
func TestLookupWaitsForService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		nw := &nodeNet{n: a}
		rb := responder(t, b)
		added := make(chan error, 1)
		time.AfterFunc(1500*time.Millisecond, func() { added <- rb.Add("ssh", 5000) }) // past the first round
		start := time.Now()
		ans, err := Lookup(context.Background(), nw, "ssh", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-added; err != nil {
			t.Fatal(err)
		}
		if ans.SID != b.SID() || ans.Port != 5000 || ans.Hops != 1 {
			t.Errorf("Lookup = %v, want %s ssh.mdp.port=5000", ans, b.SID())
		}
		if r := nw.rounds.Load(); r < 2 {
			t.Errorf("answered after %v in %d round(s), want at least 2", time.Since(start), r)
		}
		// A nearer node offering it wins.
		responder(t, a, Service{"ssh", 22})
		if ans, err := Lookup(context.Background(), nw, "ssh", 10*time.Second); err != nil || ans.SID != a.SID() || ans.Port != 22 {
			t.Errorf("with this node offering it too: %v, %v; want this node's", ans, err)
		}
	})
}

// TestLookupGivesUp: no answer within the time given is ErrNoService,
// with how many nodes were asked; rounds are at least LookupGap apart.
func TestLookupGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, b := meshPair(t)
		responder(t, a)
		responder(t, b, Service{"web", 80})
		nw := &nodeNet{n: a}
		const within = 700 * time.Millisecond
		start := time.Now()
		_, err := Lookup(context.Background(), nw, "ssh", within)
		took := time.Since(start)
		if !errors.Is(err, ErrNoService) || err.Error() != "no node answered for service ssh within 700ms (2 nodes asked)" {
			t.Fatalf("Lookup = %v", err)
		}
		if took < within || took > within+2*time.Second {
			t.Errorf("gave up after %v, want about %v", took, within)
		}
		// Every node answers at once, so rounds follow each other LookupGap apart.
		if r, most := nw.rounds.Load(), int32(within/LookupGap)+1; r < 2 || r > most {
			t.Errorf("%d rounds in %v, want 2 to %d", r, within, most)
		}
	})
}

func TestLookupCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a, _ := meshPair(t)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := Lookup(ctx, &nodeNet{n: a}, "ssh", 10*time.Second)
		if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "no node answered") {
			t.Errorf("cancelled: %v, want context.Canceled", err)
		}
		if _, err := Lookup(context.Background(), &nodeNet{n: a}, "bad name", time.Second); err == nil {
			t.Error("Lookup accepted an invalid name")
		}
	})
}
