package main

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/servald/servald/identity"
)

// TestPingTraceFourHops: five daemons in a chain on loopback, each given
// only the next as --peer, and a sixth at the end started --no-echo (a
// detached daemon: the option reaches the child). From node 1: ping over 4
// hops prints hops=4 and RTTs and exits 0; --json gives one object per
// line; trace lists the 4 hops in order with their addresses; an embedded
// node beside node 1 pings at 5 hops and traces the 5; an unknown SID, and the node that
// does not answer, exit 1 with one line.
func TestPingTraceFourHops(t *testing.T) {
	t.Parallel()
	n5 := startForeground(t)
	n4 := startForeground(t, "--peer", n5.udp)
	n3 := startForeground(t, "--peer", n4.udp)
	n2 := startForeground(t, "--peer", n3.udp)
	n1 := startForeground(t, "--peer", n2.udp)
	quiet := startDaemon(t, instance(t), "--peer", n5.udp, "--no-echo")
	chain := []*fgDaemon{n1, n2, n3, n4, n5}

	code, out, errOut := runOnce(t, nil, "ping", "--instance", n1.inst, "-c", "3", "-i", "0.1", "--timeout", "20s", n5.sid)
	if code != 0 {
		t.Fatalf("ping over 4 hops: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 8 || lines[0] != "PING "+n5.sid+": 56 data bytes" {
		t.Fatalf("ping output:\n%s", out)
	}
	replyRe := regexp.MustCompile(`^64 bytes from ` + n5.sid[:8] + `: seq=(\d+) hops=4 time=(\d+(\.\d+)?) ms$`)
	for i, l := range lines[1:4] {
		m := replyRe.FindStringSubmatch(l)
		if m == nil || m[1] != strconv.Itoa(i+1) {
			t.Fatalf("reply line %d: %q, want seq=%d hops=4 and a time", i+1, l, i+1)
		}
		if rtt, _ := strconv.ParseFloat(m[2], 64); rtt <= 0 {
			t.Errorf("reply line %d: time %s", i+1, m[2])
		}
	}
	if lines[4] != "" || lines[5] != "--- "+n5.sid[:8]+" ping statistics ---" ||
		!strings.HasPrefix(lines[6], "3 packets transmitted, 3 received, 0% packet loss, time ") {
		t.Errorf("ping summary:\n%s", strings.Join(lines[4:], "\n"))
	}
	if !regexp.MustCompile(`(?m)^rtt min/avg/max/mdev = [\d.]+/[\d.]+/[\d.]+/[\d.]+ ms$`).MatchString(out) {
		t.Errorf("no rtt line:\n%s", out)
	}

	// --json: one object per line, the summary last.
	code, out, errOut = runOnce(t, nil, "ping", "--instance", n1.inst, "-c", "2", "-i", "100ms", "--json", n5.sid[:12])
	if code != 0 {
		t.Fatalf("ping --json: exit %d, stderr %q", code, errOut)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 {
		t.Fatalf("ping --json printed %d lines:\n%s", len(lines), out)
	}
	for i, l := range lines[:2] {
		var r struct {
			Type string
			Seq  int
			From string
			Hops *int
			RTT  float64 `json:"time_ms"`
		}
		if err := json.Unmarshal([]byte(l), &r); err != nil || r.Type != "reply" || r.Seq != i+1 || r.From != n5.sid || r.Hops == nil || *r.Hops != 4 || r.RTT <= 0 {
			t.Errorf("--json line %d: %s (%v)", i+1, l, err)
		}
	}
	var sum struct {
		Type           string
		Sent, Received int
		Loss           float64 `json:"loss_pct"`
		Avg            float64 `json:"avg_ms"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil || sum.Type != "summary" || sum.Sent != 2 || sum.Received != 2 || sum.Loss != 0 || sum.Avg <= 0 {
		t.Errorf("--json summary: %s (%v)", lines[2], err)
	}

	// trace: the 4 hops in order, each with the address its predecessor
	// knows it at (where the test started it) and an RTT.
	code, out, errOut = runOnce(t, nil, "trace", "--instance", n1.inst, n5.sid)
	if code != 0 {
		t.Fatalf("trace: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 5 || lines[0] != "trace to "+n5.sid+", 32 hops max" {
		t.Fatalf("trace output:\n%s", out)
	}
	for k := 1; k <= 4; k++ {
		want := fmt.Sprintf(`^ ?%d  %s  %s  \d+(\.\d+)? ms$`, k, chain[k].sid[:8], regexp.QuoteMeta(chain[k].udp))
		if !regexp.MustCompile(want).MatchString(lines[k]) {
			t.Errorf("trace line %d: %q, want node %d at %s", k, lines[k], k+1, chain[k].udp)
		}
	}
	code, out, _ = runOnce(t, nil, "trace", "--instance", n1.inst, "--json", n5.sid)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("trace --json: exit %d:\n%s", code, out)
	}
	for k, l := range lines {
		var h struct {
			Hop  int
			SID  string
			Left int     `json:"hops_left"`
			RTT  float64 `json:"time_ms"`
		}
		if err := json.Unmarshal([]byte(l), &h); err != nil || h.Hop != k+1 || h.SID != chain[k+1].sid || h.Left != 3-k || h.RTT <= 0 {
			t.Errorf("trace --json line %d: %s (%v)", k+1, l, err)
		}
	}

	// An embedded node linked to node 1 is 5 hops from node 5.
	code, out, errOut = runOnce(t, nil, "ping", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", n1.udp, "-c", "1", "--timeout", "30s", n5.sid)
	if code != 0 || !strings.Contains(out, "64 bytes from "+n5.sid[:8]+": seq=1 hops=5 time=") {
		t.Errorf("ping from an embedded node: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	// And traces it through node 1.
	code, out, errOut = runOnce(t, nil, "trace", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", n1.udp, "--timeout", "30s", n5.sid)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 6 {
		t.Fatalf("trace from an embedded node: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	for k := 1; k <= 5; k++ {
		if want := fmt.Sprintf("%2d  %s  %s  ", k, chain[k-1].sid[:8], chain[k-1].udp); !strings.HasPrefix(lines[k], want) {
			t.Errorf("trace from an embedded node, line %d: %q, want %q...", k, lines[k], want)
		}
	}

	// An unknown SID: exit 1, one line, nothing on stdout.
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runOnce(t, nil, "ping", "--instance", n1.inst, "--timeout", "1s", id.SID().String())
	if code != 1 || out != "" {
		t.Errorf("ping to an unknown SID: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "no route to node "+id.SID().String())

	// The node started --no-echo is reachable but answers neither.
	code, out, errOut = runOnce(t, nil, "ping", "--instance", n1.inst, "-c", "2", "-i", "0.1", "-W", "500ms", "--timeout", "20s", quiet.sid)
	if code != 1 || !strings.Contains(out, "2 packets transmitted, 0 received, 100% packet loss") {
		t.Errorf("ping to a --no-echo node: exit %d, stdout:\n%s", code, out)
	}
	oneLine(t, errOut, "no reply")
	code, out, errOut = runOnce(t, nil, "trace", "--instance", n1.inst, "--timeout", "3s", quiet.sid)
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != 1 || len(lines) != 6 || !strings.HasSuffix(lines[5], quiet.sid[:8]+"  "+quiet.udp+"  *") {
		t.Errorf("trace to a --no-echo node: exit %d, stdout:\n%s", code, out)
	}
	oneLine(t, errOut, "hop 5 ("+quiet.sid[:8]+"): no reply")
}

// TestPingUsage: mistakes in the options are usage errors (exit 2), found
// before any node starts.
func TestPingUsage(t *testing.T) {
	sid := strings.Repeat("AB", 32)
	for _, args := range [][]string{
		{"ping", sid, "-s", "-1"},
		{"ping", sid, "-s", "20000"},
		{"ping", sid, "-i", "soon"},
		{"ping", sid, "-i", "0"},
		{"ping", sid, "-c", "-2"},
		{"ping", sid, "-W", "0s"},
		{"ping", "XYZ"},
		{"ping"},
		{"trace", sid, "--max-hops", "0"},
		{"trace", sid, "--timeout", "0s"},
	} {
		code, stdout, stderr := runInProcess(t, append(args, "--instance", t.TempDir())...)
		if code != 2 || stdout != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want usage error", args, code, stdout, stderr)
		}
	}
}
