package main

// End-to-end tests of split transport with real servald processes on
// loopback: msp connect --split -> (N TCP connections) -> msp listen --split.

import (
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// splitListener is a running `msp listen --split` and where it takes
// split sessions.
type splitListener struct {
	*listener
	split string
}

// startSplitListen runs `servald msp listen --split=127.0.0.1:0` with args.
func startSplitListen(t testing.TB, stdin io.Reader, stdout io.Writer, args ...string) *splitListener {
	t.Helper()
	l := startListen(t, stdin, stdout, append([]string{"--split", "127.0.0.1:0"}, args...)...)
	m := l.waitLine(`split sessions on TCP (127\.0\.0\.1:\d+)`)
	return &splitListener{listener: l, split: m[1]}
}

// splitConnectArgs are the arguments of `msp connect --split` to l.
func splitConnectArgs(t testing.TB, l *splitListener, extra ...string) []string {
	return append([]string{"msp", "connect", "--instance", instance(t), "--split", l.split}, extra...)
}

// splitCounters parses the -v exit line of split counters.
func splitCounters(t testing.TB, stderr string) map[string]int {
	t.Helper()
	var line string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.HasPrefix(l, "servald: split counters:") {
			line = l
		}
	}
	if line == "" {
		t.Fatalf("no split counters printed; stderr:\n%s", stderr)
	}
	// Worded so that parity at work does not read like loss.
	if !strings.Contains(line, "blocks completed from parity") || !strings.Contains(line, "no data lost") {
		t.Errorf("counters line %q does not say what the parity counter means", line)
	}
	out := map[string]int{}
	for _, k := range []string{"sessions", "shards sent", "received", "sent again", "blocks completed from parity", "asked for again", "connections opened", "re-opened", "lost"} {
		m := regexp.MustCompile(`\b` + regexp.QuoteMeta(k) + ` (\d+)`).FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("counter %q missing from %q", k, line)
		}
		out[k], _ = strconv.Atoi(m[1])
	}
	return out
}

// TestSplitTransfer: 256 MiB through msp connect --split --conns=8
// --fec=10:3 to msp listen --split --forward arrive with the same SHA-256;
// both sides print their counters on exit with -v.
func TestSplitTransfer(t *testing.T) {
	t.Parallel()
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	l := startSplitListen(t, nil, nil, "-v", "--fec=10:3", "--once", "--forward", strconv.Itoa(sink.Addr().(*net.TCPAddr).Port), "5000")
	port := freePort(t)
	cp := start(t, nil, nil, splitConnectArgs(t, l, "-v", "--conns=8", "--fec=10:3", "--once", "--forward", strconv.Itoa(port), l.sid, "5000")...)
	const size = 256 << 20
	sendToSink(t, fmt.Sprintf("127.0.0.1:%d", port), sink, size)
	if code := cp.wait(30 * time.Second); code != 0 {
		t.Fatalf("connect --once exited %d: %s", code, cp.stderr)
	}
	if code := l.wait(30 * time.Second); code != 0 {
		t.Fatalf("listen --once exited %d: %s", code, l.stderr)
	}
	cc, lc := splitCounters(t, cp.stderr.String()), splitCounters(t, l.stderr.String())
	t.Logf("connect: %v", cc)
	t.Logf("listen: %v", lc)
	// 256 MiB in blocks of 10 x 16 KiB: at least 1639 blocks, 13 shards each.
	const minShards = size / (16 << 10) / 10 * 13
	if cc["sessions"] != 1 || cc["connections opened"] < 8 || cc["shards sent"] < minShards {
		t.Errorf("connect counters %v: want 1 session, 8 connections, at least %d shards sent", cc, minShards)
	}
	if lc["sessions"] != 1 || lc["connections opened"] < 8 || lc["received"] < minShards*10/13 {
		t.Errorf("listen counters %v: want 1 session, 8 connections, at least %d shards received", lc, minShards*10/13)
	}
}

// TestSplitStdio moves 4 MiB through stdin/stdout over split transport in
// each direction.
func TestSplitStdio(t *testing.T) {
	t.Parallel()
	stdioBothWays(t, 4<<20, splitStdioListen)
}

// TestSplitKillPeer: kill -9 of either side of a stdio tunnel over split
// transport makes the other exit non-zero, as over the mesh.
func TestSplitKillPeer(t *testing.T) {
	t.Parallel()
	killPeerCases(t, nil, splitStdioListen)
}

