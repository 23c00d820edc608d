package msp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp/internal/seal"
)

// datagramEcho answers every datagram the listener receives with the same
// bytes, in the session it came in, until ctx ends.
func datagramEcho(ctx context.Context, l *Listener) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s, p, err := l.ReceiveDatagram(ctx)
			if err != nil {
				return
			}
			s.SendDatagram(p, 0)
		}
	}()
	return done
}

// sessionOver listens on MDP port of b and dials it from a, over an
// ephemeral port of a given to wrap (nil: as it is) once a reaches b; both
// close when the test ends.
func sessionOver(t *testing.T, ctx context.Context, a, b *mesh.Node, port uint16, cfg Config, wrap func(*mesh.PacketConn) Transport) (*Listener, *Session, *mesh.PacketConn) {
	t.Helper()
	l, err := listenMesh(b, port, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := a.WaitReachable(ctx, b.SID()); err != nil {
		t.Fatal(err)
	}
	pc, err := a.Bind(0)
	if err != nil {
		t.Fatal(err)
	}
	var tr Transport = pc
	if wrap != nil {
		tr = wrap(pc)
	}
	s, err := Dialer{Identity: a.Identity(), Config: cfg}.Dial(ctx, tr, b.SID(), port)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return l, s, pc
}

// datagramPair listens on b and dials it from a, over memnet nodes whose
// link has cfg.
func datagramPair(t *testing.T, ctx context.Context, cfg memnet.LinkConfig) (*Listener, *Session) {
	t.Helper()
	a, b, _ := memNodes(t, cfg)
	l, s, _ := sessionOver(t, ctx, a, b, 5300, Config{}, nil)
	return l, s
}

// TestDatagramEcho: datagrams of every size up to MaxDatagram go to the
// listener and back, each once and unchanged; one byte more is refused
// with ErrDatagramTooLarge and counted.
func TestDatagramEcho(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		l, s := datagramPair(t, ctx, memnet.LinkConfig{Delay: 5 * time.Millisecond})
		echoed := datagramEcho(ctx, l)
		max := s.MaxDatagram()
		if max < 1000 {
			t.Fatalf("MaxDatagram = %d", max)
		}
		sizes := []int{0, 1, 2, 100, 1000, max - 1, max}
		want := map[string]int{}
		for i, n := range sizes {
			p := bytes.Repeat([]byte{byte(i + 1)}, n)
			want[string(p)]++
			if err := s.SendDatagram(p, 0); err != nil {
				t.Fatalf("send %d bytes: %v", n, err)
			}
		}
		if err := s.SendDatagram(make([]byte, max+1), 0); !errors.Is(err, ErrDatagramTooLarge) {
			t.Fatalf("send %d bytes: err %v, want ErrDatagramTooLarge", max+1, err)
		}
		for range sizes {
			p, err := s.ReceiveDatagram(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if want[string(p)] == 0 {
				t.Fatalf("unexpected or duplicated datagram of %d bytes", len(p))
			}
			want[string(p)]--
		}
		st := s.DatagramStats()
		if st.Sent != uint64(len(sizes)) || st.Received != uint64(len(sizes)) || st.TooLarge != 1 {
			t.Fatalf("stats %+v", st)
		}
		cancel()
		<-echoed
	})
}

// TestDatagramBesideStalledStream: a stream whose reader stopped, its
// window full, does not hold datagrams back.
func TestDatagramBesideStalledStream(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, b, _ := memNodes(t, memnet.LinkConfig{Delay: 2 * time.Millisecond})
		l, s, _ := sessionOver(t, ctx, a, b, 5301, Config{StreamWindow: 64 << 10}, nil)
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		// Nobody accepts or reads the stream: the writer fills its window
		// and waits.
		go st.Write(make([]byte, 1<<20))
		time.Sleep(time.Second)
		echoed := datagramEcho(ctx, l)
		for i := range 10 {
			msg := fmt.Appendf(nil, "datagram %d", i)
			if err := s.SendDatagram(msg, 0); err != nil {
				t.Fatal(err)
			}
			got, err := s.ReceiveDatagram(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, msg) {
				t.Fatalf("got %q, want %q", got, msg)
			}
		}
		cancel()
		<-echoed
	})
}

// TestDatagramReplayRejected: a recorded datagram record sent again is
// dropped by the replay window, as stream records are.
func TestDatagramReplayRejected(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		a, b, _ := memNodes(t, memnet.LinkConfig{Delay: time.Millisecond})
		const port = 5302
		var tap *recordingTransport
		l, s, pc := sessionOver(t, ctx, a, b, port, Config{}, func(pc *mesh.PacketConn) Transport {
			tap = &recordingTransport{PacketConn: pc}
			return tap
		})
		time.Sleep(100 * time.Millisecond) // the confirmation and first ACKs
		before := len(tap.recorded())
		// No stream is open: the only record this long is the datagram.
		msg := bytes.Repeat([]byte("once"), 250)
		if err := s.SendDatagram(msg, 0); err != nil {
			t.Fatal(err)
		}
		ls, p, err := l.ReceiveDatagram(ctx)
		if err != nil || !bytes.Equal(p, msg) {
			t.Fatalf("got %d bytes, %v", len(p), err)
		}
		var rec []byte
		for _, r := range tap.recorded()[before:] {
			if len(r) == len(msg)+2+seal.Overhead {
				rec = r
			}
		}
		if rec == nil {
			t.Fatal("datagram record not recorded")
		}
		l.mu.Lock()
		ep := l.eps[0]
		l.mu.Unlock()
		replayed := ep.stats.replayed.Load()
		if _, err := pc.WriteTo(rec, mesh.Addr{SID: b.SID(), Port: port}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
		if got := ep.stats.replayed.Load(); got != replayed+1 {
			t.Fatalf("replayed %d -> %d, want one more", replayed, got)
		}
		short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancelShort()
		if _, p, err := l.ReceiveDatagram(short); err == nil {
			t.Fatalf("replay delivered: %q", p)
		}
		if st := ls.DatagramStats(); st.Received != 1 {
			t.Fatalf("listener's session stats %+v", st)
		}
	})
}

