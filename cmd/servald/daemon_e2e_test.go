package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/identity"
	instpkg "github.com/servald/servald/instance"
)

// runningDaemon is a daemon started with `servald start`.
type runningDaemon struct {
	inst, sid, udp string
	pid            int
	notice         string // the line after the started line: where --metrics serves
}

var startedRe = regexp.MustCompile(`^servald: started, SID ([0-9A-F]{64}) pid (\d+) UDP (\S+)$`)

// startDaemon runs `servald start` in inst and stops the daemon when the
// test ends (killing it if it does not stop).
func startDaemon(t *testing.T, inst string, args ...string) *runningDaemon {
	t.Helper()
	all := append([]string{"start", "--instance", inst, "--udp", "127.0.0.1:0"}, args...)
	code, out, errOut := runOnce(t, nil, all...)
	if code != 0 {
		t.Fatalf("start: exit %d: %s", code, errOut)
	}
	if out != "" {
		t.Errorf("start wrote %q to stdout", out)
	}
	started, notice, _ := strings.Cut(strings.TrimSpace(errOut), "\n")
	m := startedRe.FindStringSubmatch(started)
	if m == nil || (notice != "") != slices.Contains(args, "--metrics") {
		t.Fatalf("start printed %q", errOut)
	}
	pid, _ := strconv.Atoi(m[2])
	d := &runningDaemon{inst: inst, sid: m[1], pid: pid, udp: m[3], notice: notice}
	t.Cleanup(func() {
		if syscall.Kill(pid, 0) != nil {
			return
		}
		p := start(t, nil, nil, "stop", "--instance", inst)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
		}
		syscall.Kill(pid, syscall.SIGKILL) // in case it did not stop
	})
	return d
}

// waitGone waits until process pid has exited.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := instpkg.WaitExit(ctx, pid); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonLifecycle(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	for _, cmd := range []string{"stop", "status"} {
		code, out, errOut := runOnce(t, nil, cmd, "--instance", inst)
		if code != 1 || out != "" {
			t.Errorf("%s with nothing running: exit %d, stdout %q", cmd, code, out)
		}
		oneLine(t, errOut, "servald: not running")
	}

	d := startDaemon(t, inst)
	fi, err := os.Stat(daemon.SocketPath(inst))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v, want a socket with 0600", fi.Mode())
	}
	if b, err := os.ReadFile(daemon.PidPath(inst)); err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(d.pid) {
		t.Errorf("pid file %q (%v), want %d", b, err, d.pid)
	}
	if _, out, _ := runOnce(t, nil, "id", "self", "--instance", inst); strings.TrimSpace(out) != d.sid {
		t.Errorf("id self %q, daemon SID %s", out, d.sid)
	}
	code, out, errOut := runOnce(t, nil, "status", "--instance", inst)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"running\n", "SID: " + d.sid + "\n", fmt.Sprintf("pid: %d\n", d.pid), "UDP: " + d.udp + "\n", "neighbours: 0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}

	code, _, errOut = runOnce(t, nil, "start", "--instance", inst, "--udp", "127.0.0.1:0")
	if code == 0 {
		t.Error("second start: exit 0")
	}
	oneLine(t, errOut, fmt.Sprintf("servald: a daemon of this instance is already running (pid %d)", d.pid))

	code, _, errOut = runOnce(t, nil, "stop", "--instance", inst)
	if code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	oneLine(t, errOut, fmt.Sprintf("stopped (pid %d)", d.pid))
	if syscall.Kill(d.pid, 0) == nil && !instpkg.IsZombie(d.pid) {
		t.Errorf("pid %d still runs after stop returned", d.pid)
	}
	if _, err := os.Stat(daemon.SocketPath(inst)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket after stop: %v", err)
	}
	if code, _, _ := runOnce(t, nil, "status", "--instance", inst); code != 1 {
		t.Errorf("status after stop: exit %d", code)
	}

	// kill -9 leaves the socket and pid file behind; they are stale.
	d = startDaemon(t, inst)
	syscall.Kill(d.pid, syscall.SIGKILL)
	waitGone(t, d.pid)
	// The leader can be a zombie while its other threads still exit and
	// hold its files, the lock among them: wait for the lock.
	eventually(t, 10*time.Second, func() string {
		if pid, running := daemon.Probe(inst); running {
			return fmt.Sprintf("pid %d still holds the instance lock after kill -9", pid)
		}
		return ""
	})
	if _, err := os.Stat(daemon.SocketPath(inst)); err != nil {
		t.Fatalf("the killed daemon's socket: %v", err)
	}
	code, _, errOut = runOnce(t, nil, "status", "--instance", inst)
	if code != 1 {
		t.Errorf("status after kill -9: exit %d", code)
	}
	oneLine(t, errOut, "not running")
	d2 := startDaemon(t, inst)
	if d2.sid != d.sid {
		t.Errorf("SID changed across restarts: %s, %s", d.sid, d2.sid)
	}

	// A daemon that cannot start says why.
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, errOut = runOnce(t, nil, "start", "--instance", instance(t), "--udp", busy.LocalAddr().String())
	if code == 0 {
		t.Error("start on a busy UDP port: exit 0")
	}
	oneLine(t, errOut, "failed to start: UDP address "+busy.LocalAddr().String()+" is in use")
}

