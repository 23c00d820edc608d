package main

// Multi-hop meshes of real servald processes on loopback: a chain of five,
// and a diamond that loses a relay to kill -9 in the middle of a transfer.

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// hashServer is a TCP service that reads each connection to EOF and then
// answers with the SHA-256 of what it read.
type hashServer struct {
	ln       net.Listener
	received atomic.Int64 // bytes read over all connections
}

func newHashServer(t *testing.T) *hashServer {
	t.Helper()
	hs := &hashServer{}
	hs.ln = tcpService(t, func(c net.Conn) {
		h := sha256.New()
		buf := make([]byte, 256<<10)
		for {
			k, err := c.Read(buf)
			h.Write(buf[:k])
			hs.received.Add(int64(k))
			if err == io.EOF {
				break
			}
			if err != nil {
				return // broken: no answer
			}
		}
		c.Write(h.Sum(nil))
	})
	return hs
}

// port is the server's TCP port, for --forward.
func (hs *hashServer) port() string { return strconv.Itoa(hs.ln.Addr().(*net.TCPAddr).Port) }

// sendHashed sends size random bytes to addr, half-closes, and checks that
// the SHA-256 that comes back is that of what was sent.
func sendHashed(addr string, size int64, within time.Duration) error {
	return sendPaced(addr, size, 0, within)
}

// sendPaced is sendHashed at no more than rate bytes per second (0: as
// fast as the tunnel takes them).
func sendPaced(addr string, size, rate int64, within time.Duration) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(within))
	h := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.Reader, size), h)
	const chunk = 64 << 10
	start := time.Now()
	for sent := int64(0); sent < size; sent += chunk {
		if _, err := io.CopyN(c, src, min(chunk, size-sent)); err != nil {
			return fmt.Errorf("send after %d bytes: %w", sent, err)
		}
		if rate > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(float64(sent+chunk) / float64(rate) * float64(time.Second)))))
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read the hash: %w", err)
	}
	if string(got) != string(h.Sum(nil)) {
		return fmt.Errorf("the far end hashed something else than the %d bytes sent (answer of %d bytes)", size, len(got))
	}
	return nil
}

// fgDaemon is a `servald start --foreground` process in its own instance.
type fgDaemon struct {
	*proc
	inst, sid, udp string
	pid            int
}

// startForeground runs `servald start --foreground` in a fresh instance on
// loopback; the process is killed when the test ends.
func startForeground(t *testing.T, args ...string) *fgDaemon {
	t.Helper()
	inst := instance(t)
	p := start(t, nil, nil, append([]string{"start", "--foreground", "--instance", inst, "--udp", "127.0.0.1:0"}, args...)...)
	m := p.waitLine(startedRe.String())
	pid, _ := strconv.Atoi(m[2])
	return &fgDaemon{proc: p, inst: inst, sid: m[1], pid: pid, udp: m[3]}
}

// routeLine is one line of `route print`.
type routeLine struct {
	nextHop      string
	hops, metric int
}

var routeLineRe = regexp.MustCompile(`(?m)^([0-9A-F]{64}) +([0-9A-F]{8}) +(\d+) +(\d+) +(\d+)$`)

// routePrint runs `route print` in inst and returns its table by SID.
func routePrint(t *testing.T, inst string) (map[string]routeLine, string) {
	t.Helper()
	code, out, errOut := runOnce(t, nil, "route", "print", "--instance", inst, "--udp", "127.0.0.1:0")
	if code != 0 || !strings.HasPrefix(out, "DESTINATION") {
		t.Fatalf("route print in %s: exit %d, stdout %q, stderr %q", inst, code, out, errOut)
	}
	table := map[string]routeLine{}
	for _, m := range routeLineRe.FindAllStringSubmatch(out, -1) {
		hops, _ := strconv.Atoi(m[3])
		metric, _ := strconv.Atoi(m[4])
		table[m[1]] = routeLine{nextHop: m[2], hops: hops, metric: metric}
	}
	return table, out
}

