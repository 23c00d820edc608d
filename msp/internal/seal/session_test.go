package seal

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

func TestPacketTypeAndReceiverIndex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pkt     []byte
		typ     byte
		typeErr bool
		idx     uint32
		idxErr  bool
	}{
		{"empty", nil, 0, true, 0, true},
		{"unknown type", []byte{0x7f, 1, 2, 3, 4}, 0, true, 0, true},
		{"init", []byte{TypeInit, 1, 2, 3, 4}, TypeInit, false, 0, true},
		{"response", []byte{TypeResponse, 1, 2, 3, 4}, TypeResponse, false, 0x01020304, false},
		{"refuse", []byte{TypeRefuse, 0xde, 0xad, 0xbe, 0xef, 9}, TypeRefuse, false, 0xdeadbeef, false},
		{"data", []byte{TypeData, 0, 0, 0, 1}, TypeData, false, 1, false},
		{"short data", []byte{TypeData, 0, 0, 1}, TypeData, false, 0, true},
	} {
		typ, err := PacketType(tc.pkt)
		if (err != nil) != tc.typeErr || typ != tc.typ || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("%s: PacketType = %d, %v", tc.name, typ, err)
		}
		idx, err := ReceiverIndex(tc.pkt)
		if (err != nil) != tc.idxErr || idx != tc.idx || (err != nil && !errors.Is(err, ErrMalformed)) {
			t.Errorf("%s: ReceiverIndex = %x, %v", tc.name, idx, err)
		}
	}
}

func TestDataEveryBitFlipRejected(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	good := mustSeal(t, p.si, []byte("sixteen byte msg and some more"))
	for i := range len(good) * 8 {
		bad := append([]byte(nil), good...)
		bad[i/8] ^= 1 << (i % 8)
		if got, err := p.sr.Open(nil, bad); err == nil {
			t.Fatalf("DATA with bit %d flipped accepted: %q", i, got)
		}
	}
	// Forgeries did not move the window or consume the counter.
	if _, err := p.sr.Open(nil, good); err != nil {
		t.Fatalf("genuine packet after forgeries: %v", err)
	}
	for n := range Overhead {
		if _, err := p.sr.Open(nil, good[:n]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%d-byte packet: %v, want ErrMalformed", n, err)
		}
	}
}

func TestDirectionalKeys(t *testing.T) {
	// Equal indices on both ends, so the index check cannot hide a key
	// problem: a packet must still not open on the side that sealed it.
	p := handshake(t, newID(t), newID(t), 9, 9)
	for _, s := range []*Session{p.si, p.sr} {
		pkt := mustSeal(t, s, []byte("reflected"))
		if _, err := s.Open(nil, pkt); !errors.Is(err, ErrAuth) {
			t.Fatalf("%v session opened its own packet: %v", s.IsInitiator(), err)
		}
	}
	// And in the other direction it works.
	if _, err := p.sr.Open(nil, mustSeal(t, p.si, nil)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.si.Open(nil, mustSeal(t, p.sr, nil)); err != nil {
		t.Fatal(err)
	}
}

func TestReplayRejected(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	pkt := mustSeal(t, p.si, []byte("once"))
	if _, err := p.sr.Open(nil, pkt); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := p.sr.Open(nil, pkt); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay: %v, want ErrReplay", err)
		}
	}
}

func TestReorderWithinWindow(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	const n = ReplayWindow + 200
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = mustSeal(t, p.si, fmt.Appendf(nil, "packet %d", i))
	}
	// The newest first, then the rest newest to oldest: a packet is
	// accepted iff it is at most ReplayWindow below the newest.
	newest := uint64(n - 1)
	for i := n - 1; i >= 0; i-- {
		got, err := p.sr.Open(nil, pkts[i])
		inWindow := newest-uint64(i) <= ReplayWindow
		switch {
		case inWindow && (err != nil || string(got) != fmt.Sprintf("packet %d", i)):
			t.Fatalf("packet %d (in window): %q, %v", i, got, err)
		case !inWindow && !errors.Is(err, ErrReplay):
			t.Fatalf("packet %d (%d below the newest): %v, want ErrReplay", i, newest-uint64(i), err)
		}
	}
	// Everything again: all rejected.
	for i := range pkts {
		if _, err := p.sr.Open(nil, pkts[i]); !errors.Is(err, ErrReplay) {
			t.Fatalf("second delivery of %d: %v", i, err)
		}
	}
}

func TestReorderRandomAcceptedOnce(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	p := handshake(t, newID(t), newID(t), 5, 6)
	const n = 3 * ReplayWindow
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = mustSeal(t, p.si, nil)
	}
	// Shuffle within blocks of 4096 (less than the window) and deliver
	// every packet twice; each must be accepted exactly once.
	order := make([]int, 0, 2*n)
	for start := 0; start < n; start += 4096 {
		end := min(start+4096, n)
		blk := make([]int, 0, 2*(end-start))
		for i := start; i < end; i++ {
			blk = append(blk, i, i)
		}
		rng.Shuffle(len(blk), func(i, j int) { blk[i], blk[j] = blk[j], blk[i] })
		order = append(order, blk...)
	}
	accepted := make([]int, n)
	for _, i := range order {
		if _, err := p.sr.Open(nil, pkts[i]); err == nil {
			accepted[i]++
		} else if !errors.Is(err, ErrReplay) {
			t.Fatalf("packet %d: %v", i, err)
		}
	}
	for i, c := range accepted {
		if c != 1 {
			t.Fatalf("packet %d accepted %d times", i, c)
		}
	}
}

