package arq

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

func samplePackets() []Packet {
	var ack Packet
	ack.Number = 77
	ack.HasAck = true
	ack.AckDelay = 1234
	ack.AckRanges[0] = AckRange{Smallest: 70, Largest: 76}
	ack.AckRanges[1] = AckRange{Smallest: 60, Largest: 65}
	ack.AckRanges[2] = AckRange{Smallest: 0, Largest: 0}
	ack.NumAckRanges = 3
	ack.HasMaxData, ack.MaxData = true, 8<<20

	full := ack
	full.Number = 1 << 40
	full.Ping = true
	full.HasClose, full.CloseCode = true, CloseAbort
	full.HasStream, full.Offset, full.Data = true, 1<<33, []byte("hello, world")

	return []Packet{
		{Number: 0, Ping: true},
		{Number: 1, HasStream: true, Offset: 0, Data: []byte{}},
		{Number: 2, HasStream: true, Offset: 5, Data: bytes.Repeat([]byte{7}, 1000)},
		{Number: 3, HasClose: true, CloseCode: CloseGraceful},
		{Number: maxVarint, HasMaxData: true, MaxData: maxVarint},
		ack,
		full,
	}
}

func TestPacketRoundTrip(t *testing.T) {
	for i, p := range samplePackets() {
		b := p.Append(nil)
		var q Packet
		if err := q.Unmarshal(b); err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if p.HasStream && len(p.Data) == 0 {
			p.Data = q.Data // empty vs nil
		}
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("packet %d:\n got %+v\nwant %+v", i, q, p)
		}
	}
}

// TestAppendAckSpans checks the sender's ACK encoder against the decoder,
// with all spans and with a subset.
func TestAppendAckSpans(t *testing.T) {
	s := []span{{0, 3}, {5, 6}, {10, 20}, {22, 23}, {100, 1000}}
	cases := [][]int{{4, 3, 2, 1, 0}, {4}, {4, 2, 0}, {4, 1}}
	for _, idx := range cases {
		b := appendHeader(nil, 9)
		b = appendAckSpans(b, s, idx, 55)
		var p Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatalf("%v: %v", idx, err)
		}
		if p.NumAckRanges != len(idx) || p.AckDelay != 55 {
			t.Fatalf("%v: %+v", idx, p)
		}
		for k, i := range idx {
			want := AckRange{Smallest: s[i].lo, Largest: s[i].hi - 1}
			if p.AckRanges[k] != want {
				t.Fatalf("%v: range %d = %+v, want %+v", idx, k, p.AckRanges[k], want)
			}
		}
	}
}

func TestStreamFit(t *testing.T) {
	for _, space := range []int{0, 1, 3, 4, 5, 100, 127, 128, 129, 130, 1200, 16383, 16384, 16385, 16386, 65536, 1 << 20} {
		for _, off := range []uint64{0, 127, 1 << 20, 1 << 50} {
			for _, limit := range []int{0, 1, 50, space, space + 10} {
				n := streamFit(off, space, limit)
				if n < 0 || n > limit {
					t.Fatalf("streamFit(%d, %d, %d) = %d", off, space, limit, n)
				}
				if n > 0 && len(appendStreamHeader(nil, off, n))+n > space {
					t.Fatalf("streamFit(%d, %d, %d) = %d overflows", off, space, limit, n)
				}
				// Maximal: one more byte would not fit (or exceed limit).
				if n < limit && len(appendStreamHeader(nil, off, n+1))+n+1 <= space {
					t.Fatalf("streamFit(%d, %d, %d) = %d, %d fits", off, space, limit, n, n+1)
				}
			}
		}
	}
}

