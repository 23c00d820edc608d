package main

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestTrustClosesMesh: a listener whose instance trusts B (DIR/trusted)
// lets B connect; C, which is not trusted, never becomes its neighbour,
// so C's connect finds no route and fails. A --trust that is not a full
// SID is a usage error.
func TestTrustClosesMesh(t *testing.T) {
	t.Parallel()
	bInst, cInst := instance(t), instance(t)
	_, bSID, _ := runOnce(t, nil, "id", "self", "--instance", bInst)
	bSID = strings.TrimSpace(bSID)
	lInst := instance(t)
	if err := os.MkdirAll(lInst, 0o700); err != nil {
		t.Fatal(err)
	}
	trusted := "# the only node this one links with\n" + bSID + "  # B\n"
	if err := os.WriteFile(filepath.Join(lInst, "trusted"), []byte(trusted), 0o600); err != nil {
		t.Fatal(err)
	}
	echo := echoServer(t)
	p := start(t, nil, nil, "msp", "listen", "--instance", lInst, "--udp", "127.0.0.1:0", "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	m := p.waitLine(`listening as ([0-9A-F]{64}) on MDP port \d+ \(UDP ([0-9.:]+)\)`)
	lSID, lUDP := m[1], m[2]
	code, out, errOut := runOnce(t, strings.NewReader("trusted\n"), "msp", "connect", "--instance", bInst, "--udp", "127.0.0.1:0", "--peer", lUDP, "--timeout", "10s", lSID, "5000")
	if code != 0 || out != "trusted\n" {
		t.Fatalf("trusted B: exit %d, stdout %q: %s", code, out, errOut)
	}
	code, out, errOut = runOnce(t, strings.NewReader("stranger\n"), "msp", "connect", "--instance", cInst, "--udp", "127.0.0.1:0", "--peer", lUDP, "--timeout", "3s", lSID, "5000")
	if code != 1 || out != "" {
		t.Fatalf("untrusted C: exit %d, stdout %q: %s", code, out, errOut)
	}
	oneLine(t, errOut, "unreachable")
	code, _, errOut = runOnce(t, nil, "msp", "listen", "--instance", instance(t), "--udp", "127.0.0.1:0", "--trust", bSID[:16], "5001")
	if code != 2 {
		t.Errorf("--trust with a prefix: exit %d", code)
	}
	oneLine(t, errOut, "want a full SID")
}

// TestTrustDaemon: a detached daemon started with --trust keeps it (the
// flag reaches the daemon process): an untrusted node gets no route to it.
func TestTrustDaemon(t *testing.T) {
	t.Parallel()
	bInst := instance(t)
	_, bSID, _ := runOnce(t, nil, "id", "self", "--instance", bInst)
	dInst := instance(t)
	d := startDaemon(t, dInst, "--trust", strings.TrimSpace(bSID))
	echo := echoServer(t)
	l := start(t, nil, nil, "msp", "listen", "--instance", dInst, "--forward", echo.Addr().String(), "5000")
	l.waitLine("listening as")
	code, _, errOut := runOnce(t, strings.NewReader("x\n"), "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", d.udp, "--timeout", "3s", d.sid, "5000")
	if code != 1 {
		t.Fatalf("untrusted node connecting to a --trust daemon: exit %d: %s", code, errOut)
	}
	oneLine(t, errOut, "unreachable")
}
