package main

import (
	"strings"
	"testing"
)

// TestServiceTwoOffers: two nodes offer ssh; service find lists both, and
// msp connect --service=ssh says which it took and that the other offers
// it too.
func TestServiceTwoOffers(t *testing.T) {
	t.Parallel()
	echo := echoServer(t).Addr().String()
	a := startListen(t, nil, nil, "--service=ssh", "--forward", echo, "5000")
	b := startListen(t, nil, nil, "--peer", a.udp, "--service=ssh", "--forward", echo, "5001")
	inst := instance(t)
	code, out, errOut := runOnce(t, nil, "service", "find", "ssh", "--instance", inst, "--udp", "127.0.0.1:0", "--peer", a.udp, "--timeout", "3s")
	if code != 0 || !strings.Contains(out, a.sid+" ssh.mdp.port=5000\n") || !strings.Contains(out, b.sid+" ssh.mdp.port=5001\n") {
		t.Fatalf("service find: exit %d, stdout %q: %s", code, out, errOut)
	}
	code, out, errOut = runOnce(t, strings.NewReader("hi\n"), "msp", "connect", "--instance", inst, "--udp", "127.0.0.1:0", "--peer", a.udp, "--service=ssh")
	if code != 0 || out != "hi\n" {
		t.Fatalf("connect --service: exit %d, stdout %q: %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "service ssh is at "+a.sid+" port 5000 (the nearest of 2 that offer it: ") || !strings.Contains(errOut, b.sid) {
		t.Fatalf("connect --service did not announce its choice among 2: %s", errOut)
	}
}
