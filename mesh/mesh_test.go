package mesh_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// udpPair starts two nodes on loopback UDP. These tests run on the wall
// clock: the neighbour timeout is the default 5 s, so that a busy machine
// starving a node of CPU for a second does not drop the link under test.
func udpPair(t *testing.T) (a, b *mesh.Node) {
	t.Helper()
	return meshtest.UDPPair(t, meshtest.Timers(200*time.Millisecond, 5*time.Second))
}

func TestDatagramsOverUDP(t *testing.T) {
	// The port's queue holds all 5000: this test is about order and
	// delivery over UDP, not the queue's bound (with batched writes the
	// sender may run 2048 ahead of a reader starved of CPU).
	a, b := meshtest.UDPPair(t, meshtest.Timers(200*time.Millisecond, 5*time.Second),
		meshtest.Configure(func(_ int, c *mesh.Config) { c.PortQueue = 8192 }))
	pa, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	pb, err := b.Bind(7)
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	if _, err := b.Bind(7); !errors.Is(err, mesh.ErrPortInUse) {
		t.Fatalf("second bind of port 7: %v", err)
	}
	const count = 5000
	go func() {
		msg := make([]byte, 1000)
		for i := 0; i < count; i++ {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := pa.WriteTo(msg, mesh.Addr{SID: b.SID(), Port: 7}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	buf := make([]byte, 2000)
	pb.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < count; i++ {
		k, from, err := pb.ReadFrom(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v (stats %+v)", i, err, b.Stats())
		}
		if got := binary.BigEndian.Uint32(buf); got != uint32(i) || k != 1000 {
			t.Fatalf("datagram %d: got #%d of %d bytes", i, got, k)
		}
		if from.(mesh.Addr) != pa.LocalAddr().(mesh.Addr) {
			t.Fatalf("from %v, want %v", from, pa.LocalAddr())
		}
	}
	t.Logf("a: %+v", a.Stats())
}

func TestMTUProbeOnLoopback(t *testing.T) {
	a, b := udpPair(t)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pa, _ := a.Bind(0)
		max := pa.MaxPayload(b.SID())
		pa.Close()
		if max > 16000 {
			pb, _ := b.Bind(9)
			defer pb.Close()
			msg := bytes.Repeat([]byte{7}, max)
			pa, _ := a.Bind(0)
			defer pa.Close()
			if _, err := pa.WriteTo(msg, mesh.Addr{SID: b.SID(), Port: 9}); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 70000)
			pb.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := pb.ReadFrom(buf)
			if err != nil || !bytes.Equal(buf[:k], msg) {
				t.Fatalf("large datagram: %d bytes, %v", k, err)
			}
			if _, err := pa.WriteTo(make([]byte, max+1), mesh.Addr{SID: b.SID(), Port: 9}); !errors.Is(err, mesh.ErrTooLarge) {
				t.Fatalf("oversized write: %v", err)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("link MTU on loopback never rose above the base MTU")
}

func TestNoNeighbourHint(t *testing.T) {
	n := meshtest.UDPNode(t, nil, meshtest.Timers(time.Second, 5*time.Second)) // the default timers
	other, _ := identity.Generate(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := n.WaitReachable(ctx, other.SID())
	if !errors.Is(err, mesh.ErrNoRoute) || !bytes.Contains([]byte(err.Error()), []byte("--peer")) {
		t.Fatalf("err = %v, want ErrNoRoute with a --peer hint", err)
	}
}
