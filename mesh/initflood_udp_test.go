package mesh_test

// Point 1 of issue 10 on real UDP: a flood of msp INITs from fresh
// identities at a listener. "300 INITs/s from fresh identities for 20 s at
// a listener: a legitimate `msp connect` during the flood succeeds within
// 3 s; RSS <= 64 MiB; goroutines back to idle + 10 after the flood."
// (The defence's unit test, over an in-memory transport, is
// TestInitFloodCostsNoSessions in msp/flood_test.go.)
//
// The attacker X is a raw neighbour of the listener's node (the test on
// one loopback socket, joined through the cookie exchange with link keys:
// joinAs). It sends sealed DATA frames to the listener's MDP port whose
// source SID is a fresh identity each time (the mesh does not authenticate
// the source SID end to end), each carrying a genuine INIT signed by that
// identity: what msp.Dialer sends first, caught by a transport that keeps
// it (captureTransport). Once a second X also sends an INIT of its own
// SID, which the listener can answer over the link to X: the answers show
// that the flood's INITs reach msp, and not only the node.
//
// TestInitFloodListenerUDP: the victim is a `servald msp listen` process
// (RSS). TestInitFloodGoroutinesUDP: the victim is a node and msp.Listen in
// the test process (goroutines, and the victim's counters).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/mesh/internal/wire"
	"github.com/servald/servald/msp"
)

// The flood of issue 10, point 1, and its limits.
const (
	initRate     = 300              // INITs a second, each from a fresh identity
	initFor      = 20 * time.Second // how long the flood lasts
	initPort     = 5000             // the listener's MDP port
	connectLimit = 3 * time.Second  // a legitimate connect, start to echo
	// maxGoroutinesAfter is how many goroutines over idle the victim may
	// have once the flood and msp's pending timeout (10 s) are over.
	maxGoroutinesAfter = 10
	pendingTimeout     = 10 * time.Second // msp's, for pending handshakes
)

var errCaptured = errors.New("captured")

// captureTransport is an msp.Transport that keeps the first datagram
// written to it (a dial's INIT) and fails the write, which ends the dial.
type captureTransport struct {
	done  chan struct{}
	close sync.Once
	mu    sync.Mutex
	first []byte // guarded by mu
}

func (c *captureTransport) ReadFrom(p []byte) (int, net.Addr, error) {
	<-c.done
	return 0, nil, net.ErrClosed
}

func (c *captureTransport) WriteTo(p []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == nil {
		c.first = bytes.Clone(p)
	}
	return 0, errCaptured
}

func (c *captureTransport) LocalAddr() net.Addr { return mesh.Addr{} }

func (c *captureTransport) Close() error {
	c.close.Do(func() { close(c.done) })
	return nil
}

func (c *captureTransport) MaxPayload(identity.SID) int { return 1200 }

func (c *captureTransport) PeerAddr(sid identity.SID, port uint16) net.Addr {
	return mesh.Addr{SID: sid, Port: port}
}

func (c *captureTransport) FromNode(net.Addr, identity.SID) bool { return true }

