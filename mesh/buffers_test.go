package mesh

import (
	"bytes"
	"testing"
)

// TestBufPoolFit checks that a frame small enough for the small class
// leaves its large buffer for a small copy, and that anything else is
// kept as it is.
func TestBufPoolFit(t *testing.T) {
	p := newBufPool()
	frame := bytes.Repeat([]byte{0xa5}, 300)
	bp := p.get(maxDatagram)
	*bp = append((*bp)[:0], frame...)
	got := p.fit(bp)
	if cap(*got) != smallBuf || !bytes.Equal(*got, frame) {
		t.Fatalf("fit of a %d-byte frame: cap %d, equal %v; want cap %d and the same bytes", len(frame), cap(*got), bytes.Equal(*got, frame), smallBuf)
	}
	big := p.get(maxDatagram)
	*big = (*big)[:smallBuf]
	if p.fit(big) != big {
		t.Error("fit copied a frame too large for the small class")
	}
	if p.fit(got) != got {
		t.Error("fit copied a frame already in a small buffer")
	}
}
