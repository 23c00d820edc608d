package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// TestWriteToWithinThroughDaemon: Port.WriteToWithin carries the budget
// over the control socket (a TIMED frame) to the daemon's node, which
// delivers a datagram whose budget covers the path (two memnet hops of
// 20 ms) and drops, counting Late (also in the status reply), every one
// whose budget does not; a plain datagram written behind them arrives.
func TestWriteToWithinThroughDaemon(t *testing.T) {
	m := meshtest.Chain(t, 3, memnet.LinkConfig{Delay: 20 * time.Millisecond}, meshtest.Timers(200*time.Millisecond, time.Second))
	a, z := m.Nodes[0], m.Nodes[2]
	srv, _ := serve(t, a)
	c := dial(t, srv.SocketPath())
	p := bind(t, c, 0)
	pz, err := z.Bind(9)
	if err != nil {
		t.Fatal(err)
	}
	defer pz.Close()
	to := mesh.Addr{SID: z.SID(), Port: 9}
	buf := make([]byte, 64)

	// Within budget: delivered, from the daemon's port.
	sent := time.Now()
	if _, err := p.WriteToWithin([]byte("in time"), to, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pz.SetReadDeadline(time.Now().Add(5 * time.Second))
	k, from, err := pz.ReadFrom(buf)
	if err != nil || !bytes.Equal(buf[:k], []byte("in time")) || from != p.LocalAddr() {
		t.Fatalf("ReadFrom = %q from %v, %v", buf[:k], from, err)
	}
	if took := time.Since(sent); took > 500*time.Millisecond {
		t.Errorf("delivered %v after the write, beyond its budget", took)
	}

	// Shorter than the path (40 ms): none delivered, each counted Late.
	lateBefore := a.Stats().Late + m.Nodes[1].Stats().Late
	const count = 20
	for range count {
		if _, err := p.WriteToWithin([]byte("too late"), to, 25*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// And one with no budget at all.
	if _, err := p.WriteToWithin([]byte("too late"), to, 0); err != nil {
		t.Fatal(err)
	}
	// A plain datagram behind them still arrives.
	if _, err := p.WriteTo([]byte("plain"), to); err != nil {
		t.Fatal(err)
	}
	k, _, err = pz.ReadFrom(buf)
	if err != nil || string(buf[:k]) != "plain" {
		t.Fatalf("after the late ones: ReadFrom = %q, %v (a late datagram was delivered?)", buf[:k], err)
	}
	pz.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if k, _, err := pz.ReadFrom(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a late datagram was delivered: %q, %v", buf[:k], err)
	}
	// At least once each: on real time, an ACK held up on a busy machine
	// can make a sender give up (and count) a frame the next hop dropped.
	late := a.Stats().Late + m.Nodes[1].Stats().Late - lateBefore
	if late < count+1 {
		t.Errorf("Late %d, want at least %d", late, count+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.Late != a.Stats().Late || st.Stats.Late == 0 {
		t.Errorf("status says Late %d, the node %d", st.Stats.Late, a.Stats().Late)
	}
}

// TestWriteToWithinOldDaemon: to a daemon that did not announce TIMED
// frames in its BIND reply, WriteToWithin sends nothing (an older daemon
// would close the connection on the unknown frame) and says so.
func TestWriteToWithinOldDaemon(t *testing.T) {
	a, b := pair(t)
	srv, _ := serve(t, a)
	c := dial(t, srv.SocketPath())
	p := bind(t, c, 0)
	p.timed = false // as an older daemon's reply leaves it
	to := mesh.Addr{SID: b.SID(), Port: 9}
	if _, err := p.WriteToWithin([]byte("x"), to, time.Second); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("WriteToWithin to an older daemon: %v", err)
	}
	if _, err := p.WriteTo([]byte("x"), to); err != nil {
		t.Fatalf("WriteTo after it: %v", err)
	}
}
