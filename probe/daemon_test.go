package probe_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/probe"
)

// TestThroughDaemon: ping and trace work through a daemon's control socket
// as they do on an embedded node: daemon.Port as the port, the client's
// Routes and Neighbours as the table.
func TestThroughDaemon(t *testing.T) {
	c := newChain(t, 4)
	c.respondAll(t)
	dir := t.TempDir()
	srv, err := daemon.Listen(daemon.Config{Dir: dir, Node: c.nodes[0]})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	cl, err := daemon.Dial(timeout(t, 5*time.Second), daemon.SocketPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	port := func() *daemon.Port {
		t.Helper()
		p, err := cl.Bind(timeout(t, 5*time.Second), 0)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	table := probe.Funcs{
		RoutesFunc:     func() ([]mesh.Route, error) { return cl.Routes(timeout(t, 5*time.Second)) },
		NeighboursFunc: func() ([]mesh.Neighbour, error) { return cl.Neighbours(timeout(t, 5*time.Second)) },
	}

	cfg := probe.PingConfig{Count: 2, Interval: 20 * time.Millisecond, Size: 100}
	var replies []probe.Reply
	sum, err := probe.RunPing(timeout(t, 10*time.Second), port(), c.nodes[3].SID(), cfg, func(r probe.Reply) { replies = append(replies, r) })
	if err != nil || sum.Received != 2 || len(replies) != 2 {
		t.Fatalf("ping through the daemon: %+v, %v", sum, err)
	}
	for _, r := range replies {
		if r.Hops != 3 || r.Size != probe.HeaderLen+100 || r.RTT < 6*linkDelay {
			t.Errorf("reply %+v, want hops=3, %d bytes", r, probe.HeaderLen+100)
		}
	}

	hops, err := probe.Trace(timeout(t, 10*time.Second), port(), cl.SID(), table, c.nodes[3].SID(), probe.TraceConfig{}, nil)
	if err != nil || len(hops) != 3 {
		t.Fatalf("trace through the daemon: %+v, %v", hops, err)
	}
	for i, h := range hops {
		if h.SID != c.nodes[i+1].SID() || h.Addr != c.conns[i+1].LocalAddr().String() {
			t.Errorf("hop %d: %+v, want node %d at %s", i+1, h, i+1, c.conns[i+1].LocalAddr())
		}
	}

	// Through the daemon, a write's "no route" comes back with the next
	// write: the run still stops there, with the mesh's error.
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	sum, err = probe.RunPing(timeout(t, 10*time.Second), port(), id.SID(), probe.PingConfig{Count: 10, Interval: 50 * time.Millisecond}, nil)
	if !errors.Is(err, mesh.ErrNoRoute) || sum.Received != 0 {
		t.Fatalf("ping to an unknown SID through the daemon: %+v, %v", sum, err)
	}
	if took := time.Since(start); took > 2*time.Second { // not 10 intervals and the 2 s wait
		t.Errorf("ping to an unknown SID through the daemon took %v", took)
	}
	t.Logf("unknown SID: %v", err)
}
