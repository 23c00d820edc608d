package probe

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// fakeTable is a routing table that counts its reads.
type fakeTable struct {
	mu     sync.Mutex
	routes []mesh.Route
	nbs    []mesh.Neighbour
	err    error
	reads  int
}

func (f *fakeTable) Routes() ([]mesh.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return append([]mesh.Route(nil), f.routes...), f.err
}

func (f *fakeTable) Neighbours() ([]mesh.Neighbour, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.nbs, f.err
}

type strAddr string

func (a strAddr) Network() string { return "udp" }
func (a strAddr) String() string  { return string(a) }

var (
	self    = sid(0xAA)
	pinger  = sid(0x01)
	near    = sid(0x02) // a neighbour of self
	far     = sid(0x03) // three hops away, through near
	nowhere = sid(0x04)
)

func testTable() *fakeTable {
	return &fakeTable{
		routes: []mesh.Route{
			{SID: near, NextHop: near, Hops: 1},
			{SID: far, NextHop: near, Hops: 3},
			{SID: pinger, NextHop: near, Hops: 2},
		},
		nbs: []mesh.Neighbour{{SID: near, Addr: strAddr("192.0.2.1:4110")}},
	}
}

func testResponder(t testing.TB, table Table, cfg ResponderConfig, now time.Time) *Responder {
	t.Helper()
	cfg.Self, cfg.Table = self, table
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newResponder(cfg, now)
}