// TestDatagramQueue: the receive queue holds dgramQueueLen datagrams and
// dgramQueueBytes of payload, drops datagrams whose budget ran out while
// they waited, and returns the rest in order.
func TestDatagramQueue(t *testing.T) {
	s := &Session{}
	q := newDgramQueue(dgramQueueLen)
	now := time.Now()
	for i := range dgramQueueLen {
		exp := time.Time{}
		if i%2 == 1 {
			exp = now.Add(-time.Millisecond) // already late
		}
		if !q.push(dgramItem{s: s, p: binary.AppendUvarint(nil, uint64(i)), expire: exp}) {
			t.Fatalf("push %d refused", i)
		}
	}
	if q.push(dgramItem{s: s, p: []byte{1}}) {
		t.Fatal("push beyond dgramQueueLen accepted")
	}
	for i := 0; i < dgramQueueLen; i += 2 {
		it, err := q.pop(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := binary.Uvarint(it.p); v != uint64(i) {
			t.Fatalf("popped %d, want %d", v, i)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.pop(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("pop on empty queue: %v", err)
	}
	if st := s.DatagramStats(); st.Late != dgramQueueLen/2 || st.Received != dgramQueueLen/2 {
		t.Fatalf("stats %+v", st)
	}
	if !q.push(dgramItem{s: s, p: make([]byte, dgramQueueBytes)}) || q.push(dgramItem{s: s, p: []byte{1}}) {
		t.Fatal("byte bound not kept")
	}
	// A shared queue: one session's share is full, another's is not.
	shared, other := newDgramQueue(2), &Session{}
	if !shared.push(dgramItem{s: s}) || !shared.push(dgramItem{s: s}) || shared.push(dgramItem{s: s}) || !shared.push(dgramItem{s: other}) {
		t.Fatal("per-session share not kept")
	}
	if it, _ := shared.pop(context.Background(), nil); it.s != s || !shared.push(dgramItem{s: s}) {
		t.Fatal("a taken datagram does not free its session's share")
	}
	done := make(chan struct{})
	close(done)
	q.take(time.Now())
	if _, err := q.pop(context.Background(), done); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("pop after done: %v", err)
	}
}

// TestDatagramFraming: the framing round-trips; a budget out of range is
// sent as none; garbage is rejected.
func TestDatagramFraming(t *testing.T) {
	for _, tc := range []struct {
		budget, want time.Duration
	}{{0, 0}, {time.Microsecond, time.Microsecond}, {200 * time.Millisecond, 200 * time.Millisecond}, {MaxBudget, MaxBudget}, {MaxBudget + 1, 0}, {-1, 0}} {
		b := appendDatagram(nil, tc.budget, []byte("payload"))
		if len(b) > dgramHeaderMax+len("payload") {
			t.Fatalf("budget %v: header of %d bytes", tc.budget, len(b)-len("payload"))
		}
		got, p, err := parseDatagram(b)
		if err != nil || got != tc.want || string(p) != "payload" {
			t.Fatalf("budget %v: got %v %q %v", tc.budget, got, p, err)
		}
	}
	for _, bad := range [][]byte{nil, {dgramType}, {0x01, 0}, {dgramType, 0x80}, binary.AppendUvarint([]byte{dgramType}, uint64(MaxBudget.Microseconds())+1)} {
		if _, _, err := parseDatagram(bad); err == nil {
			t.Fatalf("% x accepted", bad)
		}
	}
}

func FuzzParseDatagram(f *testing.F) {
	f.Add(appendDatagram(nil, 0, nil))
	f.Add(appendDatagram(nil, 100*time.Millisecond, []byte("hello")))
	f.Add(appendDatagram(nil, MaxBudget, make([]byte, 1400)))
	f.Fuzz(func(t *testing.T, b []byte) {
		budget, p, err := parseDatagram(b)
		if err != nil {
			return
		}
		if budget < 0 || budget > MaxBudget || len(p) > len(b) {
			t.Fatalf("budget %v, %d of %d bytes", budget, len(p), len(b))
		}
		again := appendDatagram(nil, budget, p)
		if b2, p2, err := parseDatagram(again); err != nil || b2 != budget || !bytes.Equal(p2, p) {
			t.Fatalf("re-encoding differs: %v %v", b2, err)
		}
	})
}
