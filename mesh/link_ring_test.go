package mesh

import "testing"

// TestRingGrowsKeepingFrames: the ring of frames in flight starts small,
// doubles when full, never beyond the window, and every frame in flight is
// where entry finds it across each growth, with base moving meanwhile.
func TestRingGrowsKeepingFrames(t *testing.T) {
	l := &link{win: 1024, tx: linkTx{ring: make([]txEntry, minRing)}}
	l.tx.base, l.tx.nextSeq = 1000, 1000 // not a multiple of any ring size
	send := func(k int) {
		for range k {
			if l.tx.nextSeq-l.tx.base >= l.win {
				t.Fatalf("window full at %d frames in flight", l.tx.nextSeq-l.tx.base)
			}
			l.growRingLocked()
			s := l.tx.nextSeq
			l.tx.nextSeq++
			*l.entry(s) = txEntry{tries: int(s)} // tries stands for the frame
		}
	}
	check := func() {
		t.Helper()
		if n := uint64(len(l.tx.ring)); n > l.win || n < l.tx.nextSeq-l.tx.base {
			t.Fatalf("ring of %d for %d frames in flight, window %d", n, l.tx.nextSeq-l.tx.base, l.win)
		}
		for s := l.tx.base; s < l.tx.nextSeq; s++ {
			if got := l.entry(s).tries; got != int(s) {
				t.Fatalf("frame %d: slot holds frame %d (ring %d)", s, got, len(l.tx.ring))
			}
		}
	}
	send(minRing)
	check()
	if len(l.tx.ring) != minRing {
		t.Fatalf("ring grew to %d before it was full", len(l.tx.ring))
	}
	l.tx.base += 10 // acknowledged
	send(100)
	check()
	l.tx.base += 50
	send(int(l.win) - int(l.tx.nextSeq-l.tx.base)) // the whole window
	check()
	if uint64(len(l.tx.ring)) != l.win {
		t.Fatalf("full window in a ring of %d, want %d", len(l.tx.ring), l.win)
	}
}

// TestRoomBoundsFlightAndSpan: a new frame may go while fewer than the
// window are sent and not done, and their span from base is under
// spanFactor windows.
func TestRoomBoundsFlightAndSpan(t *testing.T) {
	l := &link{flight: 64, win: spanFactor * 64, tx: linkTx{ring: make([]txEntry, minRing)}}
	for _, c := range []struct {
		flying, span int
		room         bool
	}{
		{0, 0, true},
		{63, 63, true},
		{64, 64, false},               // the window: all sent, none done
		{10, spanFactor*64 - 1, true}, // base held, the rest done
		{10, spanFactor * 64, false},  // the span
	} {
		l.tx.flying, l.tx.base, l.tx.nextSeq = c.flying, 100, 100+uint64(c.span)
		if got := l.roomLocked(); got != c.room {
			t.Errorf("%d frames flying over a span of %d: room %v, want %v", c.flying, c.span, got, c.room)
		}
	}
}
