package probe_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/probe"
)

// linkDelay is the one-way delay of every link of a test chain: a round
// trip over h hops takes at least 2 h linkDelay.
const linkDelay = 2 * time.Millisecond

// chain is count nodes on memnet in a line: node i is linked to i-1 and
// i+1 only.
type chain struct {
	nodes []*mesh.Node
	conns []*memnet.Conn
}

func newChain(t *testing.T, count int) *chain {
	t.Helper()
	seed := rand.Int64()
	t.Logf("memnet seed %d", seed)
	nw := memnet.New(seed)
	nw.SetDefault(memnet.LinkConfig{Cut: true})
	c := &chain{}
	for i := 0; i < count; i++ {
		c.conns = append(c.conns, nw.Listen())
	}
	for i := 0; i+1 < count; i++ {
		nw.SetLinkBoth(c.conns[i].LocalAddr(), c.conns[i+1].LocalAddr(), memnet.LinkConfig{Delay: linkDelay})
	}
	for i := 0; i < count; i++ {
		var peers []net.Addr
		if i > 0 {
			peers = []net.Addr{c.conns[i-1].LocalAddr()}
		}
		c.nodes = append(c.nodes, meshtest.Start(t, c.conns[i], peers, meshtest.Timers(100*time.Millisecond, 2*time.Second)))
	}
	t.Cleanup(func() { nw.Close() })
	// Both ends route to each other over the whole chain.
	c.waitHops(t, 0, count-1)
	c.waitHops(t, count-1, 0)
	return c
}

