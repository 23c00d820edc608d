package mesh

import (
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
)

// TestSetUnbound: a datagram to a port nothing is bound to reaches the
// SetUnbound port with its source; a bound port still gets its own; once
// the fallback is closed (or unset), such datagrams are dropped again.
func TestSetUnbound(t *testing.T) {
	nw := memnet.New(1)
	t.Cleanup(func() { nw.Close() })
	a, b, _, _ := memPair(t, nw, Config{})
	fb, err := b.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.SetUnbound(fb); err != nil {
		t.Fatal(err)
	}
	if err := a.SetUnbound(fb); err == nil {
		t.Error("SetUnbound with another node's port: no error")
	}
	from, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	bound, err := b.Bind(600)
	if err != nil {
		t.Fatal(err)
	}
	defer bound.Close()
	send := func(port uint16, msg string) {
		t.Helper()
		if _, err := from.WriteTo([]byte(msg), Addr{SID: b.SID(), Port: port}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(c *PacketConn, want string) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		k, src, err := c.ReadFrom(buf)
		if err != nil || string(buf[:k]) != want || src != from.LocalAddr() {
			t.Fatalf("read %q from %v (%v), want %q from %v", buf[:k], src, err, want, from.LocalAddr())
		}
	}
	send(599, "to nobody")
	read(fb, "to nobody")
	send(600, "to bound")
	read(bound, "to bound")
	fb.Close()
	before := b.Stats().NoPort
	send(599, "dropped")
	deadline := time.Now().Add(5 * time.Second)
	for b.Stats().NoPort == before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if b.Stats().NoPort != before+1 {
		t.Errorf("NoPort %d, want %d after the fallback closed", b.Stats().NoPort, before+1)
	}
	if err := b.SetUnbound(fb); err == nil {
		t.Error("SetUnbound with a closed port: no error")
	}
}