// initOf returns the INIT that id's dial to port on node to sends first
// (stamped now: msp takes INITs up to 2 minutes old).
func initOf(t testing.TB, id *identity.Identity, to identity.SID, port uint16) []byte {
	t.Helper()
	c := &captureTransport{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := (msp.Dialer{Identity: id}).Dial(ctx, c, to, port); !errors.Is(err, errCaptured) {
		t.Fatalf("a dial to catch its INIT: %v, want the capture's error", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == nil {
		t.Fatal("the dial wrote nothing")
	}
	return c.first
}

// rawNeighbour is the test as a raw neighbour of a victim node, joined
// with link keys (joinAs) on one floodSock: it keeps itself a neighbour
// with hellos and sends sealed DATA frames whose per-link sequence numbers
// advance. Each frame's Base is its Seq: nothing is ever sent again, so
// the victim waits for no frame below it (the victim's ACKs are ignored).
type rawNeighbour struct {
	s         *floodSock
	id        *identity.Identity
	victim    *net.UDPAddr
	vsid      identity.SID
	epoch     uint32
	echo      wire.Cookie
	hseq, seq uint64
	link      *mesh.AttackLink
	lastHello time.Time
}

func newRawNeighbour(t testing.TB, s *floodSock, victim *net.UDPAddr, vsid identity.SID, id *identity.Identity, epoch uint32) *rawNeighbour {
	t.Helper()
	echo, hseq, link := joinAs(t, s, victim, vsid, id, epoch)
	return &rawNeighbour{s: s, id: id, victim: victim, vsid: vsid, epoch: epoch, echo: echo, hseq: hseq, link: link, lastHello: time.Now()}
}

// keep sends a hello when the last one is 500 ms old (the victim drops a
// neighbour silent for 5 s).
func (x *rawNeighbour) keep() error {
	if time.Since(x.lastHello) < 500*time.Millisecond {
		return nil
	}
	x.hseq++
	h := wire.Hello{SID: x.id.SID(), To: x.vsid, Epoch: x.epoch, Seq: x.hseq, MTU: 1500, Echo: x.echo, Eph: x.link.Eph()}
	h.Cookie[0] = 1
	x.lastHello = time.Now()
	_, err := x.s.c.WriteTo(wire.AppendHello(nil, h, x.id), x.victim)
	return err
}

// send sends payload to the victim's MDP port dstPort in a DATA frame
// whose source is src, port srcPort.
func (x *rawNeighbour) send(src identity.SID, srcPort, dstPort uint16, payload []byte) error {
	x.seq++
	h := wire.DataHeader{Epoch: x.epoch, Seq: x.seq, Base: x.seq, TTL: 1, Dst: x.vsid, Src: src, DstPort: dstPort, SrcPort: srcPort}
	_, err := x.s.c.WriteTo(x.link.Seal(append(wire.AppendData(nil, &h), payload...)), x.victim)
	return err
}

// answers counts the distinct DATA frames (by the victim's link sequence
// number: the victim resends what X does not acknowledge) that the victim
// sends X from its MDP port port to X's own SID.
type answers struct {
	mu   sync.Mutex
	seqs map[uint64]bool // guarded by mu
}

func (a *answers) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.seqs)
}

// watch counts x's answers from port (for the life of the test).
func (a *answers) watch(t testing.TB, x *rawNeighbour, port uint16) {
	a.seqs = map[uint64]bool{}
	f := func(b []byte) {
		f := x.link.Open(bytes.Clone(b))
		if typ, err := wire.Type(f); f == nil || err != nil || typ != wire.TypeData {
			return
		}
		h, _, err := wire.ParseData(f)
		if err != nil || h.Src != x.vsid || h.Dst != x.id.SID() || h.SrcPort != port {
			return
		}
		a.mu.Lock()
		a.seqs[h.Seq] = true
		a.mu.Unlock()
	}
	x.s.handle.Store(&f)
	t.Cleanup(func() { x.s.handle.Store(nil) })
}

// connectResult is one legitimate connect during the flood.
type connectResult struct {
	at   time.Duration // when it started, from the flood's start
	took time.Duration // from its start until its line came back
	err  error
}

// connectEcho runs `servald msp connect --udp 127.0.0.1:0 --peer peer
// --once SID port` (stdin/stdout) in the fresh instance inst, with a line
// on stdin, and returns how long the line took to come back on its stdout
// (from the process's start). It waits for the process to end.
func connectEcho(ctx context.Context, bin, inst string, peer *net.UDPAddr, sid identity.SID, port uint16) (time.Duration, error) {
	line := "through the flood: " + filepath.Base(filepath.Dir(inst)) + "\n"
	cmd := exec.CommandContext(ctx, bin, "msp", "connect", "--instance", inst, "--udp", "127.0.0.1:0", "--peer", peer.String(),
		"--once", "--timeout", "10s", sid.String(), strconv.Itoa(int(port)))
	cmd.Env = append(os.Environ(), "SERVALINSTANCE_PATH=")
	cmd.Stdin = strings.NewReader(line)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	got := make([]byte, len(line))
	k, rerr := io.ReadFull(out, got)
	took := time.Since(start)
	io.Copy(io.Discard, out)
	werr := cmd.Wait()
	switch {
	case rerr != nil:
		return took, fmt.Errorf("echo: got %q: %v (exit %v; stderr %s)", got[:k], rerr, werr, errb.String())
	case string(got) != line:
		return took, fmt.Errorf("echo: got %q, want %q", got, line)
	case werr != nil:
		return took, fmt.Errorf("exit: %v (stderr %s)", werr, errb.String())
	}
	return took, nil
}

// floodResult is what a flood measured.
type floodResult struct {
	sent     int           // INITs from fresh identities
	took     time.Duration // to send them
	canaries int           // INITs of X's own SID sent
	answered int           // the victim's answers to them
	connects []connectResult
}

// initFlood joins X to the victim, catches initRate*initFor INITs from
// fresh identities (and the connects' instances), calls before, and sends
// them at initRate for initFor, with a canary a second; the legitimate
// connects start 5 s and 12 s into the flood. It returns when the flood
// and the connects are over.
func initFlood(t *testing.T, bin string, victim *net.UDPAddr, vsid identity.SID, before func()) floodResult {
	t.Helper()
	ids := mesh.FreshIDs(t, initRate*int(initFor/time.Second), 0xB1)
	start := time.Now()
	inits := make([][]byte, len(ids))
	for i, id := range ids {
		inits[i] = initOf(t, id, vsid, initPort)
	}
	t.Logf("%d INITs from fresh identities caught in %v (%d bytes each)", len(inits), time.Since(start).Round(time.Millisecond), len(inits[0]))
	xid := mesh.FreshIDs(t, 1, 0xB2)[0]
	x := newRawNeighbour(t, floodSocks(t, 1, victim, true)[0], victim, vsid, xid, 9)
	var ans answers
	ans.watch(t, x, initPort)
	at := []time.Duration{5 * time.Second, 12 * time.Second}
	insts := make([]string, len(at))
	for i := range insts {
		insts[i] = filepath.Join(t.TempDir(), "inst")
	}
	before()

	ctx, cancel := context.WithTimeout(context.Background(), initFor+30*time.Second)
	defer cancel()
	res := floodResult{}
	results := make(chan connectResult, len(at))
	start = time.Now()
	for i, d := range at {
		go func() {
			tm := time.NewTimer(d)
			defer tm.Stop()
			select {
			case <-tm.C:
			case <-ctx.Done():
				results <- connectResult{at: d, err: ctx.Err()}
				return
			}
			took, err := connectEcho(ctx, bin, insts[i], victim, vsid, initPort)
			results <- connectResult{at: time.Since(start), took: took, err: err}
		}()
	}
	sent, err := pace(ctx, initRate, initFor, func(i int) error {
		if err := x.keep(); err != nil {
			return err
		}
		if i%initRate == initRate/2 {
			// The canary: an INIT the victim can answer, stamped now
			// (msp drops one not later than the SID's pending one).
			res.canaries++
			if err := x.send(xid.SID(), 1, initPort, initOf(t, xid, vsid, initPort)); err != nil {
				return err
			}
		}
		return x.send(ids[i].SID(), uint16(1024+i%60000), initPort, inits[i])
	})
	res.sent, res.took = sent, time.Since(start)
	if err != nil {
		t.Fatalf("INIT flood: %v", err)
	}
	for range at {
		res.connects = append(res.connects, <-results)
	}
	// The answer to the last canary may still be on its way.
	deadline := time.Now().Add(2 * time.Second)
	for ans.count() < res.canaries && time.Now().Before(deadline) {
		select {
		case <-x.s.more:
		case <-time.After(100 * time.Millisecond):
		}
	}
	res.answered = ans.count()
	return res
}

// check logs r and fails t where the flood was not made or a connect
// failed.
func (r floodResult) check(t *testing.T) {
	t.Helper()
	t.Logf("flood: %d INITs from fresh identities in %v (%.0f/s) as MDP DATA from one neighbour; %d of %d canary INITs of the neighbour's own SID answered",
		r.sent, r.took.Round(time.Millisecond), float64(r.sent)/r.took.Seconds(), r.answered, r.canaries)
	if got := float64(r.sent) / r.took.Seconds(); r.sent < initRate*int(initFor/time.Second) || got < 0.75*initRate {
		t.Errorf("the generator sent %d INITs at %.0f a second: the attack was not made at %d a second", r.sent, got, initRate)
	}
	// Every canary answered but perhaps the last (its answer may be
	// lost and still being resent): the flood's INITs reach msp.
	if r.answered < r.canaries-1 {
		t.Errorf("the listener answered %d of %d canary INITs sent among the flood's", r.answered, r.canaries)
	}
	for _, c := range r.connects {
		t.Logf("legitimate msp connect %.1f s into the flood: echoed in %v, err %v", c.at.Seconds(), c.took.Round(time.Millisecond), c.err)
		if c.err != nil {
			t.Errorf("msp connect %.1f s into the flood: %v", c.at.Seconds(), c.err)
		} else if c.took > connectLimit {
			t.Errorf("msp connect %.1f s into the flood took %v to echo, over %v", c.at.Seconds(), c.took, connectLimit)
		}
	}
}

// tcpEcho serves TCP echo on 127.0.0.1:0 until the end of the test.
func tcpEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(time.Minute))
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

