package mesh_test

import (
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// plainConn hides the *net.UDPConn under it: a node on it reads and
// writes one datagram per system call.
type plainConn struct{ net.PacketConn }

// TestBatchAndFallbackNodes: a node with batched socket I/O and one on
// the fallback path, on loopback UDP, exchange 3000 datagrams each way
// (sizes across the small buffer class and past it), and every one
// arrives exactly once, in order.
func TestBatchAndFallbackNodes(t *testing.T) {
	// Ports hold every datagram: a reader starved of CPU does not lose any.
	timers := []meshtest.Option{meshtest.Timers(200*time.Millisecond, 5*time.Second),
		meshtest.Configure(func(_ int, c *mesh.Config) { c.PortQueue = 8192 })}
	udp := func() *net.UDPConn {
		c, err := mesh.ListenUDP("127.0.0.1:0", false)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	b := meshtest.Start(t, udp(), nil, timers...)
	a := meshtest.Start(t, plainConn{udp()}, []net.Addr{b.LocalAddr()}, timers...)
	meshtest.WaitConverged(t, meshtest.DefaultWait, a, b)
	if mesh.Batching(a) || mesh.Batching(b) != (runtime.GOOS == "linux") {
		t.Fatalf("batching: a %v, b %v", mesh.Batching(a), mesh.Batching(b))
	}
	const count = 3000
	size := func(i int) int { return 8 + (i*37)%3000 }
	var wg sync.WaitGroup
	for _, dir := range [][2]*mesh.Node{{a, b}, {b, a}} {
		from, to := dir[0], dir[1]
		src, err := from.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		dst, err := to.Bind(9)
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		wg.Add(2)
		go func() {
			defer wg.Done()
			msg := make([]byte, 4000)
			for i := range count {
				binary.BigEndian.PutUint32(msg, uint32(i))
				// Past 1113 bytes the write waits for the MTU probe to
				// find loopback's.
				_, err := src.WriteTo(msg[:size(i)], mesh.Addr{SID: to.SID(), Port: 9})
				for end := time.Now().Add(5 * time.Second); errors.Is(err, mesh.ErrTooLarge) && time.Now().Before(end); {
					time.Sleep(10 * time.Millisecond)
					_, err = src.WriteTo(msg[:size(i)], mesh.Addr{SID: to.SID(), Port: 9})
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 4000)
			for i := range count {
				dst.SetReadDeadline(time.Now().Add(10 * time.Second))
				k, _, err := dst.ReadFrom(buf)
				if err != nil {
					t.Errorf("datagram %d: %v (stats %+v)", i, err, to.Stats())
					return
				}
				if got := binary.BigEndian.Uint32(buf); got != uint32(i) || k != size(i) {
					t.Errorf("datagram %d: got #%d of %d bytes", i, got, k)
					return
				}
			}
			dst.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if _, _, err := dst.ReadFrom(buf); err == nil {
				t.Errorf("a datagram past the last")
			}
		}()
	}
	wg.Wait()
	// Frames written in batches count in the link's traffic too.
	for _, n := range []*mesh.Node{a, b} {
		nbs := n.Neighbours()
		if len(nbs) != 1 || nbs[0].FramesOut < count || nbs[0].FramesIn < count {
			t.Errorf("neighbours %+v: want one, with at least %d frames each way", nbs, count)
		}
	}
}

// TestBatchRelayChain: on loopback UDP, a sends 3000 datagrams to c
// through b, a batching node whose read loop writes the frames it relays
// at the end of each read batch (udp_batch.go). Each datagram b did not
// drop for a full queue (counted) arrives exactly once, whole.
func TestBatchRelayChain(t *testing.T) {
	opts := []meshtest.Option{meshtest.Timers(200*time.Millisecond, 5*time.Second),
		meshtest.Configure(func(_ int, c *mesh.Config) { c.PortQueue = 8192 })}
	c := meshtest.UDPNode(t, nil, opts...)
	b := meshtest.UDPNode(t, []net.Addr{c.LocalAddr()}, opts...)
	a := meshtest.UDPNode(t, []net.Addr{b.LocalAddr()}, opts...)
	meshtest.WaitConverged(t, meshtest.DefaultWait, a, b, c)
	bsid := b.SID()
	meshtest.WaitRoute(t, a, c.SID(), 2, &bsid, meshtest.DefaultWait)
	if mesh.Batching(b) != (runtime.GOOS == "linux") {
		t.Fatalf("b batching %v on %s", mesh.Batching(b), runtime.GOOS)
	}
	src, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := c.Bind(9)
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	const count = 3000
	size := func(i int) int { return 8 + (i*37)%1000 }
	go func() {
		msg := make([]byte, 1100)
		for i := range count {
			binary.BigEndian.PutUint32(msg, uint32(i))
			if _, err := src.WriteTo(msg[:size(i)], mesh.Addr{SID: c.SID(), Port: 9}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	seen := make([]bool, count)
	got := 0
	buf := make([]byte, 2000)
	for {
		dst.SetReadDeadline(time.Now().Add(2 * time.Second))
		k, _, err := dst.ReadFrom(buf)
		if err != nil {
			break // the last datagram came 2 s ago
		}
		i := binary.BigEndian.Uint32(buf)
		if i >= count || seen[i] || k != size(int(i)) {
			t.Fatalf("datagram #%d of %d bytes: unknown, twice or cut", i, k)
		}
		seen[i] = true
		got++
	}
	st := b.Stats()
	if uint64(got) != count-st.RelayDrops || st.Relayed < uint64(got) {
		t.Errorf("c got %d of %d datagrams; b relayed %d, dropped %d", got, count, st.Relayed, st.RelayDrops)
	}
}
