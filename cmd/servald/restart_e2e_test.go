package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// echoBy retries echoWithin until it works or d has passed since t0; it
// returns how long after t0 it worked.
func echoBy(t *testing.T, addr, msg string, t0 time.Time, d time.Duration) time.Duration {
	t.Helper()
	var err error
	for time.Since(t0) < d {
		if err = echoWithin(addr, msg, 2*time.Second); err == nil {
			return time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no echo within %v: %v", d, err)
	return 0
}

// refusedPromptly checks that a connection to addr is closed without an
// echo within d (the tunnel's far end is away): not accepted and left
// hanging.
func refusedPromptly(t *testing.T, addr string, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, d)
	if err != nil {
		return time.Since(t0) // refused outright
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(d + time.Second))
	c.Write([]byte("x"))
	b, err := io.ReadAll(c)
	took := time.Since(t0)
	switch {
	case len(b) != 0:
		t.Fatalf("echo %q while the daemon is away", b)
	case took > d:
		t.Fatalf("connection left open %v (%v), want closed within %v", took, err, d)
	}
	return took
}

// TestDaemonRestart: tunnels attached to daemons survive a restart of
// either daemon. A's daemon runs `msp listen --forward` to an echo
// server, B's `msp connect --timeout=3s --forward` to it. `servald stop`
// on A: the listener says the daemon is stopping, and B closes a new
// connection when its dial gives up (--timeout) rather than leaving it
// hanging; `servald start` on A again (same
// UDP port, which B's --peer names): the listener re-attaches and a new
// connection echoes within 10 s. Then the same with B's daemon.
func TestDaemonRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts daemons: several seconds")
	}
	t.Parallel()
	echo := echoServer(t)
	instA, instB := instance(t), instance(t)
	dA := startDaemon(t, instA)
	startDaemon(t, instB, "--peer", dA.udp)
	lis := start(t, nil, nil, "msp", "listen", "--instance", instA, "--forward", echo.Addr().String(), "5000")
	lis.waitLine(`listening as`)
	fwd := "127.0.0.1:" + strconv.Itoa(freePort(t))
	// While A's node is down nothing answers B's dial: a connection is
	// closed when the dial gives up, after --timeout.
	con := start(t, nil, nil, "msp", "connect", "--instance", instB, "--timeout", "3s", "--forward", fwd, dA.sid, "5000")
	con.waitLine(`forwarding TCP`)
	echoBy(t, fwd, "before", time.Now(), 15*time.Second)

	// A's daemon stops: the listener says so and waits.
	if code, _, errOut := runOnce(t, nil, "stop", "--instance", instA); code != 0 {
		t.Fatalf("stop A: exit %d: %s", code, errOut)
	}
	lis.waitLine(`^servald: the daemon is stopping \(servald stop\); waiting for it to come back \(servald start\)$`)
	took := refusedPromptly(t, fwd, 5*time.Second) // --timeout 3s, with room for a loaded machine
	t.Logf("a connection while A's daemon is away: closed after %v", took)

	// Back on the same UDP port.
	t0 := time.Now()
	dA2 := startDaemon(t, instA, "--udp", dA.udp)
	if dA2.sid != dA.sid || dA2.udp != dA.udp {
		t.Fatalf("restarted daemon: SID %s UDP %s, was %s %s", dA2.sid, dA2.udp, dA.sid, dA.udp)
	}
	lis.waitLine(fmt.Sprintf(`^servald: re-attached to the daemon \(pid %d\)$`, dA2.pid))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("listener:\n%s\nconnector:\n%s", lis.stderr, con.stderr)
		}
	})
	t.Logf("A restarted: echo after %v", echoBy(t, fwd, "after A", t0, 10*time.Second))

	// B's daemon stops: the connector says so and closes new connections
	// at once; back, it tunnels again.
	if code, _, errOut := runOnce(t, nil, "stop", "--instance", instB); code != 0 {
		t.Fatalf("stop B: exit %d: %s", code, errOut)
	}
	took = refusedPromptly(t, fwd, time.Second)
	t.Logf("a connection while B's daemon is away: closed after %v", took)
	con.waitLine(`daemon .*(stopping|not running|went away)`)
	t0 = time.Now()
	dB2 := startDaemon(t, instB, "--peer", dA.udp)
	t.Logf("B restarted: echo after %v", echoBy(t, fwd, "after B", t0, 10*time.Second))
	con.waitLine(fmt.Sprintf(`^servald: re-attached to the daemon \(pid %d\)$`, dB2.pid))

	// A's daemon dies (SIGKILL): no notice; the listener sees the socket
	// close, says so, and re-attaches to the next daemon. B's session does
	// not learn of the crash: it ends at its idle timeout (10 s), and the
	// next connection after that dials again.
	if err := syscall.Kill(dA2.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	lis.waitLine(`^servald: daemon went away; waiting for it to come back \(servald start\)$`)
	waitGone(t, dA2.pid)
	t0 = time.Now()
	dA3 := startDaemon(t, instA, "--udp", dA.udp)
	lis.waitLine(fmt.Sprintf(`^servald: re-attached to the daemon \(pid %d\)$`, dA3.pid))
	t.Logf("A killed and restarted: echo after %v", echoBy(t, fwd, "after kill", t0, 20*time.Second))

	for _, p := range []*proc{lis, con} {
		select {
		case <-p.done:
			t.Fatalf("exited: %s", p.stderr)
		default:
		}
	}
	if s := lis.stderr.String(); strings.Count(s, "re-attached") != 2 {
		t.Errorf("listener stderr:\n%s", s)
	}
}