var listeningRe = regexp.MustCompile(`servald: listening as ([0-9A-F]{64}) on MDP port \d+ \(UDP (\S+)\)`)

// TestInitFloodListenerUDP is point 1 of issue 10 at a `servald msp
// listen --forward` process (echo behind it): two legitimate connects
// during the flood echo within 3 s, and the listener's RSS stays within
// 64 MiB.
func TestInitFloodListenerUDP(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s flood")
	}
	t.Parallel()
	bin := buildServald(t)
	m, pid, _ := startServald(t, bin, listeningRe, "msp", "listen", "--instance", filepath.Join(t.TempDir(), "inst"),
		"--udp", "127.0.0.1:0", "--forward", tcpEcho(t), strconv.Itoa(initPort))
	sid, err := identity.ParseSID(m[1])
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ResolveUDPAddr("udp", m[2])
	if err != nil {
		t.Fatal(err)
	}
	var idle int64
	var rss *sampler
	r := initFlood(t, bin, udp, sid, func() {
		idle = rssOf(t, pid)
		rss = sample(func() int64 { return rssOf(t, pid) })
	})
	peak := rss.end()
	t.Logf("listener process RSS: idle %s, peak %s (limit %s)", mib(idle), mib(peak), mib(maxRSS))
	r.check(t)
	if peak > maxRSS {
		t.Errorf("listener RSS peaked at %s, over %s", mib(peak), mib(maxRSS))
	}
}

