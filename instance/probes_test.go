package instance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/servald/servald/mesh"
	"github.com/servald/servald/probe"
)

// TestServeProbes: a node answers ping unless NoEcho, which leaves the
// ports unbound.
func TestServeProbes(t *testing.T) {
	a, b := memPair(t, nil, nil)
	c, err := ServeProbes(b, NodeOptions{})
	if err != nil || c == nil {
		t.Fatalf("ServeProbes: %v, %v", c, err)
	}
	pc, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r, err := probe.Ping(ctx, pc, b.SID(), 8); err != nil || r.Hops != 1 {
		t.Fatalf("ping: %+v, %v", r, err)
	}
	if _, err := b.Bind(probe.EchoPort); !errors.Is(err, mesh.ErrPortInUse) {
		t.Fatalf("echo port while answering: %v, want in use", err)
	}
	c.Close()
	if c, err := ServeProbes(b, NodeOptions{NoEcho: true}); c != nil || err != nil {
		t.Fatalf("ServeProbes with NoEcho: %v, %v", c, err)
	}
	for _, port := range []uint16{probe.EchoPort, probe.TracePort} {
		pc, err := b.Bind(port)
		if err != nil {
			t.Fatalf("port %d after Close, with NoEcho: %v", port, err)
		}
		pc.Close()
	}
}

// TestOpenEmbeddedAnswersPing: a node Open starts answers ping (its echo
// port is taken) unless NoEcho, and Close lets the port go.
func TestOpenEmbeddedAnswersPing(t *testing.T) {
	for _, noEcho := range []bool{false, true} {
		m, err := Open(t.TempDir(), NodeOptions{UDP: "127.0.0.1:0", NoEcho: noEcho})
		if err != nil {
			t.Fatal(err)
		}
		pc, err := m.Bind(probe.EchoPort)
		if noEcho != (err == nil) {
			t.Errorf("NoEcho %v: binding the echo port: %v", noEcho, err)
		}
		if err == nil {
			pc.Close()
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
