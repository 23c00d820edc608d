package seal

import (
	"fmt"
	"testing"
)

var benchSizes = []int{1200, 16 << 10}

func BenchmarkSeal(b *testing.B) {
	p := handshake(b, newID(b), newID(b), 5, 6)
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			pt := make([]byte, size)
			buf := make([]byte, 0, size+Overhead)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.si.Seal(buf, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	p := handshake(b, newID(b), newID(b), 5, 6)
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			// A batch of distinct packets, replayed after resetting the
			// window (a cost of 1 KiB of zeroing per batch).
			const batch = 64
			pkts := make([][]byte, batch)
			for i := range pkts {
				pkts[i] = mustSeal(b, p.si, make([]byte, size))
			}
			buf := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == batch {
					i = 0
					p.sr.mu.Lock()
					p.sr.replay = replayWindow{}
					p.sr.mu.Unlock()
				}
				if _, err := p.sr.Open(buf, pkts[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkSealOpen is one packet's whole trip through the record layer.
func BenchmarkSealOpen(b *testing.B) {
	p := handshake(b, newID(b), newID(b), 5, 6)
	for _, size := range benchSizes {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			pt := make([]byte, size)
			sbuf := make([]byte, 0, size+Overhead)
			obuf := make([]byte, 0, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				pkt, err := p.si.Seal(sbuf, pt)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := p.sr.Open(obuf, pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake is a complete INIT, RESPONSE and first DATA, both
// sides' work on one core.
func BenchmarkHandshake(b *testing.B) {
	a, r := newID(b), newID(b)
	b.ReportAllocs()
	for b.Loop() {
		ini, err := NewInitiator(a, r.SID(), 1, nil, t0)
		if err != nil {
			b.Fatal(err)
		}
		in, err := ParseInit(ini.Message(), r, t0)
		if err != nil {
			b.Fatal(err)
		}
		sr, resp, err := in.Accept(2, nil)
		if err != nil {
			b.Fatal(err)
		}
		si, err := ini.Finish(resp)
		if err != nil {
			b.Fatal(err)
		}
		pkt, _ := si.Seal(nil, nil)
		if _, err := sr.Open(nil, pkt); err != nil {
			b.Fatal(err)
		}
	}
}