// TestStartRace: two `servald start` of one instance at once: exactly one
// starts the daemon, the other exits 1 with one line naming it. Three
// rounds, the daemon stopped between them.
func TestStartRace(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	for round := range 3 {
		var ps [2]*proc
		for i := range ps {
			ps[i] = start(t, nil, nil, "start", "--instance", inst, "--udp", "127.0.0.1:0")
		}
		codes := [2]int{ps[0].wait(40 * time.Second), ps[1].wait(40 * time.Second)}
		win, lose := 0, 1
		if codes[0] != 0 {
			win, lose = 1, 0
		}
		if codes[win] != 0 || codes[lose] != 1 {
			t.Fatalf("round %d: exits %v, want one 0 and one 1; stderr:\n%s\n%s", round, codes, ps[0].stderr, ps[1].stderr)
		}
		m := startedRe.FindStringSubmatch(strings.TrimSpace(ps[win].stderr.String()))
		if m == nil {
			t.Fatalf("round %d: the winner printed %q", round, ps[win].stderr)
		}
		oneLine(t, ps[lose].stderr.String(), fmt.Sprintf("servald: a daemon of this instance is already running (pid %s)", m[2]))
		pid, _ := strconv.Atoi(m[2])
		if code, _, errOut := runOnce(t, nil, "stop", "--instance", inst); code != 0 {
			t.Fatalf("round %d: stop: exit %d: %s", round, code, errOut)
		}
		waitGone(t, pid)
	}
}

// TestDaemonRestartStdio: a stdio `msp connect` (no --forward) through a
// daemon cannot outlive it: when the daemon stops it exits 1 with one
// line saying so, at once.
func TestDaemonRestartStdio(t *testing.T) {
	t.Parallel()
	instA, instB := instance(t), instance(t)
	dA := startDaemon(t, instA)
	startDaemon(t, instB, "--peer", dA.udp)
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	got := &lockedBuffer{lines: make(chan string, 10)}
	lis := start(t, nil, got, "msp", "listen", "--instance", instA, "5000")
	lis.waitLine(`listening as`)
	con := start(t, pr, io.Discard, "msp", "connect", "--instance", instB, dA.sid, "5000")
	if _, err := pw.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got.lines: // the stream is up
	case <-time.After(15 * time.Second):
		t.Fatalf("nothing came through; connect:\n%s", con.stderr)
	}
	if code, _, errOut := runOnce(t, nil, "stop", "--instance", instB); code != 0 {
		t.Fatalf("stop B: exit %d: %s", code, errOut)
	}
	t0 := time.Now()
	code := con.wait(5 * time.Second)
	t.Logf("connect exited %d after %v: %q", code, time.Since(t0), con.stderr)
	if code != 1 {
		t.Errorf("connect: exit %d, want 1", code)
	}
	oneLine(t, con.stderr.String(), "servald: the daemon of this instance stopped (servald stop): stream broke")
}

// TestSystemdUnit: the unit in contrib/systemd runs `servald start
// --foreground` with flags that exist, as Type=notify; and the daemon so
// started says READY=1 on $NOTIFY_SOCKET once its socket answers, and
// STOPPING=1 when SIGTERM stops it.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("../../contrib/systemd/servald.service")
	if err != nil {
		t.Fatal(err)
	}
	var exec []string
	for _, l := range strings.Split(string(unit), "\n") {
		if v, ok := strings.CutPrefix(l, "ExecStart="); ok {
			exec = strings.Fields(v)
		}
	}
	if !strings.Contains(string(unit), "\nType=notify\n") || len(exec) < 3 || !strings.HasSuffix(exec[0], "/servald") || exec[1] != "start" {
		t.Fatalf("unit: Type=notify and ExecStart=.../servald start ...: ExecStart %q", exec)
	}
	_, help, _ := runOnce(t, nil, "start", "--help")
	for _, a := range exec[2:] {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !strings.Contains(help, "--"+name+" ") {
				t.Errorf("ExecStart flag %s: not in `servald start --help`:\n%s", a, help)
			}
		}
	}
	if !slices.Contains(exec, "--foreground") {
		t.Error("ExecStart without --foreground: the daemon would detach from systemd")
	}

	sock := filepath.Join(t.TempDir(), "notify")
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	inst := instance(t)
	t.Setenv("NOTIFY_SOCKET", sock) // not parallel: the daemon inherits the environment
	d := start(t, nil, nil, "start", "--foreground", "--instance", inst, "--udp", "127.0.0.1:0")
	nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	b := make([]byte, 256)
	n, err := nc.Read(b)
	if err != nil || string(b[:n]) != fmt.Sprintf("READY=1\nMAINPID=%d", d.cmd.Process.Pid) {
		t.Fatalf("notify: %q, %v", b[:n], err)
	}
	if code, _, errOut := runOnce(t, nil, "status", "--instance", inst); code != 0 {
		t.Errorf("status once READY: exit %d: %s", code, errOut)
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	if n, err = nc.Read(b); err != nil || string(b[:n]) != "STOPPING=1" {
		t.Errorf("notify at SIGTERM: %q, %v", b[:n], err)
	}
	d.exitsZero(10*time.Second, "start --foreground")
}
