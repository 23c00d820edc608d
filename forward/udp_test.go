package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/internal/protodoc"
)

// fakeSession is one end of an in-memory pair of datagram sessions: what
// one end sends, the other's receive returns (queues of 1024; beyond,
// dropped, as a lossy path would).
type fakeSession struct {
	peer *fakeSession
	in   chan []byte
	max  int
	done chan struct{}
	once *sync.Once
	// listen: the listening side's receive queue, with the session.
	listenQ chan fakeDatagram
}

type fakeDatagram struct {
	s DatagramSession
	p []byte
}

// fakeSessions returns the connecting end of a new pair, whose listening
// end's datagrams go to listenQ.
func fakeSessions(listenQ chan fakeDatagram, max int) *fakeSession {
	done, once := make(chan struct{}), &sync.Once{}
	c := &fakeSession{in: make(chan []byte, 1024), max: max, done: done, once: once}
	l := &fakeSession{max: max, done: done, once: once, listenQ: listenQ}
	c.peer, l.peer = l, c
	return c
}

func (s *fakeSession) SendDatagram(p []byte, budget time.Duration) error {
	if len(p) > s.max {
		return errors.New("fake: too large")
	}
	if isDone(s) {
		return net.ErrClosed
	}
	p = bytes.Clone(p)
	if q := s.peer.listenQ; q != nil {
		select {
		case q <- fakeDatagram{s: s.peer, p: p}:
		default:
		}
		return nil
	}
	select {
	case s.peer.in <- p:
	default:
	}
	return nil
}

