package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSecondNodeRefused: while `msp listen` runs an embedded node of an
// instance, a second command that would start a node of the same
// instance (embedded or the daemon) is refused with one line naming the
// holder and the fix, and the first keeps serving.
func TestSecondNodeRefused(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	l := start(t, nil, nil, "msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "5000")
	l.waitLine(`listening as`)
	want := fmt.Sprintf("servald: a node of instance %s already runs (pid %d): stop it, or run `servald start` once and let every tunnel share it", inst, l.cmd.Process.Pid)
	for _, args := range [][]string{
		{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "5001"},
		{"id", "peers", "--instance", inst, "--udp", "127.0.0.1:0"},
		{"start", "--instance", inst, "--udp", "127.0.0.1:0"},
		{"start", "--foreground", "--instance", inst, "--udp", "127.0.0.1:0"},
	} {
		code, out, errOut := runOnce(t, nil, args...)
		if code != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
		oneLine(t, errOut, want)
	}
	select {
	case <-l.done:
		t.Fatalf("the first node exited: %s", l.stderr)
	default:
	}
}

// TestDaemonIgnoresNodeOptions: node options given to a command that uses
// the running daemon are ignored, and it says so in one line (no -v);
// without them it says nothing.
func TestDaemonIgnoresNodeOptions(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, instance(t))
	code, _, errOut := runOnce(t, nil, "id", "peers", "--instance", d.inst, "--wait", "0s", "--udp", "127.0.0.1:0", "--peer", d.udp)
	if code != 0 {
		t.Fatalf("id peers: exit %d: %s", code, errOut)
	}
	first, _, _ := strings.Cut(errOut, "\n")
	want := fmt.Sprintf("servald: the daemon of this instance (pid %d) runs, so --udp, --peer are ignored", d.pid)
	if !strings.HasPrefix(first, want) || strings.Count(errOut, "ignored") != 1 {
		t.Errorf("stderr %q, want one line starting %q", errOut, want)
	}
	_, _, errOut = runOnce(t, nil, "id", "peers", "--instance", d.inst, "--wait", "0s")
	if strings.Contains(errOut, "ignored") {
		t.Errorf("without node options: %q", errOut)
	}
}

// jargon is what the layers say that a user should not read.
var jargon = []string{"context canceled", "closed pipe", "seal: ", "arq: ", "b->a", "a->b"}

// TestLogFormat: log records and the command's own lines share one
// format, "servald: msg key=value", with -v too: no "time=... level=..."
// lines, and no jargon when the tunnelled connection fails (the
// listener's --forward port is closed).
func TestLogFormat(t *testing.T) {
	t.Parallel()
	l := startListen(t, nil, nil, "-v", "--once", "--forward", "9", "5000")
	code, _, errOut := runOnce(t, strings.NewReader("x"), connectArgs(t, l, "-v", "--timeout", "5s", l.sid, "5000")...)
	l.wait(20 * time.Second)
	if code == 0 && errOut == "" {
		t.Fatalf("connect printed nothing with -v (exit %d)", code)
	}
	for _, out := range []string{errOut, l.stderr.String()} {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(line, "servald: ") || strings.Contains(line, "level=") || strings.Contains(line, "time=") {
				t.Errorf("line %q is not in the servald format; all:\n%s", line, out)
			}
			for _, j := range jargon {
				if strings.Contains(line, j) {
					t.Errorf("line %q holds jargon %q", line, j)
				}
			}
		}
	}
}