// TestInitFloodGoroutinesUDP is point 1 of issue 10 at a node and an msp
// listener in the test process, on a real UDP socket, for the goroutine
// count (the whole process's: this test does not run in parallel) and the
// victim's counters. A session A - V made before the flood still echoes
// after it.
func TestInitFloodGoroutinesUDP(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 s flood and the 10 s pending timeout")
	}
	bin := buildServald(t)
	v := udpNode(t, attackCfg(t))
	vaddr := v.LocalAddr().(*net.UDPAddr)
	a := udpNode(t, attackCfg(t, vaddr))
	tun := newEchoTunnel(t, a, v) // listens on V's port 5000 (initPort) with an echo server
	var idle int64
	var gs *sampler
	var s0 mesh.Stats
	r := initFlood(t, bin, vaddr, v.SID(), func() {
		idle = int64(runtime.NumGoroutine())
		s0 = v.Stats()
		gs = sample(func() int64 { return int64(runtime.NumGoroutine()) })
	})
	floodEnd := time.Now()
	s := v.Stats()
	r.check(t)
	t.Logf("victim: Delivered +%d, PortDrops +%d, NoRoute +%d (its answers to the fresh identities, which nothing routes to)",
		s.Delivered-s0.Delivered, s.PortDrops-s0.PortDrops, s.NoRoute-s0.NoRoute)
	// Each INIT the listener took is answered, and its answer has no route.
	if got := s.NoRoute - s0.NoRoute; got < uint64(r.sent)*9/10 {
		t.Errorf("the listener answered %d INITs of %d: the flood did not reach msp", got, r.sent)
	}
	time.Sleep(time.Until(floodEnd.Add(pendingTimeout + time.Second)))
	var after int
	for range 50 { // sessions of the connects may still be closing
		if after = runtime.NumGoroutine(); int64(after) <= idle+maxGoroutinesAfter {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	peak := gs.end()
	t.Logf("goroutines (test process, victim in it): idle %d, peak %d during the flood, %d after it and the pending timeout (limit idle + %d)",
		idle, peak, after, maxGoroutinesAfter)
	if int64(after) > idle+maxGoroutinesAfter {
		t.Errorf("%d goroutines after the flood, over idle %d + %d", after, idle, maxGoroutinesAfter)
	}
	if e := tun.run(context.Background(), 1, 0); e.ok != 1 {
		t.Errorf("the session made before the flood, after it: %s", e)
	}
}
