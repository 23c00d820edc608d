package mesh

// Admission and bounds: what hellos from fresh keys, unanswered hellos,
// forged sources, floods of origins and of bad signatures can make a node
// do (docs/PROTOCOL.md, "Admission").

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"net"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// freshIDs returns k identities made from seeds (fast and reproducible).
func freshIDs(t testing.TB, k int, tag byte) []*identity.Identity {
	t.Helper()
	ids := make([]*identity.Identity, k)
	for i := range ids {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = tag
		binary.BigEndian.PutUint32(seed[1:], uint32(i))
		id, err := identity.FromSeed(seed)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = id
	}
	return ids
}

// nodeGoroutines is the number of goroutines, once the count is steady.
func nodeGoroutines() int {
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	return runtime.NumGoroutine()
}

func TestFreshHellosCreateNoState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn := nw.Listen()
		n := forgedNode(t, cn)
		const many = 50
		conns := make([]*memnet.Conn, many)
		for i := range conns {
			conns[i] = nw.Listen()
			t.Cleanup(func() { conns[i].Close() })
		}
		ids := freshIDs(t, 1000, 1)
		before := nodeGoroutines()
		cookies := n.Stats().CookiesSent
		// 500 hellos from one address, 500 from 50 addresses; every one
		// correctly self-signed, with an MTU field asking for 32 KiB probes.
		for i, id := range ids {
			c := conns[0]
			if i >= 500 {
				c = conns[i%many]
			}
			h := wire.Hello{SID: id.SID(), Seq: 1, MTU: 32768}
			if _, err := c.WriteTo(wire.AppendHello(nil, h, id), cn.LocalAddr()); err != nil {
				t.Fatal(err)
			}
		}
		(&rawPeer{t: t, c: conns[1], to: cn.LocalAddr(), n: n}).barrier()
		if nbs := n.Neighbours(); len(nbs) != 0 {
			t.Fatalf("%d neighbours from hellos that echoed no cookie", len(nbs))
		}
		if got := n.Stats().CookiesSent - cookies; got != 1000 {
			t.Errorf("CookiesSent +%d, want +1000", got)
		}
		if after := nodeGoroutines(); after > before {
			t.Errorf("goroutines %d -> %d", before, after)
		}
		n.router.mu.Lock()
		routerState := len(n.router.routes) + len(n.router.adverts) + len(n.router.quality)
		n.router.mu.Unlock()
		if routerState != 0 {
			t.Errorf("router state for nodes never admitted: %d entries", routerState)
		}

		// Attackers that do receive at their addresses echo the cookie: they
		// stop at the neighbour cap.
		const attackers = 100
		for i := range attackers {
			c := nw.Listen()
			t.Cleanup(func() { c.Close() })
			r := &rawPeer{t: t, c: c, to: cn.LocalAddr()}
			id := ids[i]
			echo := askCookie(t, c, cn.LocalAddr(), id)
			r.send(wire.AppendHello(nil, wire.Hello{SID: id.SID(), Seq: 2, MTU: 1500, Echo: echo}, id))
		}
		(&rawPeer{t: t, c: conns[1], to: cn.LocalAddr(), n: n}).barrier()
		max := DefaultConfig().MaxNeighbours
		if got := len(n.Neighbours()); got != max {
			t.Errorf("%d neighbours after %d echoing attackers, want the cap %d", got, attackers, max)
		}
		if got := n.Stats().NeighbourCap; got != attackers-uint64(max) {
			t.Errorf("NeighbourCap %d, want %d", got, attackers-max)
		}
		// One link goroutine per neighbour, nothing for the others.
		if after := nodeGoroutines(); after > before+max+5 {
			t.Errorf("goroutines %d -> %d with %d neighbours", before, after, max)
		}
	})
}

// TestConfiguredPeerBeyondCap: a configured peer is admitted even when
// the neighbour cap is reached.
func TestConfiguredPeerBeyondCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn, cp := nw.Listen(), nw.Listen()
		n := startNode(t, Config{MaxNeighbours: 1, HelloInterval: 50 * time.Millisecond, NeighbourTimeout: 2 * time.Minute}, cn, cp.LocalAddr())
		rawNeighbour(t, nw, n, 0)
		if got := len(n.Neighbours()); got != 1 {
			t.Fatalf("%d neighbours, want 1", got)
		}
		p := forgedNode(t, cp, cn.LocalAddr())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.WaitReachable(ctx, p.SID()); err != nil {
			t.Fatalf("configured peer not admitted beyond the cap: %v", err)
		}
	})
}