// eventually retries check (which returns "" when satisfied, else what is
// wrong) until it holds or within passes. It is for state in other
// processes, which sends no event to wait on.
func eventually(t *testing.T, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestChainFiveProcesses: five servald processes in a chain on loopback,
// each configured with only the next as --peer: node 1 a detached daemon,
// nodes 2-4 foreground daemons (relays), node 5 an msp listener with an
// embedded node. A tunnel from node 1 to node 5 carries 64 MiB byte-exact;
// node 1 routes to node 5 at 4 hops and lists the four others; service
// discovery from node 1 finds node 5's listener and `msp connect
// --service` and a short SID reach it.
func TestChainFiveProcesses(t *testing.T) {
	t.Parallel()
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	hs := newHashServer(t)
	n5 := startListen(t, nil, nil, "--service", "ssh", "--forward", hs.port(), "5000")
	n4 := startForeground(t, "--peer", n5.udp)
	n3 := startForeground(t, "--peer", n4.udp)
	n2 := startForeground(t, "--peer", n3.udp)
	n1 := startDaemon(t, instance(t), "--peer", n2.udp)
	sids := []string{n1.sid, n2.sid, n3.sid, n4.sid, n5.sid}

	// The tunnel: msp connect in node 1's instance goes through its daemon.
	port := freePort(t)
	c := start(t, nil, nil, "msp", "connect", "--instance", n1.inst, "--timeout", "30s", "--forward", strconv.Itoa(port), n5.sid, "5000")
	c.waitLine("forwarding TCP .* to " + n5.sid + " port 5000")
	t0 := time.Now()
	if err := sendHashed(fmt.Sprintf("127.0.0.1:%d", port), size, 5*time.Minute); err != nil {
		t.Fatalf("%d MiB over 4 hops: %v", size>>20, err)
	}
	t.Logf("%d MiB byte-exact over 4 hops in %v", size>>20, time.Since(t0).Round(time.Millisecond))

	// route print on node 1: node 5 at 4 hops, through node 2; every
	// other node at its distance.
	table, out := routePrint(t, n1.inst)
	for i := 1; i < 5; i++ {
		r, ok := table[sids[i]]
		if !ok || r.hops != i || r.nextHop != n2.sid[:8] || r.metric < 256*i {
			t.Errorf("route print on node 1: node %d is %+v (listed %v), want %d hops via %s:\n%s", i+1, r, ok, i, n2.sid[:8], out)
		}
	}
	if len(table) != 4 {
		t.Errorf("route print on node 1 lists %d nodes, want 4:\n%s", len(table), out)
	}
	// id peers on node 1: the four others, nearest first.
	code, out, errOut := runOnce(t, nil, "id", "peers", "--instance", n1.inst)
	want := ""
	for i := 1; i < 5; i++ {
		want += fmt.Sprintf(`%s hops=%d via=%s metric=\d+\n`, sids[i], i, n2.sid[:8])
	}
	if code != 0 || !regexp.MustCompile(`^`+want+`$`).MatchString(out) {
		t.Errorf("id peers on node 1: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}

	// service find ssh on node 1 finds node 5's listener, 4 hops away.
	code, out, errOut = runOnce(t, nil, "service", "find", "--instance", n1.inst, "ssh")
	if code != 0 || out != n5.sid+" ssh.mdp.port=5000\n" {
		t.Errorf("service find ssh on node 1: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	// msp connect --service=ssh reaches it (stdio: the hash comes back).
	msg := "reached by service name\n"
	sum := sha256.Sum256([]byte(msg))
	code, out, errOut = runOnce(t, strings.NewReader(msg), "msp", "connect", "--instance", n1.inst, "--service=ssh")
	if code != 0 || out != string(sum[:]) || !strings.Contains(errOut, "service ssh is at "+n5.sid+" port 5000") {
		t.Errorf("msp connect --service=ssh: exit %d, stdout %x, stderr %q", code, out, errOut)
	}
	// A short SID of node 5 works where a SID is typed.
	code, out, errOut = runOnce(t, strings.NewReader(msg), "msp", "connect", "--instance", n1.inst, strings.ToLower(n5.sid[:10]), "5000")
	if code != 0 || out != string(sum[:]) {
		t.Errorf("msp connect %s 5000: exit %d, stdout %x, stderr %q", n5.sid[:10], code, out, errOut)
	}
	// A prefix no node has: one line listing the known ones.
	unknown := "0123456789ABCDEF"
	for _, s := range sids {
		if strings.HasPrefix(s, unknown[:8]) {
			unknown = "FEDCBA9876543210"
		}
	}
	code, out, errOut = runOnce(t, nil, "msp", "connect", "--instance", n1.inst, "--timeout", "1s", unknown[:8], "5000")
	if code != 1 || out != "" {
		t.Errorf("unknown prefix: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "unknown SID prefix "+unknown[:8])
	for _, s := range sids[1:] {
		if !strings.Contains(errOut, s) {
			t.Errorf("unknown-prefix error does not list %s: %q", s, errOut)
		}
	}
	if strings.Contains(errOut, n1.sid) {
		t.Errorf("unknown-prefix error lists the node itself: %q", errOut)
	}
	// 16 digits wait for the node until --timeout: the error names no
	// (all-zero) SID as unreachable.
	code, _, errOut = runOnce(t, nil, "msp", "connect", "--instance", n1.inst, "--timeout", "1s", unknown, "5000")
	if code != 1 || strings.Contains(errOut, strings.Repeat("0", 64)) || strings.Contains(errOut, n1.sid) {
		t.Errorf("unknown 16-digit prefix: exit %d, %q", code, errOut)
	}
	oneLine(t, errOut, "unknown SID prefix "+unknown)
	// A service nobody offers: a clear error within --timeout.
	code, out, errOut = runOnce(t, nil, "msp", "connect", "--instance", n1.inst, "--timeout", "1s", "--service=nosuch")
	if code != 1 || out != "" {
		t.Errorf("--service=nosuch: exit %d, stdout %q", code, out)
	}
	oneLine(t, errOut, "no node answered for service nosuch within 1s (5 nodes asked)")
	// msp connect --service with --forward, from an embedded node next
	// to node 1: 5 hops.
	port2 := freePort(t)
	c2 := start(t, nil, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", n1.udp, "--service=ssh", "--forward", strconv.Itoa(port2))
	c2.waitLine("forwarding TCP .* to " + n5.sid + " port 5000")
	if err := sendHashed(fmt.Sprintf("127.0.0.1:%d", port2), 1<<20, time.Minute); err != nil {
		t.Errorf("msp connect --service=ssh --forward, 5 hops: %v", err)
	}
}

// TestDiamondKillRelay: A-B-D and A-C-D, all real processes. A's tunnel to
// D goes through one relay; that relay is killed with -9 while the
// transfer runs; the transfer completes byte-exact with no user action,
// and A's route to D then goes through the other relay.
func TestDiamondKillRelay(t *testing.T) {
	t.Parallel()
	// Paced, so that the relay dies in the middle of the transfer.
	const size, rate = 16 << 20, 4 << 20
	hs := newHashServer(t)
	d := startListen(t, nil, nil, "--forward", hs.port(), "5000")
	b := startForeground(t, "--peer", d.udp)
	a := startDaemon(t, instance(t), "--peer", b.udp)
	port := freePort(t)
	conn := start(t, nil, nil, "msp", "connect", "--instance", a.inst, "--timeout", "30s", "--forward", strconv.Itoa(port), d.sid, "5000")
	conn.waitLine("forwarding TCP")
	// C comes up once A reaches D through B, so that the route starts
	// there (a route moves only to a clearly cheaper one).
	c := startForeground(t, "--peer", a.udp, "--peer", d.udp)
	eventually(t, 20*time.Second, func() string {
		ta, out := routePrint(t, a.inst)
		tc, outC := routePrint(t, c.inst)
		if ta[c.sid].hops != 1 || ta[d.sid].hops != 2 || tc[d.sid].hops != 1 || tc[a.sid].hops != 1 {
			return fmt.Sprintf("not a diamond yet; A:\n%sC:\n%s", out, outC)
		}
		return ""
	})
	relays := map[string]*fgDaemon{b.sid[:8]: b, c.sid[:8]: c}
	ta, out := routePrint(t, a.inst)
	victim := relays[ta[d.sid].nextHop]
	if victim == nil {
		t.Fatalf("A reaches D through neither relay:\n%s", out)
	}
	survivor := c
	if victim == c {
		survivor = b
		t.Logf("A's route to D went through C, not B: killing C")
	}

	done := make(chan error, 1)
	go func() { done <- sendPaced(fmt.Sprintf("127.0.0.1:%d", port), size, rate, 3*time.Minute) }()
	// Kill the relay in use once a quarter has arrived.
	eventually(t, 2*time.Minute, func() string {
		select {
		case err := <-done:
			t.Fatalf("transfer ended before the kill (%d of %d bytes arrived): %v", hs.received.Load(), size, err)
		default:
		}
		if got := hs.received.Load(); got < size/4 {
			return fmt.Sprintf("only %d of %d bytes arrived", got, size)
		}
		return ""
	})
	if err := syscall.Kill(victim.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	at := hs.received.Load()
	t.Logf("killed relay %s with %d of %d bytes across", victim.sid[:8], at, size)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("transfer across the kill: %v", err)
		}
	case <-time.After(4 * time.Minute):
		t.Fatal("transfer did not finish")
	}
	t.Logf("transfer finished byte-exact %v after the kill", time.Since(t0).Round(time.Millisecond))
	if at >= size {
		t.Fatalf("everything had arrived before the kill: the failover was not exercised")
	}
	ta, out = routePrint(t, a.inst)
	if r := ta[d.sid]; r.nextHop != survivor.sid[:8] || r.hops != 2 {
		t.Errorf("route print on A after the kill: D is %+v, want 2 hops via %s:\n%s", r, survivor.sid[:8], out)
	}
	// The dead relay's route goes too, once every node has noticed.
	eventually(t, 20*time.Second, func() string {
		ta, out := routePrint(t, a.inst)
		if _, ok := ta[victim.sid]; ok {
			return "route print on A still lists the killed relay:\n" + out
		}
		return ""
	})
	select {
	case <-conn.done:
		t.Errorf("msp connect exited: %s", conn.stderr)
	default:
	}
}
