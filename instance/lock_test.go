package instance

import (
	"errors"
	"net"
	"os"
	"strings"
	"testing"
)

// TestOneNodePerInstance: an embedded node holds the instance lock; a
// second one of the same instance is refused, naming the holder, until the
// first closes.
func TestOneNodePerInstance(t *testing.T) {
	dir := t.TempDir()
	m, err := Open(dir, NodeOptions{UDP: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := Open(dir, NodeOptions{UDP: "127.0.0.1:0"})
	var nr *NodeRunningError
	if !errors.As(err, &nr) || nr.PID != os.Getpid() {
		if m2 != nil {
			m2.Close()
		}
		m.Close()
		t.Fatalf("second Open: %v, want a NodeRunningError naming pid %d", err, os.Getpid())
	}
	for _, want := range []string{"a node of instance " + dir + " already runs (pid ", "servald start"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}
	// The UDP port of the running node: the new node is refused by the
	// lock, before it tries the port.
	m2, err = Open(dir, NodeOptions{UDP: m.UDPAddr().String()})
	if !errors.As(err, &nr) {
		if m2 != nil {
			m2.Close()
		}
		t.Errorf("Open on the running node's UDP address: %v", err)
	}
	// Another program's port: choose another.
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if m2, err = Open(t.TempDir(), NodeOptions{UDP: busy.LocalAddr().String()}); err == nil || errors.As(err, &nr) || !strings.Contains(err.Error(), "in use by another program or another instance's node: choose another with --udp") {
		if m2 != nil {
			m2.Close()
		}
		t.Errorf("Open on a busy port: %v", err)
	}
	m.Close()
	m3, err := Open(dir, NodeOptions{UDP: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("Open after the first closed: %v", err)
	}
	m3.Close()
}