// TestUnansweredHelloAmplification: one hello from an address that never
// answers gets back at most 3x its bytes, over 10 s.
func TestUnansweredHelloAmplification(t *testing.T) {
	wait := 10 * time.Second
	if testing.Short() {
		wait = 2 * time.Second
	}
	id := forgedID(t)
	hello := wire.AppendHello(nil, wire.Hello{SID: id.SID(), Seq: 1, MTU: 32768}, id)
	count := func(t *testing.T, c net.PacketConn, to net.Addr) {
		if _, err := c.WriteTo(hello, to); err != nil {
			t.Fatal(err)
		}
		end := time.Now().Add(wait)
		c.SetReadDeadline(end)
		buf := make([]byte, 65536)
		got, frames := 0, 0
		for {
			k, _, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			got += k
			frames++
		}
		t.Logf("sent %d bytes, got %d bytes in %d frames over %v", len(hello), got, frames, wait)
		if got > 3*len(hello) {
			t.Fatalf("%d bytes back for a %d-byte hello (%.1fx)", got, len(hello), float64(got)/float64(len(hello)))
		}
		if frames != 1 {
			t.Fatalf("%d frames back, want 1 COOKIE", frames)
		}
	}
	t.Run("memnet", func(t *testing.T) {
		t.Parallel()
		nw := forgedNet(t)
		cn := nw.Listen()
		startNode(t, Config{HelloInterval: 100 * time.Millisecond}, cn)
		c := nw.Listen()
		defer c.Close()
		count(t, c, cn.LocalAddr())
	})
	t.Run("udp", func(t *testing.T) {
		t.Parallel()
		cn, err := ListenUDP("127.0.0.1:0", false)
		if err != nil {
			t.Fatal(err)
		}
		n := startNode(t, Config{HelloInterval: 100 * time.Millisecond}, cn)
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		count(t, c, n.LocalAddr())
	})
}

// inject hands b to n's packet handler as if it came from from (a forged
// source address).
func inject(n *Node, b []byte, from net.Addr) {
	bp := n.bufs.get(len(b))
	copy(*bp, b)
	n.handle(bp, from)
}

// startNode starts a node with cfg on c (a fresh identity unless cfg has
// one), with peers, closed at the end of the test.
func startNode(t *testing.T, cfg Config, c net.PacketConn, peers ...net.Addr) *Node {
	t.Helper()
	return StartNode(t, cfg, c, peers)
}

// reachBoth waits until a and b reach each other.
func reachBoth(t *testing.T, a, b *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.WaitReachable(ctx, b.SID()); err != nil {
		t.Fatal(err)
	}
	if err := b.WaitReachable(ctx, a.SID()); err != nil {
		t.Fatal(err)
	}
}

// bindPair binds port on a and on b, closed at the end of the test.
func bindPair(t *testing.T, a, b *Node, port uint16) (pa, pb *PacketConn) {
	t.Helper()
	pa, err := a.Bind(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close() })
	pb, err = b.Bind(port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pb.Close() })
	return pa, pb
}

// memPair starts two nodes on nw, b with a as its peer, and waits until
// each reaches the other.
func memPair(t *testing.T, nw *memnet.Network, cfg Config) (a, b *Node, ca, cb *memnet.Conn) {
	t.Helper()
	ca, cb = nw.Listen(), nw.Listen()
	a = startNode(t, cfg, ca)
	b = startNode(t, cfg, cb, ca.LocalAddr())
	reachBoth(t, a, b)
	return a, b, ca, cb
}

// exchange sends a datagram each way between a and b and checks both
// arrive.
func exchange(t *testing.T, a, b *Node, port uint16, what string) {
	t.Helper()
	pa, pb := bindPair(t, a, b, port)
	for _, dir := range []struct{ from, to *PacketConn }{{pa, pb}, {pb, pa}} {
		if _, err := dir.from.WriteTo([]byte(what), dir.to.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		dir.to.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 100)
		k, from, err := dir.to.ReadFrom(buf)
		if err != nil || string(buf[:k]) != what || from != dir.from.LocalAddr() {
			t.Fatalf("%s: got %q from %v, %v", what, buf[:k], from, err)
		}
	}
}