// TestPeersTwoHops: three embedded nodes in a chain (A - B - C); `id
// peers` run on A (a node of its own, given B as --peer) lists C, two hops
// away, 10 runs out of 10: the command waits until the routing table has
// been stable for two hello intervals.
func TestPeersTwoHops(t *testing.T) {
	t.Parallel()
	c := startListen(t, nil, nil, "5000")
	b := startListen(t, nil, nil, "--peer", c.udp, "5000")
	runs := 10
	if testing.Short() {
		runs = 3
	}
	for i := range runs {
		code, out, errOut := runOnce(t, nil, "id", "peers", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", b.udp)
		if code != 0 || !strings.Contains(out, c.sid+" hops=2 ") || !strings.Contains(out, b.sid+" hops=1 ") {
			t.Errorf("run %d: exit %d, stdout %q, stderr %q: want B at 1 hop and C at 2", i+1, code, out, errOut)
		}
	}
}

// TestPeersLateRoute: a node two hops away that joins B while `id peers`
// on A runs is listed: the routes B learns after A linked to it reach A
// within the wait, and the command waits for them.
func TestPeersLateRoute(t *testing.T) {
	t.Parallel()
	b := startListen(t, nil, nil, "5000")
	var out bytes.Buffer
	p := start(t, nil, &out, "id", "peers", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", b.udp, "--wait", "6s")
	time.Sleep(700 * time.Millisecond)
	c := startListen(t, nil, nil, "--peer", b.udp, "5000")
	p.exitsZero(20*time.Second, "id peers")
	if !strings.Contains(out.String(), c.sid+" hops=2 ") {
		t.Errorf("id peers lists %q, want %s at 2 hops", out.String(), c.sid)
	}
}

// TestSplitConnectWaits: msp connect --split started before its listener
// waits for it (within --timeout), as mesh connect and split connect do;
// a listener that never comes is reported after --timeout, not at once.
func TestSplitConnectWaits(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	eport := strconv.Itoa(echo.Addr().(*net.TCPAddr).Port)
	inst := instance(t)
	code, sid, errOut := runOnce(t, nil, "id", "self", "--instance", inst)
	if code != 0 {
		t.Fatal(errOut)
	}
	sid = strings.TrimSpace(sid)
	splitAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	var out bytes.Buffer
	c := start(t, strings.NewReader("late"), &out, "msp", "connect", "--instance", instance(t), "--split", splitAddr, "--timeout", "15s", sid, "5000")
	time.Sleep(time.Second)
	start(t, nil, nil, "msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "--split", splitAddr, "--forward", eport, "5000").waitLine("split sessions on TCP")
	c.exitsZero(20*time.Second, "msp connect --split")
	if out.String() != "late" {
		t.Errorf("echo %q, want %q", out.String(), "late")
	}

	t0 := time.Now()
	code, _, errOut = runOnce(t, nil, "msp", "connect", "--instance", instance(t), "--split", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--timeout", "1s", sid, "5000")
	if d := time.Since(t0); code != 1 || d < time.Second || d > 10*time.Second {
		t.Errorf("no listener: exit %d after %v, want 1 after --timeout 1s", code, d)
	}
	oneLine(t, errOut, "connection refused")
}

// TestInstanceHelp: the --instance help says what the code does (a
// conflict with $SERVALINSTANCE_PATH is an error, not a win) and names
// DIR/config, which is read.
func TestInstanceHelp(t *testing.T) {
	code, out, _ := runInProcess(t, "--help")
	if code != 0 || strings.Contains(out, "wins when set") || !strings.Contains(out, "both set and different: an error") || !strings.Contains(out, "DIR/config (read when present)") {
		t.Errorf("servald --help: exit %d:\n%s", code, out)
	}
	t.Setenv("SERVALINSTANCE_PATH", t.TempDir())
	code, _, errOut := runInProcess(t, "id", "self", "--instance", t.TempDir())
	if code != 2 || !strings.Contains(errOut, "unset one") {
		t.Errorf("both set: exit %d, %q", code, errOut)
	}
}

// TestSplitConnectChecksParams: split connect --forward checks at start
// that the listener agrees on --fec and --payload (one line, exit 1) and
// the listener logs no warning for that check, nor for a clean one.
func TestSplitConnectChecksParams(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	l, addr := startSplitCmdListen(t, nil, nil, "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port))
	for _, tc := range []struct{ flag, want string }{
		{"--fec=8:2", "fec mismatch: ours 8:2, the listener's 10:3"},
		{"--payload=8192", "payload size mismatch: ours 8192, the listener's 16384"},
	} {
		code, _, errOut := runOnce(t, nil, "split", "connect", "--forward", strconv.Itoa(freePort(t)), tc.flag, addr)
		if code != 1 {
			t.Errorf("%s: exit %d", tc.flag, code)
		}
		oneLine(t, errOut, tc.want)
	}
	port := freePort(t)
	c := start(t, nil, nil, "split", "connect", "--once", "--forward", strconv.Itoa(port), addr)
	c.waitLine("forwarding TCP")
	conn := dialRetry(t, fmt.Sprintf("127.0.0.1:%d", port))
	conn.Write([]byte("ok"))
	conn.(*net.TCPConn).CloseWrite()
	if b, err := io.ReadAll(conn); err != nil || string(b) != "ok" {
		t.Errorf("echo %q, %v", b, err)
	}
	conn.Close()
	c.exitsZero(20*time.Second, "split connect --once")
	if s := l.stderr.String(); strings.Contains(s, "unknown session") {
		t.Errorf("the listener warned about the start check:\n%s", s)
	}
}
