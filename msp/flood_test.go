package msp

import (
	"context"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp/internal/seal"
)

// chanAddr names one end of a chanTransport.
type chanAddr string

func (a chanAddr) Network() string { return "chan" }
func (a chanAddr) String() string  { return string(a) }

type datagram struct {
	b    []byte
	from net.Addr
}

// chanTransport is one end of an in-memory datagram pair; anything may
// also be pushed into its inbox (an attacker's packets).
type chanTransport struct {
	self  chanAddr
	in    chan datagram
	peer  *chanTransport
	done  chan struct{}
	close sync.Once
}

func chanPair() (*chanTransport, *chanTransport) {
	a := &chanTransport{self: "a", in: make(chan datagram, 64), done: make(chan struct{})}
	b := &chanTransport{self: "b", in: make(chan datagram, 64), done: make(chan struct{})}
	a.peer, b.peer = b, a
	return a, b
}

func (t *chanTransport) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-t.in:
		return copy(p, d.b), d.from, nil
	case <-t.done:
		return 0, nil, net.ErrClosed
	}
}

func (t *chanTransport) WriteTo(p []byte, _ net.Addr) (int, error) {
	select {
	case t.peer.in <- datagram{append([]byte(nil), p...), t.self}:
		return len(p), nil
	case <-t.done:
		return 0, net.ErrClosed
	case <-t.peer.done:
		return len(p), nil
	}
}

func (t *chanTransport) PeerAddr(identity.SID, uint16) net.Addr { return t.peer.self }
func (t *chanTransport) FromNode(net.Addr, identity.SID) bool   { return true }
func (t *chanTransport) LocalAddr() net.Addr                    { return t.self }
func (t *chanTransport) Close() error                           { t.close.Do(func() { close(t.done) }); return nil }
func (t *chanTransport) MaxPayload(identity.SID) int            { return 1400 }

// TestInitFloodCostsNoSessions: INITs from fresh identities, each valid,
// cost the listener a pending handshake and no goroutine, so a legitimate
// dial in the middle of the flood gets through, and only confirmed
// sessions count against MaxSessions. It used to start a whole session
// (arq, smux, goroutines) per INIT: 1024 of them refused everyone else.
func TestInitFloodCostsNoSessions(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		server, _ := identity.Generate(nil)
		client, _ := identity.Generate(nil)
		dialSide, lisSide := chanPair()
		l := Listen(lisSide, server, 5000, Config{MaxSessions: 64})
		defer l.Close()
		echoServer(t, l)
		base := runtime.NumGoroutine()

		const flood = 400 // > maxPending + MaxSessions; each costs a signature check and an X25519
		ids := make([]*identity.Identity, flood)
		for i := range ids {
			ids[i], _ = identity.Generate(nil)
		}
		stop := make(chan struct{})
		flooded := make(chan int)
		go func() {
			n := 0
			defer func() { flooded <- n }()
			tick := time.NewTicker(5 * time.Millisecond) // 200 INITs/s
			defer tick.Stop()
			for _, id := range ids {
				<-tick.C
				hs, err := seal.NewInitiator(id, server.SID(), uint32(n+1), portParams(5000), time.Now())
				if err != nil {
					t.Error(err)
					return
				}
				select {
				case lisSide.in <- datagram{hs.Message(), chanAddr("attacker")}:
					n++
				case <-stop:
					return
				}
			}
		}()
		// Drain what the listener sends the attacker's address (and the
		// client): the answers to the flood land in dialSide.in too.
		time.Sleep(50 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		s, err := Dialer{Identity: client}.Dial(ctx, dialSide, server.SID(), 5000)
		if err != nil {
			close(stop)
			<-flooded
			t.Fatalf("a legitimate dial during an INIT flood: %v", err)
		}
		defer s.Close()
		t.Logf("legitimate dial took %v during the flood", time.Since(start))
		n := <-flooded
		close(stop)
		if n < flood {
			t.Fatalf("the flood stopped after %d INITs", n)
		}
		// The legitimate session, its dialing endpoint and the echo take
		// about 12; a session per INIT would be hundreds.
		if g := runtime.NumGoroutine(); g > base+20 {
			t.Fatalf("%d INITs left %d goroutines, %d before: want at most 20 more", n, g, base)
		}
		ep := l.eps[0]
		ep.mu.Lock()
		sessions, pending := len(ep.sessions), len(ep.pending)
		ep.mu.Unlock()
		if sessions != 1 || pending > maxPending {
			t.Fatalf("after %d INITs: %d sessions (want the legitimate 1), %d pending (at most %d)", n, sessions, pending, maxPending)
		}
		t.Logf("%d INITs: %d sessions, %d pending, %d pending dropped", n, sessions, pending, ep.stats.pendingDropped.Load())
		st, err := s.OpenStream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		st.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := st.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := st.Read(make([]byte, 4)); err != nil {
			t.Fatalf("the legitimate session after the flood: %v", err)
		}
	})
}