func TestForgedSourceHelloKeepsNeighbour(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		a, b, _, cb := memPair(t, nw, Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: time.Second})
		exchange(t, a, b, 7, "before")
		addrOfB := func() string {
			for _, nb := range a.Neighbours() {
				if nb.SID == b.SID() {
					return nb.Addr.String()
				}
			}
			return ""
		}
		want := cb.LocalAddr().String()
		if got := addrOfB(); got != want {
			t.Fatalf("B at %q, want %q", got, want)
		}
		ids := freshIDs(t, 2, 2)
		s0 := a.Stats()
		// A fresh identity's hello with B's source address: without an echo
		// it gets a COOKIE (which goes to B, who drops it).
		inject(a, wire.AppendHello(nil, wire.Hello{SID: ids[0].SID(), Seq: 1, MTU: 1500}, ids[0]), cb.LocalAddr())
		// Even one that echoes A's valid cookie for B's address (an attacker
		// on the path) does not displace B.
		echo := a.cookies.make(cb.LocalAddr())
		inject(a, wire.AppendHello(nil, wire.Hello{SID: ids[1].SID(), To: a.SID(), Seq: 1, MTU: 1500, Echo: echo}, ids[1]), cb.LocalAddr())
		settle(t, a)
		s1 := a.Stats()
		if s1.CookiesSent-s0.CookiesSent != 1 || s1.AddrTaken-s0.AddrTaken != 1 {
			t.Errorf("CookiesSent +%d, AddrTaken +%d; want +1, +1", s1.CookiesSent-s0.CookiesSent, s1.AddrTaken-s0.AddrTaken)
		}
		if got := addrOfB(); got != want {
			t.Fatalf("after the forged hellos B is at %q, want %q", got, want)
		}
		if nbs := a.Neighbours(); len(nbs) != 1 {
			t.Fatalf("neighbours after the forged hellos: %+v", nbs)
		}
		// Several hello intervals later the link still carries traffic, and
		// B's frames are still B's.
		time.Sleep(300 * time.Millisecond)
		exchange(t, a, b, 8, "after")
		if got := addrOfB(); got != want {
			t.Fatalf("B moved to %q", got)
		}
	})
}

// originEntries returns k route entries for fresh origins, each signed by
// its origin, one hop beyond the sender.
func originEntries(t testing.TB, k int) []wire.RouteEntry {
	ids := freshIDs(t, k, 3)
	out := make([]wire.RouteEntry, k)
	for i, id := range ids {
		e := wire.RouteEntry{Origin: id.SID(), Seq: 1, Metric: 256, Hops: 1, MTU: 1500, HasSig: true}
		copy(e.Sig[:], id.Sign(wire.SignedOrigin(id.SID(), 1)))
		out[i] = e
	}
	return out
}

func TestFreshOriginsWithinCaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn := nw.Listen()
		n := forgedNode(t, cn)
		x, xid, _ := rawNeighbour(t, nw, n, 7)
		entries := originEntries(t, 15000)
		var seq uint64
		const per = 10 // entries with signatures in one 1232-byte frame
		for i := 0; i < len(entries); i += per {
			x.announce(n.SID(), xid.SID(), &seq, &wire.RouteMsg{Entries: entries[i:min(i+per, len(entries))]})
			if seq%256 == 0 {
				x.barrier() // let the node keep up, so that the caps are what is tested
			}
		}
		x.barrier()
		cfg := n.cfg
		n.router.mu.Lock()
		routes, ads := len(n.router.routes), 0
		for _, a := range n.router.adverts {
			ads += len(a)
		}
		n.router.mu.Unlock()
		s := n.Stats()
		t.Logf("routes %d, adverts %d; stats %+v", routes, ads, s)
		if routes > cfg.MaxRoutesPerNeighbour || routes > cfg.MaxRoutes || ads > cfg.MaxRoutesPerNeighbour {
			t.Fatalf("%d routes, %d entries from one neighbour: over the caps (%d total, %d per neighbour)", routes, ads, cfg.MaxRoutes, cfg.MaxRoutesPerNeighbour)
		}
		if routes < 1000 {
			t.Errorf("only %d routes: the caps, not something else, should stop the origins", routes)
		}
		dropped := s.RouteCap + s.NewOriginLimited
		if dropped < uint64(len(entries)-cfg.MaxRoutesPerNeighbour)/2 {
			t.Errorf("RouteCap %d + NewOriginLimited %d: the dropped origins are not counted", s.RouteCap, s.NewOriginLimited)
		}
		if got := len(n.Routes()); got > cfg.MaxRoutes+1 {
			t.Errorf("Routes() lists %d", got)
		}
	})
}