// TestSplitRefusals: a SID that is not the listener's, a client not in
// --allow and a --fec that differs are refused with one clear line and a
// non-zero exit, and the listener goes on serving.
func TestSplitRefusals(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	eport := strconv.Itoa(echo.Addr().(*net.TCPAddr).Port)

	t.Run("wrong SID", func(t *testing.T) {
		l := startSplitListen(t, nil, nil, "--forward", eport, "5000")
		code, out, errOut := runOnce(t, strings.NewReader("x"), splitConnectArgs(t, l, strings.Repeat("B", 64), "5000")...)
		if code == 0 || out != "" {
			t.Fatalf("connect to a wrong SID: exit %d, stdout %q", code, out)
		}
		oneLine(t, errOut, "is not "+strings.Repeat("B", 64))
		l.waitLine(`asked for another SID`)
		splitEcho(t, l)
	})
	t.Run("not in --allow", func(t *testing.T) {
		l := startSplitListen(t, nil, nil, "--allow", strings.Repeat("C", 64), "--forward", eport, "5000")
		code, out, errOut := runOnce(t, strings.NewReader("secret"), splitConnectArgs(t, l, l.sid, "5000")...)
		if code == 0 || out != "" {
			t.Fatalf("connect not in --allow: exit %d, stdout %q", code, out)
		}
		oneLine(t, errOut, "refused")
		l.waitLine(`refused a node not in the allow list`)
	})
	t.Run("fec mismatch", func(t *testing.T) {
		l := startSplitListen(t, nil, nil, "--fec=8:2", "--forward", eport, "5000")
		code, out, errOut := runOnce(t, strings.NewReader("x"), splitConnectArgs(t, l, "--fec=10:3", l.sid, "5000")...)
		if code == 0 || out != "" {
			t.Fatalf("connect with another --fec: exit %d, stdout %q", code, out)
		}
		oneLine(t, errOut, "fec mismatch: ours 10:3, the listener's 8:2")
		l.waitLine(`fec mismatch: local 8:2, peer 10:3`)
		splitEcho(t, l, "--fec=8:2")
	})
	t.Run("payload mismatch", func(t *testing.T) {
		l := startSplitListen(t, nil, nil, "--payload=8192", "--forward", eport, "5000")
		code, _, errOut := runOnce(t, strings.NewReader("x"), splitConnectArgs(t, l, l.sid, "5000")...)
		if code == 0 {
			t.Fatal("connect with another --payload exited 0")
		}
		oneLine(t, errOut, "payload size mismatch")
		l.waitLine(`payload size mismatch: local 8192, peer 16384`)
	})
}

// splitEcho checks that l (forwarding to an echo server) still serves a
// split session: one stdio round trip.
func splitEcho(t *testing.T, l *splitListener, extra ...string) {
	t.Helper()
	args := splitConnectArgs(t, l, append(extra, l.sid, "5000")...)
	code, out, errOut := runOnce(t, strings.NewReader("still here"), args...)
	if code != 0 || out != "still here" {
		t.Fatalf("after a refusal: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
}

// TestSplitBadInput: usage mistakes exit 2, a busy --split port exits 1,
// each with one line on stderr.
func TestSplitBadInput(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	sid := strings.Repeat("A", 64)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	connect := func(a ...string) []string {
		return append([]string{"msp", "connect", "--instance", inst}, append(a, sid, "5000")...)
	}
	listen := func(a ...string) []string {
		return append([]string{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0"}, append(a, "5000")...)
	}
	checkRefusals(t, []refusalCase{
		{"conns zero", connect("--split", "127.0.0.1:9", "--conns", "0"), 2, "--conns 0", 0},
		{"conns too many", connect("--split", "127.0.0.1:9", "--conns", "65"), 2, "--conns 65", 0},
		{"conns not a number", connect("--split", "127.0.0.1:9", "--conns", "x"), 2, "--conns", 0},
		{"fec garbage", connect("--split", "127.0.0.1:9", "--fec", "ten"), 2, "--fec", 0},
		{"fec parity only", listen("--split", "127.0.0.1:0", "--fec", "0:2"), 2, "--fec 0:2", 0},
		{"fec too many shards", connect("--split", "127.0.0.1:9", "--fec", "200:100"), 2, "--fec 200:100", 0},
		{"payload too small", connect("--split", "127.0.0.1:9", "--payload", "10"), 2, "--payload", 0},
		{"fec without split", connect("--fec", "10:3"), 2, "needs --split", 0},
		{"conns without split", connect("--conns", "4"), 2, "needs --split", 0},
		{"split without host", connect("--split", "7000"), 2, "HOST:PORT", 0},
		{"split port garbage", listen("--split", "127.0.0.1:x"), 2, "--split", 0},
		{"split port too big", listen("--split", "70000"), 2, "--split", 0},
		{"split with --peer", connect("--split", "127.0.0.1:9", "--peer", "127.0.0.1:4110"), 2, "--peer", 0},
		{"split port in use", listen("--split", busy.Addr().String()), 1, "in use", 0},
		{"nothing at the split address", connect("--split", "127.0.0.1:"+strconv.Itoa(freePort(t))), 1, "refused", 0},
	})
}

// splitStdioListen starts a split listener on MDP port 5000 for the stdio tests
// and returns it with the arguments of the connect to it.
func splitStdioListen(t *testing.T, stdin io.Reader, stdout io.Writer) (*proc, []string) {
	l := startSplitListen(t, stdin, stdout, "5000")
	return l.proc, splitConnectArgs(t, l, l.sid, "5000")
}