// TestPacketsFillMaxPacket: with lots to send, data packets use the whole
// MaxPacket (one STREAM frame filling the packet).
func TestPacketsFillMaxPacket(t *testing.T) {
	for _, mp := range []int{MinPacket, 1200, 16 << 10, 64 << 10} {
		var sizes []int // read after Close joined the goroutine
		c, err := New(Config{MaxPacket: mp, Output: func(pkt []byte) error {
			sizes = append(sizes, len(pkt))
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		c.Write(make([]byte, InitialWindow)) // within the initial window and cwnd
		deadline := time.Now().Add(5 * time.Second)
		for c.Stats().BytesSent < uint64(min(InitialWindow, 9*mp)) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		c.Close()
		full := 0
		for _, n := range sizes {
			if n > mp {
				t.Fatalf("MaxPacket %d: packet of %d", mp, n)
			}
			if n == mp {
				full++
			}
		}
		if full < 1 || (mp < InitialWindow/2 && full < 2) {
			t.Fatalf("MaxPacket %d: sizes %v", mp, sizes)
		}
	}
}

func TestSpanSetModel(t *testing.T) {
	r := rand.New(rand.NewPCG(*seedFlag, 3))
	const N = 200
	for round := range 200 {
		var s spanSet
		var model [N]bool
		for range 100 {
			lo := uint64(r.IntN(N))
			hi := lo + uint64(r.IntN(20))
			hi = min(hi, N)
			switch r.IntN(4) {
			case 0, 1:
				var added [N]bool
				s.add(lo, hi, func(a, b uint64) {
					for x := a; x < b; x++ {
						if model[x] || added[x] {
							t.Fatalf("round %d: add reported %d as new", round, x)
						}
						added[x] = true
					}
				})
				for x := lo; x < hi; x++ {
					if !model[x] && !added[x] {
						t.Fatalf("round %d: add did not report %d", round, x)
					}
					model[x] = true
				}
			case 2:
				s.remove(lo, hi)
				for x := lo; x < hi; x++ {
					model[x] = false
				}
			case 3:
				s.gaps(lo, hi, func(a, b uint64) {
					for x := a; x < b; x++ {
						if model[x] {
							t.Fatalf("round %d: gap at present %d", round, x)
						}
					}
				})
			}
			// Invariants: sorted, disjoint, non-adjacent, non-empty; matches the model.
			for i, sp := range s.s {
				if sp.lo >= sp.hi || (i > 0 && s.s[i-1].hi >= sp.lo) {
					t.Fatalf("round %d: bad spans %v", round, s.s)
				}
			}
			for x := range uint64(N) {
				if s.contains(x) != model[x] {
					t.Fatalf("round %d: contains(%d) = %v, model %v; %v", round, x, !model[x], model[x], s.s)
				}
			}
		}
		s.trimBelow(N / 2)
		for x := range uint64(N) {
			if want := model[x] && x >= N/2; s.contains(x) != want {
				t.Fatalf("trimBelow: contains(%d) != %v", x, want)
			}
		}
	}
}

func FuzzPacket(f *testing.F) {
	for _, p := range samplePackets() {
		f.Add(p.Append(nil))
	}
	f.Add(appendAckSpans(appendHeader(nil, 3), []span{{0, 3}, {5, 9}}, []int{1, 0}, 7))
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		if err := p.Unmarshal(b); err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		b2 := p.Append(nil)
		var q Packet
		if err := q.Unmarshal(b2); err != nil {
			t.Fatalf("re-encoded packet does not decode: %v", err)
		}
		if !reflect.DeepEqual(p.Data, q.Data) && (len(p.Data) != 0 || len(q.Data) != 0) {
			t.Fatalf("data differs")
		}
		p.Data, q.Data = nil, nil
		if !reflect.DeepEqual(p, q) {
			t.Fatalf("round trip:\n%+v\n%+v", p, q)
		}
		for i := 1; i < p.NumAckRanges; i++ {
			if p.AckRanges[i].Largest+2 > p.AckRanges[i-1].Smallest {
				t.Fatalf("ranges overlap or touch: %+v", p.AckRanges[:p.NumAckRanges])
			}
		}
	})
}

// FuzzInput feeds arbitrary packets to a live Conn (after a valid prefix
// that gives it state to confuse): no panic, and the Conn still works or
// ended for a reason.
func FuzzInput(f *testing.F) {
	for _, p := range samplePackets() {
		f.Add(p.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sent := make(chan struct{})
		n := 0
		c, err := New(Config{RecvWindow: InitialWindow, Output: func([]byte) error {
			if n++; n == 4 {
				close(sent)
			}
			return nil
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(make([]byte, 5000)) // packets 0..3 exist: ACK frames can refer to them
		<-sent
		pre := Packet{Number: 3, HasStream: true, Offset: 10, Data: []byte("out of order")}
		c.Input(pre.Append(nil))
		c.Input(b)
		// Split the input into several packets too.
		for len(b) > 0 {
			n := min(len(b), 1+int(b[0])%32)
			c.Input(b[:n])
			b = b[n:]
		}
		s := c.Stats()
		if s.RecvBuffered > InitialWindow || s.BytesInFlight < 0 {
			t.Fatalf("bad state: %+v", s)
		}
		buf := make([]byte, 100)
		c.SetReadDeadline(time.Now())
		c.Read(buf)
	})
}