// TestTotalRouteCap: origins from several neighbours stop at MaxRoutes.
func TestTotalRouteCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn := nw.Listen()
		n := startNode(t, Config{HelloInterval: time.Minute, NeighbourTimeout: 2 * time.Minute, MaxRoutes: 100, MaxRoutesPerNeighbour: 80}, cn)
		entries := originEntries(t, 200)
		for k := range 2 {
			x, xid, _ := rawNeighbour(t, nw, n, 7)
			var seq uint64
			mine := entries[k*100 : k*100+100]
			for i := 0; i < len(mine); i += 10 {
				x.announce(n.SID(), xid.SID(), &seq, &wire.RouteMsg{Entries: mine[i : i+10]})
			}
			x.barrier()
		}
		n.router.mu.Lock()
		routes := len(n.router.routes)
		n.router.mu.Unlock()
		if routes != 100 {
			t.Fatalf("%d routes, want the cap 100", routes)
		}
		if got := n.Stats().RouteCap; got != 100 {
			t.Fatalf("RouteCap %d, want 100 (20 over the per-neighbour cap, 80 over the total)", got)
		}
	})
}

// TestRelayUnderSignatureFlood: a neighbour floods a relay with hellos and
// routing entries that carry bad signatures; datagrams between two other
// nodes through the relay keep arriving.
// It runs on the wall clock: on virtual time the CPU the checks cost would
// not show, and a relay starved by them would pass.
func TestRelayUnderSignatureFlood(t *testing.T) {
	nw := forgedNet(t)
	cn, ca, cb := nw.Listen(), nw.Listen(), nw.Listen()
	cfg := Config{HelloInterval: 100 * time.Millisecond, NeighbourTimeout: 2 * time.Second}
	n := startNode(t, cfg, cn)
	a := startNode(t, cfg, ca, cn.LocalAddr())
	b := startNode(t, cfg, cb, cn.LocalAddr())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReachable(ctx, b.SID()); err != nil {
		t.Fatal(err)
	}
	x, xid, echo := rawNeighbour(t, nw, n, 7)

	// The flood: bad-signature hellos that echo the cookie, and a routing
	// message of 10 bad entries, replayed as new link frames.
	bad := originEntries(t, 10)
	for i := range bad {
		bad[i].Sig[0] ^= 1
	}
	hello := wire.AppendHello(nil, wire.Hello{SID: xid.SID(), Epoch: 7, Seq: 1 << 62, MTU: 1500, Echo: echo}, xid)
	hello[len(hello)-1] ^= 1
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seq := uint64(100)
		m := wire.RouteMsg{Entries: bad}
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 10 { // 20,000 frames a second
				seq++
				h := wire.DataHeader{Epoch: 7, Seq: seq, Base: seq, TTL: 1, Dst: n.SID(), Src: xid.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}
				if _, err := x.c.WriteTo(x.link(wire.AppendRouteMsg(wire.AppendData(nil, &h), &m)), cn.LocalAddr()); err != nil {
					t.Errorf("flood: %v", err)
					return
				}
				x.c.WriteTo(hello, cn.LocalAddr())
			}
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()

	pa, pb := bindPair(t, a, b, 9)
	const count = 200
	got := make(chan int, count)
	go func() {
		buf := make([]byte, 100)
		for {
			pb.SetReadDeadline(time.Now().Add(10 * time.Second))
			k, _, err := pb.ReadFrom(buf)
			if err != nil {
				close(got)
				return
			}
			got <- int(binary.BigEndian.Uint32(buf[:k]))
		}
	}()
	start := time.Now()
	for i := range count {
		var p [4]byte
		binary.BigEndian.PutUint32(p[:], uint32(i))
		if _, err := pa.WriteTo(p[:], pb.LocalAddr()); err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	seen := map[int]bool{}
	deadline := time.After(5 * time.Second)
	for len(seen) < count {
		select {
		case i, ok := <-got:
			if !ok {
				t.Fatalf("%d of %d datagrams through the relay", len(seen), count)
			}
			seen[i] = true
		case <-deadline:
			t.Fatalf("%d of %d datagrams through the relay within 5 s of the last", len(seen), count)
		}
	}
	s := n.Stats()
	t.Logf("%d datagrams in %v; relay stats %+v", count, time.Since(start), s)
	if s.BadSigCached+s.VerifyLimited+s.VerifyQueueDrops < 1000 {
		t.Errorf("the flood did not reach the checks: BadSigCached %d, VerifyLimited %d, VerifyQueueDrops %d", s.BadSigCached, s.VerifyLimited, s.VerifyQueueDrops)
	}
	// Frames already queued when the first check failed are checked too;
	// after that the cache answers.
	if s.BadRoute == 0 || s.BadHello == 0 || s.BadRoute+s.BadHello > 500 {
		t.Errorf("bad signatures checked: BadRoute %d, BadHello %d; want a few, the rest from the cache", s.BadRoute, s.BadHello)
	}
}

func TestTrustClosesMesh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn, ct, cu, cf := nw.Listen(), nw.Listen(), nw.Listen(), nw.Listen()
		cfg := Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: time.Second}
		// N trusts T only. T and U both have N as a configured peer; F, far
		// away, is T's neighbour.
		tid := forgedID(t)
		closed := cfg
		closed.Trust = []identity.SID{tid.SID()}
		n := startNode(t, closed, cn)
		cfg.Identity = tid
		tr := startNode(t, cfg, ct, cn.LocalAddr())
		cfg.Identity = nil
		u := startNode(t, cfg, cu, cn.LocalAddr())
		f := startNode(t, cfg, cf, ct.LocalAddr())
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.WaitReachable(ctx, tr.SID()); err != nil {
			t.Fatal(err)
		}
		// Nodes further away are reached through the trusted neighbour.
		reachBoth(t, n, f) // through the trusted neighbour
		exchange(t, n, f, 5, "through T")
		time.Sleep(500 * time.Millisecond) // 10 hello intervals of U
		for _, nb := range n.Neighbours() {
			if nb.SID == u.SID() {
				t.Fatal("the untrusted node became a neighbour")
			}
		}
		if got := len(u.Neighbours()); got != 0 {
			t.Errorf("the untrusted node has %d neighbours: it got more than cookies", got)
		}
		if n.Stats().Untrusted == 0 {
			t.Error("hellos of the untrusted node not counted")
		}
		if _, ok := func() (Route, bool) {
			for _, r := range n.Routes() {
				if r.NextHop == u.SID() {
					return r, true
				}
			}
			return Route{}, false
		}(); ok {
			t.Error("a route leads through the untrusted node")
		}
	})
}