func TestHandleEcho(t *testing.T) {
	now := time.Now()
	r := testResponder(t, testTable(), ResponderConfig{}, now)
	tests := []struct {
		from identity.SID
		hops int
	}{{pinger, 2}, {near, 1}, {self, 0}, {nowhere, HopsUnknown}}
	for _, tt := range tests {
		q := Echo{ID: 7, Seq: 9, Data: []byte("some data")}.Append(nil)
		b := r.handle(EchoPort, q, nil, tt.from, now)
		e, _, err := ParseEcho(b)
		if err != nil || !e.Reply || e.Hops != tt.hops || e.ID != 7 || e.Seq != 9 || string(e.Data) != "some data" || len(b) != len(q) {
			t.Errorf("echo from %s: reply %+v (%v), %d bytes for %d; want hops %d", tt.from.Short(), e, err, len(b), len(q), tt.hops)
		}
	}
	if s := r.Stats(); s.Echoes != uint64(len(tests)) || s.Malformed != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestHandleTrace(t *testing.T) {
	now := time.Now()
	table := testTable()
	table.routes = append(table.routes, mesh.Route{SID: sid(5), NextHop: sid(6), Hops: 2})
	r := testResponder(t, table, ResponderConfig{}, now)
	tests := []struct {
		dst  identity.SID
		want TraceReply
	}{
		{far, TraceReply{Status: StatusNext, Next: near, Hops: 3, Addr: "192.0.2.1:4110"}},
		{near, TraceReply{Status: StatusNext, Next: near, Hops: 1, Addr: "192.0.2.1:4110"}},
		{self, TraceReply{Status: StatusDestination}},
		{nowhere, TraceReply{Status: StatusNoRoute}},
		// A next hop that is not (or no longer) a neighbour: no address.
		{sid(5), TraceReply{Status: StatusNext, Next: sid(6), Hops: 2}},
	}
	for _, tt := range tests {
		q := TraceRequest{ID: 3, Seq: 4, Dst: tt.dst}.Append(nil)
		b := r.handle(TracePort, q, nil, pinger, now)
		got, _, err := ParseTraceReply(b)
		tt.want.ID, tt.want.Seq = 3, 4
		if err != nil || got != tt.want || len(b) > len(q) {
			t.Errorf("trace of %s: %+v (%v), %d bytes; want %+v", tt.dst.Short(), got, err, len(b), tt.want)
		}
	}
}

func TestHandleDropsMalformed(t *testing.T) {
	now := time.Now()
	r := testResponder(t, testTable(), ResponderConfig{Burst: 1}, now)
	echo := Echo{ID: 1, Seq: 1}.Append(nil)
	trace := TraceRequest{Dst: far}.Append(nil)
	bad := []struct {
		port uint16
		b    []byte
	}{
		{EchoPort, nil},
		{EchoPort, []byte("garbage")},
		{EchoPort, Echo{Reply: true, Hops: 1}.Append(nil)}, // a reply is no request
		{EchoPort, trace},
		{EchoPort, append(Echo{}.Append(nil), make([]byte, MaxData+1)...)},
		{TracePort, echo},
		{TracePort, trace[:len(trace)-1]},
		{TracePort, TraceReply{Status: StatusDestination}.Append(nil)},
	}
	for _, c := range bad {
		if b := r.handle(c.port, c.b, nil, pinger, now); b != nil {
			t.Errorf("port %d: %x answered with %x", c.port, c.b, b)
		}
	}
	if s := r.Stats(); s.Malformed != uint64(len(bad)) || s.RateLimited != 0 {
		t.Fatalf("stats %+v, want %d malformed and none rate-limited", s, len(bad))
	}
	// Malformed requests took no tokens: the burst of one is still there.
	if r.handle(EchoPort, echo, nil, pinger, now) == nil {
		t.Fatal("a good request after malformed ones was not answered")
	}
}

func TestRateLimitPerSource(t *testing.T) {
	start := time.Now()
	r := testResponder(t, testTable(), ResponderConfig{Rate: 10, Burst: 20}, start)
	q := Echo{ID: 1, Seq: 1, Data: make([]byte, 100)}.Append(nil)
	count := func(from identity.SID, n int, at time.Time) int {
		got := 0
		for i := 0; i < n; i++ {
			if r.handle(EchoPort, q, nil, from, at) != nil {
				got++
			}
		}
		return got
	}
	if got := count(pinger, 100, start); got != 20 {
		t.Fatalf("flood of 100 at once: %d answered, want the burst of 20", got)
	}
	// Another source is not held back by the first one's flood.
	if got := count(near, 5, start); got != 5 {
		t.Fatalf("another source: %d of 5 answered", got)
	}
	// Half a second later the flooder has earned 5 more.
	if got := count(pinger, 100, start.Add(500*time.Millisecond)); got != 5 {
		t.Fatalf("after 500 ms: %d answered, want 5", got)
	}
	if s := r.Stats(); s.RateLimited != 80+95 || s.Echoes != 30 {
		t.Fatalf("stats %+v, want 175 rate-limited, 30 answered", s)
	}
}

func TestRateLimitTotal(t *testing.T) {
	now := time.Now()
	r := testResponder(t, testTable(), ResponderConfig{TotalRate: 10, TotalBurst: 30}, now)
	q := TraceRequest{Dst: far}.Append(nil)
	got := 0
	for i := 0; i < 100; i++ {
		// Every request from another (forged) source.
		if r.handle(TracePort, q, nil, identity.SID{byte(i), 1}, now) != nil {
			got++
		}
	}
	if got != 30 {
		t.Fatalf("100 sources at once: %d answered, want the total burst of 30", got)
	}
}

func TestLimiterBoundsSources(t *testing.T) {
	now := time.Now()
	c := ResponderConfig{Rate: 1, Burst: 2, MaxSources: 2}
	c.fill()
	l := newLimiter(c, now)
	if !l.allow(sid(1), now) || !l.allow(sid(2), now) {
		t.Fatal("first requests refused")
	}
	if l.allow(sid(3), now) {
		t.Fatal("a third source admitted while two are tracked and busy")
	}
	// Two seconds on, both buckets are full again: they make room.
	later := now.Add(2 * time.Second)
	if !l.allow(sid(3), later) {
		t.Fatal("a third source refused after the others went idle")
	}
	if len(l.sources) > c.MaxSources {
		t.Fatalf("%d sources tracked, bound %d", len(l.sources), c.MaxSources)
	}
}

func TestTableSnapshot(t *testing.T) {
	now := time.Now()
	table := testTable()
	r := testResponder(t, table, ResponderConfig{Rate: 1000, Burst: 1000, TableTTL: time.Second}, now)
	q := Echo{}.Append(nil)
	for i := 0; i < 50; i++ {
		r.handle(EchoPort, q, nil, pinger, now.Add(time.Duration(i)*time.Millisecond))
	}
	if table.reads != 1 {
		t.Fatalf("50 requests within the TTL read the table %d times, want 1", table.reads)
	}
	// After the TTL it is read again; a failed read keeps the old snapshot.
	table.err = errors.New("daemon gone")
	b := r.handle(EchoPort, q, nil, pinger, now.Add(2*time.Second))
	if e, _, _ := ParseEcho(b); e.Hops != 2 {
		t.Fatalf("after a failed read: hops %d, want 2 from the old snapshot", e.Hops)
	}
	r.handle(EchoPort, q, nil, pinger, now.Add(2*time.Second+time.Millisecond))
	if table.reads != 2 || r.Stats().TableErrors != 1 {
		t.Fatalf("reads %d, table errors %d; want 2 and 1 (no retry within the TTL)", table.reads, r.Stats().TableErrors)
	}

	// A node missing from the snapshot (it just appeared) makes it be
	// taken again, though the TTL has not passed, at most every
	// missRefresh.
	table.err = nil
	at := now.Add(10 * time.Second)
	r.handle(EchoPort, q, nil, pinger, at) // a fresh snapshot
	reads := table.reads
	newcomer := sid(0x77)
	table.routes = append(table.routes, mesh.Route{SID: newcomer, NextHop: near, Hops: 5})
	b = r.handle(EchoPort, q, nil, newcomer, at.Add(missRefresh/2))
	if e, _, _ := ParseEcho(b); e.Hops != HopsUnknown || table.reads != reads {
		t.Fatalf("within missRefresh: hops %d, %d reads; want unknown and no read", e.Hops, table.reads-reads)
	}
	b = r.handle(EchoPort, q, nil, newcomer, at.Add(missRefresh))
	if e, _, _ := ParseEcho(b); e.Hops != 5 || table.reads != reads+1 {
		t.Fatalf("after missRefresh: hops %d, %d reads; want 5 and one read", e.Hops, table.reads-reads)
	}
}

func TestResponderConfigValidate(t *testing.T) {
	if _, err := NewResponder(ResponderConfig{Table: testTable()}); err == nil {
		t.Error("a responder without SID")
	}
	if _, err := NewResponder(ResponderConfig{Self: self}); err == nil {
		t.Error("a responder without table")
	}
}

// FuzzResponderHandle: whatever arrives, the responder does not panic, and
// what it answers is a well-formed reply to it, no longer than it.
func FuzzResponderHandle(f *testing.F) {
	f.Add(uint16(EchoPort), Echo{ID: 1, Seq: 2, Data: []byte("data")}.Append(nil))
	f.Add(uint16(EchoPort), Echo{}.Append(nil))
	f.Add(uint16(TracePort), TraceRequest{ID: 1, Seq: 2, Dst: far}.Append(nil))
	f.Add(uint16(TracePort), TraceRequest{Dst: self}.Append(nil))
	f.Add(uint16(TracePort), TraceRequest{Dst: nowhere}.Append(nil))
	f.Add(uint16(TracePort), TraceReply{Status: StatusNext, Next: near, Addr: "x:1"}.Append(nil))
	f.Add(uint16(11), []byte("Qssh"))
	now := time.Now()
	table := testTable()
	// An address as long as a trace reply can carry.
	table.nbs[0].Addr = strAddr(string(bytes.Repeat([]byte{'a'}, MaxAddr)))
	r := testResponder(f, table, ResponderConfig{Rate: 1e9, Burst: 1 << 30, TotalRate: 1e9, TotalBurst: 1 << 30}, now)
	out := make([]byte, 0, HeaderLen+MaxData)
	f.Fuzz(func(t *testing.T, port uint16, b []byte) {
		reply := r.handle(port, b, out, pinger, now)
		if reply == nil {
			return
		}
		if len(reply) > len(b) {
			t.Fatalf("reply of %d bytes to %d", len(reply), len(b))
		}
		switch port {
		case EchoPort:
			q, _, _ := ParseEcho(b)
			e, _, err := ParseEcho(reply)
			if err != nil || !e.Reply || e.ID != q.ID || e.Seq != q.Seq || !bytes.Equal(e.Data, q.Data) {
				t.Fatalf("echo reply %+v (%v) to %+v", e, err, q)
			}
		case TracePort:
			q, _, _ := ParseTraceRequest(b)
			rep, _, err := ParseTraceReply(reply)
			if err != nil || rep.ID != q.ID || rep.Seq != q.Seq {
				t.Fatalf("trace reply %+v (%v) to %+v", rep, err, q)
			}
		default:
			t.Fatalf("answered on port %d", port)
		}
	})
}

// routeLaterConn is an MDP port on which one request arrives, and whose
// writes find no route until routeAfter writes were tried.
type routeLaterConn struct {
	req        []byte
	from       mesh.Addr
	routeAfter int

	onWrite func(tries int) // called under mu at each write

	mu     sync.Mutex
	tries  int
	sent   [][]byte
	read   bool
	closed chan struct{}
}

func (c *routeLaterConn) ReadFrom(p []byte) (int, net.Addr, error) {
	c.mu.Lock()
	first := !c.read
	c.read = true
	c.mu.Unlock()
	if first {
		return copy(p, c.req), c.from, nil
	}
	<-c.closed
	return 0, nil, net.ErrClosed
}

func (c *routeLaterConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tries++
	if c.onWrite != nil {
		c.onWrite(c.tries)
	}
	if c.tries <= c.routeAfter {
		return 0, fmt.Errorf("mesh: %w", mesh.ErrNoRoute)
	}
	c.sent = append(c.sent, append([]byte(nil), b...))
	return len(b), nil
}

func (c *routeLaterConn) Close() error {
	select {
	case <-c.closed:
	default:
		close(c.closed)
	}
	return nil
}

// TestReplyHeldForRoute: a reply to a node with no route back yet is sent
// once the route appears; one whose route never comes is given up after
// holdFor. (In a synctest bubble: time is virtual.)
func TestReplyHeldForRoute(t *testing.T) {
	for _, tt := range []struct {
		routeAfter int
		sent       bool
	}{{3, true}, {1000, false}} {
		synctest.Test(t, func(t *testing.T) {
			q := Echo{ID: 1, Seq: 1, Data: []byte("x")}.Append(nil)
			newcomer := sid(0x55)
			pc := &routeLaterConn{req: q, from: mesh.Addr{SID: newcomer, Port: 40000}, routeAfter: tt.routeAfter, closed: make(chan struct{})}
			table := testTable()
			pc.onWrite = func(tries int) {
				if tries == tt.routeAfter {
					table.mu.Lock()
					table.routes = append(table.routes, mesh.Route{SID: newcomer, NextHop: near, Hops: 7})
					table.mu.Unlock()
				}
			}
			r, err := NewResponder(ResponderConfig{Self: self, Table: table, Echo: pc})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			time.Sleep(holdFor / 2)
			synctest.Wait()
			s := r.Stats()
			pc.mu.Lock()
			sent, tries := len(pc.sent), pc.tries
			pc.mu.Unlock()
			if tt.sent && (s.Delayed != 1 || s.WriteErrors != 0 || sent != 1 || tries != 4) {
				t.Errorf("route after 3 tries: stats %+v, %d sent in %d tries", s, sent, tries)
			}
			if tt.sent && sent == 1 {
				// The asker was not in the table when the request came;
				// by the time the reply goes, it is.
				if e, _, err := ParseEcho(pc.sent[0]); err != nil || e.Hops != 7 {
					t.Errorf("held reply: %+v (%v), want hops 7 from the table as it is when sent", e, err)
				}
			}
			if !tt.sent && (s.WriteErrors != 0 || sent != 0) {
				t.Errorf("no route, %v in: stats %+v, %d sent; want it still held", holdFor/2, s, sent)
			}
			time.Sleep(holdFor)
			synctest.Wait()
			s = r.Stats()
			pc.mu.Lock()
			sent, tries = len(pc.sent), pc.tries
			pc.mu.Unlock()
			if !tt.sent && (s.Delayed != 0 || s.WriteErrors != 1 || sent != 0 || tries != 1+int(holdFor/holdRetry)) {
				t.Errorf("no route ever: stats %+v, %d sent in %d tries, want given up after %d", s, sent, tries, 1+int(holdFor/holdRetry))
			}
		})
	}
}
