package main

import (
	"net"
	"strings"
	"testing"
)

// TestDaemonPeerDown: a daemon started with --peer whose peer is down
// (a UDP socket that never answers): msp connect and id peers through it
// say, in one line, that the daemon's peer does not answer, and do not
// advise adding the --peer it was given.
func TestDaemonPeerDown(t *testing.T) {
	t.Parallel()
	peer := silentUDP(t)
	inst := instance(t)
	startDaemon(t, inst, "--peer", peer)
	want := "the daemon's peer " + peer + " does not answer"
	code, out, errOut := runOnce(t, nil, "msp", "connect", "--instance", inst, "--timeout", "1s", strings.Repeat("A", 64), "5000")
	if code != 1 || out != "" || strings.Contains(errOut, "add --peer") || strings.Contains(errOut, "start it with --peer") {
		t.Errorf("msp connect: exit %d, stdout %q, stderr %q: want exit 1 and no advice to add the --peer given", code, out, errOut)
	}
	oneLine(t, errOut, want)
	code, _, errOut = runOnce(t, nil, "id", "peers", "--instance", inst)
	if code != 0 || strings.Contains(errOut, "start it with --peer") {
		t.Errorf("id peers: exit %d, %q", code, errOut)
	}
	oneLine(t, errOut, want)

	t.Run("no peer given", func(t *testing.T) {
		inst := instance(t)
		startDaemon(t, inst)
		code, _, errOut := runOnce(t, nil, "msp", "connect", "--instance", inst, "--timeout", "1s", strings.Repeat("A", 64), "5000")
		if code != 1 {
			t.Errorf("exit %d", code)
		}
		oneLine(t, errOut, "add --peer")
	})
}

// silentUDP returns the address of a UDP socket on loopback that never
// answers, which stands for a peer that is down, until the test ends.
func silentUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.LocalAddr().String()
}