// TestReplayedInitAfterEviction: an INIT replayed once its answer has left
// the cache, while the peer's newer handshake is pending or not, starts no
// session and is not answered from another address.
func TestReplayedInit(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		server, _ := identity.Generate(nil)
		client, _ := identity.Generate(nil)
		_, lisSide := chanPair()
		l := Listen(lisSide, server, 5000, Config{})
		defer l.Close()
		hs, _ := seal.NewInitiator(client, server.SID(), 7, portParams(5000), time.Now())
		newer, _ := seal.NewInitiator(client, server.SID(), 8, portParams(5000), time.Now().Add(time.Millisecond))
		ep := l.eps[0]
		ep.handleInit(hs.Message(), chanAddr("a"))
		ep.handleInit(newer.Message(), chanAddr("a"))
		// The first INIT's answer leaves the cache; replayed, it is older than
		// the pending one and is dropped.
		ep.mu.Lock()
		delete(ep.answered, seal.HashInit(hs.Message()))
		ep.mu.Unlock()
		ep.handleInit(hs.Message(), chanAddr("a"))
		ep.mu.Lock()
		defer ep.mu.Unlock()
		if len(ep.sessions) != 0 || len(ep.pending) != 1 {
			t.Fatalf("%d sessions, %d pending: want 0 and 1", len(ep.sessions), len(ep.pending))
		}
		if ep.stats.staleInit.Load() != 1 {
			t.Fatalf("stale INITs counted %d, want 1", ep.stats.staleInit.Load())
		}
	})
}

// replayFirst is a dialing transport whose first datagram (the INIT) an
// attacker copies and delivers first, from an address of its own.
type replayFirst struct {
	*chanTransport
	once sync.Once
}

func (r *replayFirst) WriteTo(p []byte, a net.Addr) (int, error) {
	r.once.Do(func() {
		r.peer.in <- datagram{append([]byte(nil), p...), chanAddr("evil")}
	})
	return r.chanTransport.WriteTo(p, a)
}

// TestReplyAddressFromRecords: a session's reply address is where the
// peer's authenticated records come from, not where its INIT (which anyone
// can copy and send from elsewhere) was first seen.
func TestReplyAddressFromRecords(t *testing.T) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	dialSide, lisSide := chanPair()
	l := Listen(lisSide, server, 5000, Config{})
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := Dialer{Identity: client}.Dial(ctx, &replayFirst{chanTransport: dialSide}, server.SID(), 5000)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ep := l.eps[0]
	deadline := time.Now().Add(3 * time.Second)
	for {
		ep.mu.Lock()
		var got net.Addr
		for _, ls := range ep.sessions {
			got = ls.RemoteAddr()
		}
		ep.mu.Unlock()
		if got != nil {
			if got.String() != "a" {
				t.Fatalf("the listener replies to %v, where the INIT copy came from; want a, where the records come from", got)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no session at the listener")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FuzzEndpointInit feeds a listening endpoint arbitrary datagrams as INITs
// (and, through the read loop's dispatch, as anything else) from arbitrary
// addresses: no panic, and its state stays within its bounds.
func FuzzEndpointInit(f *testing.F) {
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	hs, _ := seal.NewInitiator(client, server.SID(), 1, portParams(5000), time.Now())
	f.Add(hs.Message(), "a")
	other, _ := seal.NewInitiator(client, server.SID(), 2, portParams(5001), time.Now())
	f.Add(other.Message(), "b")
	f.Add([]byte{1}, "c")
	f.Fuzz(func(t *testing.T, pkt []byte, from string) {
		_, lisSide := chanPair()
		l := Listen(lisSide, server, 5000, Config{})
		defer l.Close()
		ep := l.eps[0]
		ep.handleInit(pkt, chanAddr(from))
		ep.handleInit(pkt, chanAddr(from+"x")) // the same INIT from elsewhere: not answered
		ep.mu.Lock()
		defer ep.mu.Unlock()
		if len(ep.sessions) != 0 || len(ep.pending) > 1 || len(ep.answered) > 1 {
			t.Fatalf("one INIT left %d sessions, %d pending, %d answers", len(ep.sessions), len(ep.pending), len(ep.answered))
		}
	})
}