// TestBroadcastAdmission: two nodes that know nothing of each other but a
// LAN broadcast address become neighbours through the COOKIE exchange.
func TestBroadcastAdmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		ca, cb := nw.Listen(), nw.Listen()
		cfg := Config{Broadcast: []net.Addr{nw.Broadcast()}, HelloInterval: 50 * time.Millisecond, NeighbourTimeout: time.Second}
		a, b := startNode(t, cfg, ca), startNode(t, cfg, cb)
		reachBoth(t, a, b)
		exchange(t, a, b, 6, "over the LAN")
	})
}

// TestCookieLifetime: a cookie is valid for its address only, under the
// current and the previous secret, and not after two rotations.
func TestCookieLifetime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		j := newCookieJar()
		a, b := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}
		c := j.make(a)
		if !j.valid(a, c) || j.valid(b, c) || j.valid(a, wire.Cookie{}) {
			t.Fatal("a cookie must be valid for its own address only")
		}
		now := time.Now()
		j.maybeRotate(now.Add(cookieRotate / 2))
		if !j.valid(a, c) || j.make(a) != c {
			t.Fatal("rotated before cookieRotate")
		}
		j.maybeRotate(now.Add(cookieRotate))
		if !j.valid(a, c) || j.make(a) == c {
			t.Fatal("after one rotation the old cookie must still be valid, and new ones differ")
		}
		j.maybeRotate(now.Add(2 * cookieRotate))
		if j.valid(a, c) {
			t.Fatal("a cookie two secrets old is still valid")
		}
	})
}

// TestStrangersCannotLockOutPeers: when strangers have used up the rate
// of hello checks for non-neighbours (here: no tokens at all), a
// configured peer is still admitted, and a stranger is not.
func TestStrangersCannotLockOutPeers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := forgedNet(t)
		cn, cp := nw.Listen(), nw.Listen()
		n := startNode(t, Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: 2 * time.Minute}, cn, cp.LocalAddr())
		n.admitBucket = newBucket(0, 0) // before any hello arrives: the read loop reads it after
		rawNeighbour(t, nw, n, 0)
		if len(n.Neighbours()) != 0 || n.Stats().VerifyLimited != 1 {
			t.Fatalf("a stranger was checked without tokens: %+v", n.Stats())
		}
		p := startNode(t, Config{HelloInterval: 50 * time.Millisecond, NeighbourTimeout: 2 * time.Minute}, cp, cn.LocalAddr())
		reachBoth(t, n, p)
	})
}