func (s *fakeSession) ReceiveDatagram(ctx context.Context) ([]byte, error) {
	select {
	case p := <-s.in:
		return p, nil
	case <-s.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *fakeSession) MaxDatagram() int      { return s.max }
func (s *fakeSession) Done() <-chan struct{} { return s.done }
func (s *fakeSession) end()                  { s.once.Do(func() { close(s.done) }) }

// receiveFrom is ServeListen's receive over listenQ.
func receiveFrom(listenQ chan fakeDatagram) func(context.Context) (DatagramSession, []byte, error) {
	return func(ctx context.Context) (DatagramSession, []byte, error) {
		select {
		case d := <-listenQ:
			return d.s, d.p, nil
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// udpEcho runs a UDP echo server on loopback until the test ends.
func udpEcho(t testing.TB) net.Addr {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxUDP)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr()
}

// udpTunnel serves both sides of UDP flows over fake sessions: clients
// send to the returned address, the target gets what they send. session
// gives the connecting side its session.
type udpTunnel struct {
	addr            net.Addr
	connect, listen *UDPFlows
	cancel          context.CancelFunc
	connErr, lisErr chan error
	mu              sync.Mutex
	sessions        []*fakeSession
	listenQ         chan fakeDatagram
	max             int
}

func startUDPTunnel(t *testing.T, target net.Addr, connect, listen *UDPFlows, max int) *udpTunnel {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tu := &udpTunnel{addr: pc.LocalAddr(), connect: connect, listen: listen, cancel: cancel,
		connErr: make(chan error, 1), lisErr: make(chan error, 1), listenQ: make(chan fakeDatagram, 1024), max: max}
	go func() {
		tu.connErr <- connect.ServeConnect(ctx, pc, func(context.Context) (DialedSession, error) {
			tu.mu.Lock()
			defer tu.mu.Unlock()
			s := fakeSessions(tu.listenQ, tu.max)
			tu.sessions = append(tu.sessions, s)
			return s, nil
		})
	}()
	go func() { tu.lisErr <- listen.ServeListen(ctx, receiveFrom(tu.listenQ), target.String(), nil) }()
	t.Cleanup(tu.stop)
	return tu
}

func (tu *udpTunnel) stop() {
	tu.cancel()
	for _, c := range []chan error{tu.connErr, tu.lisErr} {
		if err, ok := <-c; ok && !errors.Is(err, context.Canceled) {
			panic(fmt.Sprintf("serve: %v", err))
		}
		close(c)
	}
}

func (tu *udpTunnel) session(i int) *fakeSession {
	tu.mu.Lock()
	defer tu.mu.Unlock()
	return tu.sessions[i]
}

// dialUDPClient is a local UDP client of the tunnel.
func dialUDPClient(t testing.TB, to net.Addr) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, to.(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpRoundTrip sends msg and reads the answer, within 5 s.
func udpRoundTrip(t testing.TB, c *net.UDPConn, msg []byte) []byte {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, maxUDP)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %d bytes: %v", len(msg), err)
	}
	return buf[:n]
}

// TestUDPFlowsEcho: four clients, each a flow; every datagram comes back
// to the client that sent it, unchanged; the counters agree.
func TestUDPFlowsEcho(t *testing.T) {
	var connect, listen UDPFlows
	tu := startUDPTunnel(t, udpEcho(t), &connect, &listen, 1400)
	const clients, rounds = 4, 50
	cs := make([]*net.UDPConn, clients)
	for i := range cs {
		cs[i] = dialUDPClient(t, tu.addr)
	}
	for r := range rounds {
		for i, c := range cs {
			msg := bytes.Repeat(fmt.Appendf(nil, "client %d round %d;", i, r), 1+r%40)
			if got := udpRoundTrip(t, c, msg); !bytes.Equal(got, msg) {
				t.Fatalf("client %d got %q, want %q", i, got, msg)
			}
		}
	}
	cst, lst := connect.Stats(), listen.Stats()
	const n = clients * rounds
	if cst.In != n || cst.Out != n || lst.In != n || lst.Out != n || cst.Flows != clients || lst.Flows != clients || cst.Opened != clients {
		t.Fatalf("connect %+v\nlisten %+v", cst, lst)
	}
}

// TestUDPFlowsTooLarge: a datagram larger than the session carries is
// dropped and counted, its size kept; smaller ones still pass.
func TestUDPFlowsTooLarge(t *testing.T) {
	var connect, listen UDPFlows
	tu := startUDPTunnel(t, udpEcho(t), &connect, &listen, 100)
	c := dialUDPClient(t, tu.addr)
	if _, err := c.Write(make([]byte, 200)); err != nil {
		t.Fatal(err)
	}
	if got := udpRoundTrip(t, c, []byte("small")); string(got) != "small" {
		t.Fatalf("got %q", got)
	}
	if st := connect.Stats(); st.TooLarge != 1 || st.Largest != 200 || st.In != 1 {
		t.Fatalf("stats %+v", st)
	}
	// 99 bytes and the one-byte flow id fit exactly; 100 do not.
	if got := udpRoundTrip(t, c, make([]byte, 99)); len(got) != 99 {
		t.Fatalf("got %d bytes", len(got))
	}
	c.Write(make([]byte, 100))
	if got := udpRoundTrip(t, c, []byte("after")); string(got) != "after" {
		t.Fatalf("got %q", got)
	}
	if st := connect.Stats(); st.TooLarge != 2 || st.Largest != 200 {
		t.Fatalf("stats %+v", st)
	}
}

// TestUDPFlowsIdleAndBound: flows idle for Idle are forgotten on both
// sides; beyond MaxFlows the one idle longest goes, and its client's
// next datagram starts a new flow.
func TestUDPFlowsIdleAndBound(t *testing.T) {
	connect := UDPFlows{Idle: time.Second, MaxFlows: 2}
	listen := UDPFlows{Idle: time.Second}
	tu := startUDPTunnel(t, udpEcho(t), &connect, &listen, 1400)
	a, b, c := dialUDPClient(t, tu.addr), dialUDPClient(t, tu.addr), dialUDPClient(t, tu.addr)
	udpRoundTrip(t, a, []byte("a"))
	udpRoundTrip(t, b, []byte("b"))
	udpRoundTrip(t, c, []byte("c")) // a, idle longest, goes
	if st := connect.Stats(); st.Evicted != 1 || st.Flows != 2 || st.Opened != 3 {
		t.Fatalf("connect %+v", st)
	}
	if got := udpRoundTrip(t, a, []byte("a again")); string(got) != "a again" {
		t.Fatalf("got %q", got)
	}
	if st := connect.Stats(); st.Opened != 4 || st.Evicted != 2 {
		t.Fatalf("connect %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for connect.Stats().Flows != 0 || listen.Stats().Flows != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("flows not forgotten: connect %+v, listen %+v", connect.Stats(), listen.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := listen.Stats(); st.Expired != st.Opened {
		t.Fatalf("listen %+v", st)
	}
}

// TestUDPFlowsNewSession: when the session ends, the next datagram gets
// a new one (the redialer's), and the flow goes on in it.
func TestUDPFlowsNewSession(t *testing.T) {
	var connect, listen UDPFlows
	tu := startUDPTunnel(t, udpEcho(t), &connect, &listen, 1400)
	c := dialUDPClient(t, tu.addr)
	udpRoundTrip(t, c, []byte("first"))
	tu.session(0).end()
	if got := udpRoundTrip(t, c, []byte("second")); string(got) != "second" {
		t.Fatalf("got %q", got)
	}
	tu.mu.Lock()
	n := len(tu.sessions)
	tu.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d sessions, want 2", n)
	}
}

// TestParseUDPTarget: udp:[HOST:]PORT as ParseTarget reads it.
func TestParseUDPTarget(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		udp, ok  bool
	}{
		{"udp:53", "127.0.0.1:53", true, true},
		{"udp:[::1]:53", "[::1]:53", true, true},
		{"udp:example.org:53", "example.org:53", true, true},
		{"53", "", false, true},
		{"udp:", "", true, false},
		{"udp:0", "", true, false},
		{"udp:host:x", "", true, false},
	} {
		got, udp, err := ParseUDPTarget(tc.in)
		if udp != tc.udp || (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%q: %q %v %v", tc.in, got, udp, err)
		}
	}
}

func FuzzParseFlow(f *testing.F) {
	f.Add(appendFlow(nil, 0, nil))
	f.Add(appendFlow(nil, 1, []byte("payload")))
	f.Add(appendFlow(nil, 1<<40, make([]byte, 1400)))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, p, err := parseFlow(b)
		if err != nil {
			return
		}
		if len(p) > len(b) {
			t.Fatalf("payload of %d bytes from %d", len(p), len(b))
		}
		id2, p2, err := parseFlow(appendFlow(nil, id, p))
		if err != nil || id2 != id || !bytes.Equal(p2, p) {
			t.Fatalf("re-encoding differs: %d %v", id2, err)
		}
	})
}