// waitHops waits until node from has a route to node to of the chain's
// length.
func (c *chain) waitHops(t *testing.T, from, to int) {
	t.Helper()
	want := max(from-to, to-from)
	deadline := time.Now().Add(20 * time.Second)
	for {
		ch := c.nodes[from].Changed()
		for _, r := range c.nodes[from].Routes() {
			if r.SID == c.nodes[to].SID() && r.Hops == want {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d has no %d-hop route to node %d: %v", from, want, to, c.nodes[from].Routes())
		}
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// respond runs a responder on node i, answering echo and trace as asked.
func (c *chain) respond(t *testing.T, i int, echo, trace bool, cfg probe.ResponderConfig) *probe.Responder {
	t.Helper()
	r, err := probe.ServeNode(c.nodes[i], cfg, echo, trace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func (c *chain) respondAll(t *testing.T) {
	t.Helper()
	for i := range c.nodes {
		c.respond(t, i, true, true, probe.ResponderConfig{})
	}
}

func bind(t *testing.T, n *mesh.Node) *mesh.PacketConn {
	t.Helper()
	pc, err := n.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestPingFourHops(t *testing.T) {
	c := newChain(t, 5)
	c.respondAll(t)
	const count = 3
	var replies []probe.Reply
	cfg := probe.PingConfig{Count: count, Interval: 20 * time.Millisecond, Size: 56}
	sum, err := probe.RunPing(timeout(t, 20*time.Second), bind(t, c.nodes[0]), c.nodes[4].SID(), cfg, func(r probe.Reply) {
		replies = append(replies, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(replies) != count {
		t.Fatalf("%d replies, want %d: %+v", len(replies), count, replies)
	}
	for i, r := range replies {
		// Over 4 hops of linkDelay each way, a round trip takes at least
		// 8 linkDelay: the RTT is measured, not made up.
		if r.Err != nil || r.Dup || r.Seq != uint32(i+1) || r.From != c.nodes[4].SID() || r.Hops != 4 || r.Size != probe.HeaderLen+56 || r.RTT < 8*linkDelay {
			t.Errorf("reply %d: %+v; want seq %d, hops=4, 64 bytes, RTT ≥ %v", i, r, i+1, 8*linkDelay)
		}
	}
	if sum.Sent != count || sum.Received != count || sum.Loss() != 0 || sum.Errors != 0 {
		t.Errorf("summary %+v", sum)
	}
	if !(8*linkDelay <= sum.Min && sum.Min <= sum.Avg && sum.Avg <= sum.Max) || sum.Mdev < 0 || sum.Mdev > sum.Max-sum.Min+time.Microsecond {
		t.Errorf("summary RTTs min %v avg %v max %v mdev %v", sum.Min, sum.Avg, sum.Max, sum.Mdev)
	}
	t.Logf("%s", sum)

	// One ping, no count.
	r, err := probe.Ping(timeout(t, 10*time.Second), bind(t, c.nodes[0]), c.nodes[2].SID(), 0)
	if err != nil || r.Hops != 2 || r.Size != probe.HeaderLen || r.RTT < 4*linkDelay {
		t.Fatalf("Ping 2 hops: %+v, %v", r, err)
	}
}

func TestTraceFourHops(t *testing.T) {
	c := newChain(t, 5)
	c.respondAll(t)
	var seen []probe.Hop
	hops, err := probe.Trace(timeout(t, 20*time.Second), bind(t, c.nodes[0]), c.nodes[0].SID(), probe.NodeTable(c.nodes[0]),
		c.nodes[4].SID(), probe.TraceConfig{}, func(h probe.Hop) { seen = append(seen, h) })
	if err != nil {
		t.Fatal(err)
	}
	if len(hops) != 4 || len(seen) != 4 {
		t.Fatalf("%d hops (%d seen), want 4: %+v", len(hops), len(seen), hops)
	}
	for i, h := range hops {
		k := i + 1
		want := probe.Hop{N: k, SID: c.nodes[k].SID(), Addr: c.conns[k].LocalAddr().String(), Hops: 4 - k}
		got := h
		got.RTT = 0
		if got != want || h != seen[i] {
			t.Errorf("hop %d: %+v, want %+v", k, h, want)
		}
		if h.RTT < time.Duration(2*k)*linkDelay {
			t.Errorf("hop %d: RTT %v, below the %v its links take", k, h.RTT, time.Duration(2*k)*linkDelay)
		}
		t.Logf("%d %s %s %v", h.N, h.SID.Short(), h.Addr, h.RTT)
	}

	// A trace to self has no hops; a trace to a neighbour has one.
	if hops, err := probe.Trace(timeout(t, 5*time.Second), bind(t, c.nodes[0]), c.nodes[0].SID(), probe.NodeTable(c.nodes[0]), c.nodes[0].SID(), probe.TraceConfig{}, nil); err != nil || len(hops) != 0 {
		t.Errorf("trace to self: %+v, %v", hops, err)
	}
	if hops, err := probe.Trace(timeout(t, 5*time.Second), bind(t, c.nodes[3]), c.nodes[3].SID(), probe.NodeTable(c.nodes[3]), c.nodes[4].SID(), probe.TraceConfig{}, nil); err != nil || len(hops) != 1 || hops[0].SID != c.nodes[4].SID() {
		t.Errorf("trace to a neighbour: %+v, %v", hops, err)
	}
}

func TestUnknownSID(t *testing.T) {
	c := newChain(t, 2)
	c.respondAll(t)
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	unknown := id.SID()
	start := time.Now()
	sum, err := probe.RunPing(timeout(t, 10*time.Second), bind(t, c.nodes[0]), unknown, probe.PingConfig{Count: 5}, nil)
	if !errors.Is(err, mesh.ErrNoRoute) || !strings.Contains(err.Error(), unknown.String()) || sum.Received != 0 {
		t.Fatalf("ping to an unknown SID: %+v, %v; want an error naming it, wrapping mesh.ErrNoRoute", sum, err)
	}
	// It fails at once rather than after 5 intervals.
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("ping to an unknown SID took %v", took)
	}
	t.Logf("ping: %v", err)
	_, err = probe.Trace(timeout(t, 10*time.Second), bind(t, c.nodes[0]), c.nodes[0].SID(), probe.NodeTable(c.nodes[0]), unknown, probe.TraceConfig{}, nil)
	if !errors.Is(err, mesh.ErrNoRoute) || !strings.Contains(err.Error(), unknown.String()) {
		t.Fatalf("trace to an unknown SID: %v", err)
	}
	t.Logf("trace: %v", err)
}

func TestResponderSwitchedOff(t *testing.T) {
	c := newChain(t, 3)
	c.respond(t, 0, true, true, probe.ResponderConfig{})
	c.respond(t, 1, true, true, probe.ResponderConfig{})
	off := c.respond(t, 2, false, true, probe.ResponderConfig{}) // echo off, trace on

	cfg := probe.PingConfig{Count: 3, Interval: 20 * time.Millisecond, Wait: 300 * time.Millisecond}
	sum, err := probe.RunPing(timeout(t, 10*time.Second), bind(t, c.nodes[0]), c.nodes[2].SID(), cfg, nil)
	if !errors.Is(err, probe.ErrNoReply) || sum.Sent != 3 || sum.Received != 0 || sum.Loss() != 100 {
		t.Fatalf("ping with echo off: %+v, %v; want 3 sent, none received, ErrNoReply", sum, err)
	}
	if s := off.Stats(); s.Echoes != 0 {
		t.Fatalf("echo off, yet %d echoes answered", s.Echoes)
	}
	// Its trace side still answers.
	hops, err := probe.Trace(timeout(t, 10*time.Second), bind(t, c.nodes[0]), c.nodes[0].SID(), probe.NodeTable(c.nodes[0]), c.nodes[2].SID(), probe.TraceConfig{}, nil)
	if err != nil || len(hops) != 2 {
		t.Fatalf("trace with echo off: %+v, %v", hops, err)
	}
	// Trace off too: the last hop does not answer.
	off.Close()
	tcfg := probe.TraceConfig{Timeout: 100 * time.Millisecond, Tries: 2}
	hops, err = probe.Trace(timeout(t, 10*time.Second), bind(t, c.nodes[0]), c.nodes[0].SID(), probe.NodeTable(c.nodes[0]), c.nodes[2].SID(), tcfg, nil)
	if !errors.Is(err, probe.ErrNoReply) || len(hops) != 2 || hops[0].Lost || !hops[1].Lost || hops[1].SID != c.nodes[2].SID() {
		t.Fatalf("trace with trace off at the end: %+v, %v", hops, err)
	}
	t.Logf("trace: %v", err)
}

func TestFloodRateLimited(t *testing.T) {
	c := newChain(t, 2)
	rc := probe.ResponderConfig{Rate: 10, Burst: 20}
	r := c.respond(t, 1, true, true, rc)
	pc := bind(t, c.nodes[0])
	defer pc.Close()
	const flood = 200
	to := mesh.Addr{SID: c.nodes[1].SID(), Port: probe.EchoPort}
	start := time.Now()
	var sizes []int
	for i := 0; i < flood; i++ {
		q := probe.Echo{ID: 1, Seq: uint32(i), Data: make([]byte, i%100)}.Append(nil)
		sizes = append(sizes, len(q))
		if _, err := pc.WriteTo(q, to); err != nil {
			t.Fatal(err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 2048)
	answered := 0
	for {
		k, _, err := pc.ReadFrom(buf)
		if err != nil {
			break
		}
		e, _, err := probe.ParseEcho(buf[:k])
		if err != nil || !e.Reply || int(e.Seq) >= flood || k != sizes[e.Seq] {
			t.Fatalf("reply %+v (%v): %d bytes, request %d", e, err, k, sizes[e.Seq%flood])
		}
		answered++
	}
	elapsed := time.Since(start)
	s := r.Stats()
	bound := rc.Burst + int(rc.Rate*elapsed.Seconds()) + 1
	if answered < rc.Burst || answered > bound || int(s.Echoes) != answered || int(s.RateLimited) != flood-answered {
		t.Fatalf("flood of %d in %v: %d answered (burst %d, bound %d), stats %+v", flood, elapsed, answered, rc.Burst, bound, s)
	}
	t.Logf("flood of %d: %d answered, %d rate-limited", flood, answered, s.RateLimited)
}
