// Replay window: Session.Open asks check before decrypting (cheap drop of
// obvious replays) and update after the AEAD tag verified.

package seal

const (
	ringWords = 128 // power of two
	wordBits  = 64
	// ReplayWindow is how far below the highest accepted counter a DATA
	// packet may be and still be accepted (once).
	ReplayWindow = (ringWords - 1) * wordBits // 8128
)

// replayWindow is the sliding bitmap of RFC 6479 (as in WireGuard): a ring
// of ringWords 64-bit words holds one bit per counter for the ReplayWindow
// counters below last, plus last's own word. The zero value is ready: no
// counter has been seen.
type replayWindow struct {
	last uint64 // highest counter accepted (0 before any)
	ring [ringWords]uint64
}

// check reports whether n could be accepted now, without recording it.
func (w *replayWindow) check(n uint64) bool {
	if n >= MaxPackets {
		return false
	}
	if n > w.last {
		return true
	}
	if w.last-n > ReplayWindow {
		return false
	}
	return w.ring[(n/wordBits)%ringWords]&(1<<(n%wordBits)) == 0
}

// update records n and reports whether it was new and within the window.
func (w *replayWindow) update(n uint64) bool {
	if n >= MaxPackets {
		return false
	}
	if n > w.last {
		cur, next := w.last/wordBits, n/wordBits
		diff := next - cur
		if diff > ringWords {
			diff = ringWords
		}
		for i := cur + 1; i <= cur+diff; i++ {
			w.ring[i%ringWords] = 0
		}
		w.last = n
	} else if w.last-n > ReplayWindow {
		return false
	}
	word, bit := &w.ring[(n/wordBits)%ringWords], uint64(1)<<(n%wordBits)
	if *word&bit != 0 {
		return false
	}
	*word |= bit
	return true
}
