package main

import (
	"strings"
	"testing"
	"time"
)

// TestPeersTwiceSameInstance: `id peers --peer X` run twice in a row in
// one instance starts a node with the same SID twice, each on a new
// ephemeral port. The daemon X still holds the first run's node as a
// neighbour at the old port when the second starts; it takes the second
// at once, so both runs list X (before, the second said "peer does not
// answer": X waited for the old entry's 5 s timeout). --wait 4s is less
// than that timeout.
func TestPeersTwiceSameInstance(t *testing.T) {
	x := startDaemon(t, instance(t))
	inst := instance(t)
	for i := range 2 {
		t0 := time.Now()
		code, out, errOut := runOnce(t, nil, "id", "peers", "--instance", inst, "--udp", "127.0.0.1:0", "--peer", x.udp, "--wait", "4s")
		took := time.Since(t0)
		t.Logf("run %d: exit %d in %v: %q %q", i+1, code, took.Round(time.Millisecond), out, errOut)
		if code != 0 || !strings.HasPrefix(out, x.sid+" hops=1 ") {
			t.Fatalf("run %d of id peers: exit %d, stdout %q, stderr %q; want %s first", i+1, code, out, errOut, x.sid)
		}
	}
}