// TestProtocolDocUDP: the UDP flow defaults docs/PROTOCOL.md quotes are
// the code's.
func TestProtocolDocUDP(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("(%d ms by default; `--deadline=0`: none)", DefaultDeadline.Milliseconds()),
		fmt.Sprintf("Flows idle for `--udp-idle` (%d s)", int(DefaultUDPIdle.Seconds())),
		fmt.Sprintf("each side holds at most %d flows", DefaultMaxFlows),
	)
}

// TestFlowTableFairEviction: at the bound, the group holding the most
// flows gives up its flow idle longest, the newcomer's group counting the
// newcomer; without groups, the flow idle longest goes.
func TestFlowTableFairEviction(t *testing.T) {
	type key struct{ g, i int }
	group := func(k key) any { return k.g }
	tb := newFlowTable[key, key]()
	t0 := time.Now()
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for i := range 3 { // group 0 holds the table: flows idle since 0, 1, 2
		if _, ok := tb.add(key{0, i}, key{0, i}, at(i), 3, group); ok {
			t.Fatalf("eviction below the bound")
		}
	}
	tb.get(key{0, 0}, at(10)) // active again: {0 1} is now idle longest
	if old, ok := tb.add(key{1, 0}, key{1, 0}, at(11), 3, group); !ok || old != (key{0, 1}) {
		t.Fatalf("group 1's first flow evicted %v %v, want {0 1}", old, ok)
	}
	// Group 1 (1 flow, 2 with the newcomer) against group 0 (2): a tie,
	// so group 1 gives up its own.
	if old, ok := tb.add(key{1, 1}, key{1, 1}, at(12), 3, group); !ok || old != (key{1, 0}) {
		t.Fatalf("group 1's second flow evicted %v %v, want {1 0}", old, ok)
	}
	if old, ok := tb.add(key{2, 0}, key{2, 0}, at(13), 3, nil); !ok || old != (key{0, 2}) {
		t.Fatalf("without groups evicted %v %v, want {0 2}, idle longest", old, ok)
	}
}