func TestReplayWindowUnit(t *testing.T) {
	const W = ReplayWindow
	type step struct {
		n  uint64
		ok bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"first is zero", []step{{0, true}, {0, false}, {1, true}, {1, false}}},
		{"first is large", []step{{1000, true}, {0, true}, {999, true}, {1000, false}, {0, false}}},
		{"edge of window", []step{{W, true}, {0, true}, {W + 1, true}, {1, true}, {0, false}}},
		{"just outside", []step{{W + 1, true}, {0, false}, {1, true}}},
		{"big jump clears", []step{{5, true}, {5 + 10*W, true}, {5, false}, {5 + 9*W - 1, false}, {5 + 9*W, true}, {5 + 10*W - 1, true}}},
		{"jump of one ring", []step{{64, true}, {64 + ringWords*wordBits, true}, {64 + ringWords*wordBits - 1, true}, {64, false}}},
		{"limit", []step{{MaxPackets - 1, true}, {MaxPackets, false}, {MaxPackets - 2, true}, {^uint64(0), false}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var w replayWindow
			for i, s := range tc.steps {
				if c := w.check(s.n); c != s.ok {
					t.Fatalf("step %d: check(%d) = %v, want %v", i, s.n, c, s.ok)
				}
				if u := w.update(s.n); u != s.ok {
					t.Fatalf("step %d: update(%d) = %v, want %v", i, s.n, u, s.ok)
				}
			}
		})
	}
	// Sliding forward one by one never forgets a counter inside the window.
	var w replayWindow
	for n := range uint64(5 * W) {
		if !w.update(n) {
			t.Fatalf("update(%d) refused", n)
		}
		if n >= W && w.check(n-W) {
			t.Fatalf("after %d, counter %d (inside the window) looks new", n, n-W)
		}
	}
}

func TestSendCounterExhausted(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	p.si.sendCounter.Store(MaxPackets - 1)
	last := mustSeal(t, p.si, []byte("last"))
	if got := be.Uint64(last[5:]); got != MaxPackets-1 {
		t.Fatalf("last counter %d", got)
	}
	if _, err := p.sr.Open(nil, last); err != nil {
		t.Fatalf("last packet: %v", err)
	}
	for range 2 {
		out, err := p.si.Seal([]byte("dst"), []byte("more"))
		if !errors.Is(err, ErrExhausted) || string(out) != "dst" {
			t.Fatalf("Seal past the limit: %q, %v", out, err)
		}
	}
	// A packet beyond the limit, correctly sealed under the right key (only
	// possible by reaching into the session), is still refused.
	p.si.sendCounter.Store(MaxPackets)
	hdr := be.AppendUint64(be.AppendUint32([]byte{TypeData}, p.si.remote), MaxPackets)
	pkt := p.si.send.Seal(hdr, hdr[1:], []byte("x"), hdr)
	if _, err := p.sr.Open(nil, pkt); !errors.Is(err, ErrReplay) {
		t.Fatalf("counter at MaxPackets: %v, want ErrReplay", err)
	}
}

func TestSealOpenInPlaceAndNoAllocs(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	msg := bytes.Repeat([]byte("abcdefgh"), 150)
	buf := make([]byte, HeaderLen+len(msg), len(msg)+Overhead)
	copy(buf[HeaderLen:], msg)
	pkt, err := p.si.Seal(buf[:0], buf[HeaderLen:])
	if err != nil || len(pkt) != len(msg)+Overhead || &pkt[0] != &buf[0] {
		t.Fatalf("in-place Seal: %d bytes, %v", len(pkt), err)
	}
	got, err := p.sr.Open(pkt[HeaderLen:HeaderLen], pkt)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("in-place Open: %v", err)
	}
	// Into preallocated buffers: no allocation per packet.
	sealBuf := make([]byte, 0, 2048)
	openBuf := make([]byte, 0, 2048)
	allocs := testing.AllocsPerRun(100, func() {
		pkt, err := p.si.Seal(sealBuf, msg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.sr.Open(openBuf, pkt); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Seal+Open allocate %v times per packet", allocs)
	}
}

func TestConcurrentSealOpen(t *testing.T) {
	p := handshake(t, newID(t), newID(t), 5, 6)
	const workers, per = 4, 500
	var mu sync.Mutex
	var pkts [][]byte
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				pkt := mustSeal(t, p.si, fmt.Appendf(nil, "%d/%d", w, i))
				mu.Lock()
				pkts = append(pkts, pkt)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	seen := map[uint64]bool{}
	for _, pkt := range pkts {
		c := be.Uint64(pkt[5:])
		if seen[c] {
			t.Fatalf("counter %d used twice", c)
		}
		seen[c] = true
	}
	// Every packet delivered to two concurrent Opens: exactly one wins.
	var wins [workers * per]atomic.Int32
	for range 2 {
		for w := range workers {
			wg.Go(func() {
				for i := w; i < len(pkts); i += workers {
					_, err := p.sr.Open(nil, pkts[i])
					if err == nil {
						wins[i].Add(1)
					} else if !errors.Is(err, ErrReplay) {
						t.Errorf("packet %d: %v", i, err)
					}
				}
			})
		}
	}
	wg.Wait()
	for i := range wins {
		if n := wins[i].Load(); n != 1 {
			t.Fatalf("packet %d accepted %d times", i, n)
		}
	}
}