// TestDaemonSharedByTunnels: two daemons linked; two msp listeners with a
// service each run in one, two tunnels through the other and one from an
// embedded node reach them; the mesh commands answer from the daemons.
func TestDaemonSharedByTunnels(t *testing.T) {
	t.Parallel()
	a := startDaemon(t, instance(t))
	b := startDaemon(t, instance(t), "--peer", a.udp)
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())

	// --udp names A's own, busy, port: the listener uses the daemon and
	// opens no socket of its own.
	lis := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--udp", a.udp, "--service", "echo", "--forward", echoPort, "5000")
	m := lis.waitLine(`listening as ([0-9A-F]{64}) on MDP port 5000 \(UDP ([0-9.:]+)\)`)
	if m[1] != a.sid || m[2] != a.udp {
		t.Fatalf("listener is %s at %s; daemon %s at %s", m[1], m[2], a.sid, a.udp)
	}
	// The port is the daemon's now: a second listener is refused.
	code, _, errOut := runOnce(t, nil, "msp", "listen", "--instance", a.inst, "--forward", echoPort, "5000")
	if code == 0 {
		t.Error("second listener on port 5000: exit 0")
	}
	oneLine(t, errOut, "in use")

	// A second listener in daemon A with a service of its own: both share
	// the daemon's discovery port.
	lisWeb := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--service", "web", "--forward", echoPort, "5001")
	lisWeb.waitLine(`listening as ` + a.sid + ` on MDP port 5001`)

	// Tunnels 1 and 3 through daemon B (to each listener); tunnel 2 from
	// an embedded node.
	p1, p2, p3 := freePort(t), freePort(t), freePort(t)
	c1 := start(t, nil, nil, "msp", "connect", "--instance", b.inst, "--forward", strconv.Itoa(p1), a.sid, "5000")
	c2 := start(t, nil, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", a.udp, "--forward", strconv.Itoa(p2), a.sid, "5000")
	c3 := start(t, nil, nil, "msp", "connect", "--instance", b.inst, "--forward", strconv.Itoa(p3), "--service", "web")
	c1.waitLine("forwarding TCP")
	c2.waitLine("forwarding TCP")
	c3.waitLine("forwarding TCP .* to " + a.sid + " port 5001")
	for _, p := range []int{p1, p2, p3} {
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		dialRetry(t, addr).Close()
		for i := 0; i < 3; i++ {
			if err := echoOnce(addr, 256<<10); err != nil {
				t.Fatalf("tunnel via %s: %v", addr, err)
			}
		}
	}

	// Daemon A has B and the embedded node as neighbours.
	_, out, _ := runOnce(t, nil, "status", "--instance", a.inst)
	if !strings.Contains(out, "neighbours: 2\n") {
		t.Errorf("status of A:\n%s", out)
	}
	// id peers, route print, service find: answered by daemon B.
	code, out, errOut = runOnce(t, nil, "id", "peers", "--instance", b.inst)
	if code != 0 || !regexp.MustCompile(`(?m)^`+a.sid+` hops=1 via=`+a.sid[:8]+` metric=\d+$`).MatchString(out) {
		t.Errorf("id peers in B: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runOnce(t, nil, "route", "print", "--instance", b.inst)
	if code != 0 || !strings.HasPrefix(out, "DESTINATION") || !regexp.MustCompile(`(?m)^`+a.sid+` +`+a.sid[:8]+` +1 +\d+ +\d+$`).MatchString(out) {
		t.Errorf("route print in B: exit %d:\n%s", code, out)
	}
	code, out, _ = runOnce(t, nil, "route", "print", "--dot", "--instance", b.inst)
	if code != 0 || !strings.HasPrefix(out, "digraph servald {") || !strings.Contains(out, fmt.Sprintf("%q -> %q", b.sid, a.sid)) {
		t.Errorf("route print --dot in B: exit %d:\n%s", code, out)
	}
	code, out, errOut = runOnce(t, nil, "service", "find", "--instance", b.inst, "echo")
	if code != 0 || strings.TrimSpace(out) != a.sid+" echo.mdp.port=5000" {
		t.Errorf("service find echo: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runOnce(t, nil, "service", "find", "--instance", b.inst)
	if code != 0 || out != a.sid+" echo.mdp.port=5000\n"+a.sid+" web.mdp.port=5001\n" {
		t.Errorf("service find (all): exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, errOut = runOnce(t, nil, "service", "find", "--instance", b.inst, "--timeout", "300ms", "nosuch")
	if code != 1 || out != "" {
		t.Errorf("service find nosuch: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "servald: no node answered for nosuch")

	// Without a daemon, id peers starts a node and waits for neighbours.
	code, out, errOut = runOnce(t, nil, "id", "peers", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", a.udp, "--wait", "5s")
	if code != 0 || !strings.HasPrefix(out, a.sid+" hops=1 ") {
		t.Errorf("embedded id peers: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	// Killing the listener frees its port in the daemon at once, and
	// withdraws its service; the other listener's stays.
	lis.cmd.Process.Kill()
	lis.wait(5 * time.Second)
	eventually(t, 10*time.Second, func() string {
		code, out, errOut := runOnce(t, nil, "service", "find", "--instance", b.inst)
		if code != 0 || out != a.sid+" web.mdp.port=5001\n" {
			return fmt.Sprintf("service find after the echo listener was killed: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		return ""
	})
	lis2 := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--forward", echoPort, "5000")
	lis2.waitLine(`listening as ` + a.sid + ` on MDP port 5000`)
	// The connect side's session breaks with the old listener; a new TCP
	// connection redials and reaches the new one.
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := echoOnce(fmt.Sprintf("127.0.0.1:%d", p1), 1000)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel after the listener restarted: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDaemonRelay: an embedded node reaches a listener two hops away
// through a daemon that relays.
func TestDaemonRelay(t *testing.T) {
	t.Parallel()
	relay := startDaemon(t, instance(t))
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	lis := startListen(t, nil, nil, "--peer", relay.udp, "--forward", echoPort, "5000")
	code, out, errOut := runOnce(t, strings.NewReader("over two hops\n"), "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", relay.udp, "--timeout", "10s", lis.sid, "5000")
	if code != 0 || out != "over two hops\n" {
		t.Fatalf("two hops through the relay daemon: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, out, _ = runOnce(t, nil, "id", "peers", "--instance", relay.inst)
	if code != 0 || !strings.Contains(out, lis.sid+" hops=1 ") {
		t.Errorf("relay's peers: %q", out)
	}
}

// TestDaemonIdentityMismatch: a command refuses a daemon whose SID is not
// the keyring's.
func TestDaemonIdentityMismatch(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, instance(t))
	other := instance(t)
	if code, _, errOut := runOnce(t, nil, "id", "self", "--instance", other); code != 0 {
		t.Fatal(errOut)
	}
	b, err := os.ReadFile(filepath.Join(other, identity.KeyringFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d.inst, identity.KeyringFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runOnce(t, nil, "msp", "listen", "--instance", d.inst, "5000")
	if code == 0 {
		t.Fatal("exit 0")
	}
	oneLine(t, errOut, "restart it")
}

// TestAllowShortSID: --allow takes a short SID of a node the mesh knows; it
// stands for that node's full SID, so another node is refused.
func TestAllowShortSID(t *testing.T) {
	t.Parallel()
	a := startDaemon(t, instance(t))
	b := startDaemon(t, instance(t), "--peer", a.udp)
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	// Through daemon A, which knows B already once B's hellos arrived.
	eventually(t, 10*time.Second, func() string {
		if _, out, _ := runOnce(t, nil, "id", "peers", "--instance", a.inst); !strings.Contains(out, b.sid) {
			return "A does not know B yet: " + out
		}
		return ""
	})
	lis := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--allow", strings.ToLower(b.sid[:16]), "--forward", echoPort, "5000")
	lis.waitLine("--allow " + strings.ToLower(b.sid[:16]) + " is " + b.sid + "$")
	lis.waitLine("listening as")
	code, out, errOut := runOnce(t, strings.NewReader("let in\n"), "msp", "connect", "--instance", b.inst, a.sid, "5000")
	if code != 0 || out != "let in\n" {
		t.Errorf("B, allowed by prefix: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = runOnce(t, strings.NewReader("keep out\n"), "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", a.udp, a.sid, "5000")
	if code == 0 {
		t.Error("a node that is not B got in")
	}
	oneLine(t, errOut, "refused")
	// A prefix of no known node is refused at start, naming the known.
	code, _, errOut = runOnce(t, nil, "msp", "listen", "--instance", a.inst, "--allow", "0000000000000000", "5001")
	if code != 1 {
		t.Errorf("--allow with an unknown prefix: exit %d", code)
	}
	oneLine(t, errOut, "unknown SID prefix 0000000000000000")
	if !strings.Contains(errOut, b.sid) {
		t.Errorf("the error does not list B: %q", errOut)
	}
}
