package arq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func pseudoRandom(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for k := range 8 {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeAll writes data in chunks of random sizes.
func writeAll(c *Conn, data []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 11))
	for len(data) > 0 {
		n := min(len(data), 1+r.IntN(100<<10))
		if _, err := c.Write(data[:n]); err != nil {
			return err
		}
		data = data[n:]
	}
	return nil
}

// readCheck reads len(want) bytes with reads of random sizes and compares.
func readCheck(c *Conn, want []byte, seed uint64) error {
	r := rand.New(rand.NewPCG(seed, 13))
	buf := make([]byte, 128<<10)
	got := 0
	for got < len(want) {
		n, err := c.Read(buf[:1+r.IntN(len(buf))])
		if n > 0 {
			if got+n > len(want) {
				return fmt.Errorf("read %d bytes past the end", got+n-len(want))
			}
			if !bytes.Equal(buf[:n], want[got:got+n]) {
				return fmt.Errorf("data differs in [%d, %d)", got, got+n)
			}
			got += n
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", got, err)
		}
	}
	return nil
}

// exchange sends n bytes each way at once, checks them, then shuts a down
// and checks that b reads io.EOF.
func exchange(t *testing.T, pr *pair, n int, seed uint64) {
	t.Helper()
	da, db := pseudoRandom(n, seed), pseudoRandom(n, seed+1)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Go(func() { errs <- wrap("a write", writeAll(pr.a, da, seed)) })
	wg.Go(func() { errs <- wrap("b write", writeAll(pr.b, db, seed+1)) })
	wg.Go(func() { errs <- wrap("b read", readCheck(pr.b, da, seed+2)) })
	wg.Go(func() { errs <- wrap("a read", readCheck(pr.a, db, seed+3)) })
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := pr.a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	buf := make([]byte, 10)
	if n, err := pr.b.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("peer read after shutdown: %d, %v; want 0, EOF", n, err)
	}
	if err := pr.b.Err(); err != ErrPeerClosed {
		t.Fatalf("peer Err = %v, want ErrPeerClosed", err)
	}
}

func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

func TestTransfer(t *testing.T) {
	n := 8 << 20
	if testing.Short() {
		n = 1 << 20
	}
	ms := time.Millisecond
	cases := []struct {
		name      string
		path      pathConfig
		maxPacket int
		lossy     bool // retransmissions expected
	}{
		{"clean", pathConfig{}, 1200, false},
		{"clean-16k", pathConfig{}, 16 << 10, false},
		{"delay", pathConfig{Delay: 5 * ms}, 1200, false},
		{"reorder", pathConfig{Delay: 5 * ms, Jitter: 2 * ms}, 1200, false},
		{"loss5", pathConfig{Loss: 0.05, Delay: 5 * ms}, 1200, true},
		{"loss20-dup-reorder", pathConfig{Loss: 0.20, Dup: 0.05, Delay: 5 * ms, Jitter: 1 * ms}, 1200, true},
		{"loss5-16k", pathConfig{Loss: 0.05, Delay: 1 * ms}, 16 << 10, true},
		{"loss10-64k-reorder", pathConfig{Loss: 0.10, Delay: 1 * ms, Jitter: ms / 2}, 64 << 10, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				seed := *seedFlag
				t.Logf("seed %d", seed)
				pa, pb := tc.path, tc.path
				pa.Seed, pb.Seed = seed, seed+100
				cfg := Config{MaxPacket: tc.maxPacket, IdleTimeout: time.Minute}
				pr := newPair(t, cfg, cfg, pa, pb)
				start := time.Now()
				exchange(t, pr, n, seed)
				el := time.Since(start)
				sa, sb := pr.a.Stats(), pr.b.Stats()
				t.Logf("%v virtual, %.1f MB/s each way", el, float64(n)/el.Seconds()/1e6)
				t.Logf("a: %+v", sa)
				t.Logf("b: %+v", sb)
				for _, s := range []Stats{sa, sb} {
					if s.BytesSent < uint64(n) {
						t.Errorf("BytesSent %d < %d", s.BytesSent, n)
					}
					if tc.lossy && (s.BytesRetransmitted == 0 || s.PacketsLost == 0) {
						t.Errorf("lossy path without retransmissions: %+v", s)
					}
					if !tc.lossy && tc.path.Jitter == 0 && s.PacketsLost != 0 {
						t.Errorf("clean path with losses: %+v", s)
					}
					// No storm: spurious retransmissions stay a small share of what was sent.
					if s.SpuriousRetransmits > s.PacketsSent/20+20 {
						t.Errorf("%d spurious retransmissions of %d packets", s.SpuriousRetransmits, s.PacketsSent)
					}
					if s.MalformedReceived != 0 || s.FlowViolations != 0 {
						t.Errorf("malformed/violations: %+v", s)
					}
				}
				if tc.path.Dup > 0 && sa.DuplicatesReceived == 0 {
					t.Errorf("duplicating path, no duplicates counted")
				}
			})
		})
	}
}

// TestThroughputLongPath checks that the congestion controller fills a
// 10 ms-each-way path: on a rate-limited bottleneck with a drop-tail queue,
// and with "masked" loss (10% of packets held back by a hop retransmission,
// one hop round trip and a bit).
func TestThroughputLongPath(t *testing.T) {
	n := 32 << 20
	if testing.Short() {
		n = 8 << 20
	}
	ms := time.Millisecond
	cases := []struct {
		name  string
		path  pathConfig
		min   float64 // MB/s, virtual time (the short run includes more slow start)
		check func(s Stats) bool
	}{
		{"bottleneck-40MBps", pathConfig{Delay: 10 * ms, Rate: 40e6, Queue: 256 << 10}, 28, nil},
		// A deep queue: HyStart ends slow start on rising delay, before any loss.
		{"bottleneck-deep-queue", pathConfig{Delay: 10 * ms, Rate: 40e6, Queue: 4 << 20}, 28,
			func(s Stats) bool { return s.SlowStartExits > 0 && s.PacketsLost < 10 }},
		// Every cut that masked loss causes is undone (but perhaps the last).
		{"masked-loss-10pct", pathConfig{Delay: 10 * ms, Spike: 0.1, SpikeDelay: 22 * ms}, 20,
			func(s Stats) bool { return s.CongestionEvents <= s.CwndUndos+1 && s.Collapses == 0 }},
	}
	if testing.Short() {
		for i := range cases {
			cases[i].min *= 0.7
		}
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				pa, pb := tc.path, tc.path
				pa.Seed, pb.Seed = *seedFlag, *seedFlag+100
				pb.Rate = 0
				start := time.Now()
				pr := transferOver(t, pa, pb, pseudoRandom(n, 3))
				el := time.Since(start)
				mbps := float64(n) / el.Seconds() / 1e6
				s := pr.a.Stats()
				t.Logf("%.1f MB/s (virtual); sender %+v", mbps, s)
				if mbps < tc.min {
					t.Errorf("%.1f MB/s, want >= %.0f", mbps, tc.min)
				}
				if tc.check != nil && !tc.check(s) {
					t.Errorf("unexpected stats")
				}
			})
		})
	}
}

// transferOver moves data from a to b of a new pair over paths pa (a to b)
// and pb, checking it arrives intact, and returns the pair.
func transferOver(t *testing.T, pa, pb pathConfig, data []byte) *pair {
	t.Helper()
	pr := newPair(t, Config{IdleTimeout: time.Minute}, Config{IdleTimeout: time.Minute}, pa, pb)
	errc := make(chan error, 1)
	go func() { errc <- writeAll(pr.a, data, 1) }()
	if err := readCheck(pr.b, data, 2); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return pr
}

// TestTransientDelayKeepsSlowStart: two rounds of 15 ms extra delay early
// in slow start (a busy machine, a per-hop retransmission) turn slow start
// conservative, and when the delay falls back it resumes instead of
// ending for good at a small window.
func TestTransientDelayKeepsSlowStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := time.Millisecond
		pa := pathConfig{Delay: 10 * ms, Bump: 15 * ms, BumpFrom: 150 * ms, BumpFor: 40 * ms, Seed: *seedFlag}
		pb := pathConfig{Delay: 10 * ms, Seed: *seedFlag + 100}
		pr := transferOver(t, pa, pb, pseudoRandom(16<<20, 7))
		s := pr.a.Stats()
		t.Logf("sender %+v", s)
		if s.CSSResumes == 0 || s.SlowStartExits != 0 {
			t.Errorf("%d conservative slow starts resumed, %d slow starts ended by delay; want >= 1 and 0", s.CSSResumes, s.SlowStartExits)
		}
	})
}

func TestFlowControl(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const win = 256 << 10
		cfg := Config{RecvWindow: win, IdleTimeout: time.Minute}
		pr := newPair(t, cfg, cfg, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		data := pseudoRandom(4<<20, 5)
		errc := make(chan error, 1)
		go func() { errc <- writeAll(pr.a, data, 5) }()
		time.Sleep(2 * time.Second) // b does not read
		sa, sb := pr.a.Stats(), pr.b.Stats()
		if sa.BytesSent > win || sb.RecvBuffered > win {
			t.Fatalf("sent %d, buffered %d beyond the window %d", sa.BytesSent, sb.RecvBuffered, win)
		}
		if sb.RecvBuffered < win/2 {
			t.Fatalf("only %d bytes buffered, window %d", sb.RecvBuffered, win)
		}
		pr.b.mu.Lock()
		ringSize := pr.b.rbuf.size()
		pr.b.mu.Unlock()
		if ringSize > 2*win {
			t.Fatalf("receive ring grew to %d", ringSize)
		}
		if sa.PacketsSent > 1000 {
			t.Fatalf("blocked sender sent %d packets in 2 s", sa.PacketsSent)
		}
		if err := readCheck(pr.b, data, 6); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if s := pr.b.Stats(); s.FlowViolations != 0 {
			t.Fatalf("flow violations: %d", s.FlowViolations)
		}
	})
}

func TestWriteBlocksAtSendBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const sb = 100_000
		cfg := Config{SendBuffer: sb, IdleTimeout: time.Minute}
		pr := newPair(t, cfg, cfg, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		pr.ab.cut(true)
		pr.a.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
		start := time.Now()
		n, err := pr.a.Write(make([]byte, 1<<20))
		if n != sb || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write = %d, %v; want %d, deadline exceeded", n, err, sb)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%v is not a timeout net.Error", err)
		}
		if el := time.Since(start); el != 200*time.Millisecond {
			t.Fatalf("Write returned after %v", el)
		}
		// Still blocked: an expired deadline fails at once.
		if n, err := pr.a.Write([]byte{1}); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Write after deadline = %d, %v", n, err)
		}
		// The path heals, the deadline is cleared: the buffer drains and Write goes on.
		pr.a.SetWriteDeadline(time.Time{})
		pr.ab.cut(false)
		errc := make(chan error, 1)
		go func() {
			_, err := pr.a.Write(make([]byte, 300_000))
			errc <- err
		}()
		buf := make([]byte, 400_000)
		if _, err := io.ReadFull(pr.b, buf); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	})
}

func TestReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newPair(t, Config{}, Config{}, pathConfig{}, pathConfig{})
		pr.a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := pr.a.Read(make([]byte, 10))
		if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %d, %v", n, err)
		}
		pr.a.SetReadDeadline(time.Time{})
		pr.b.Write([]byte("hi"))
		buf := make([]byte, 10)
		if n, err := pr.a.Read(buf); err != nil || string(buf[:n]) != "hi" {
			t.Fatalf("Read = %q, %v", buf[:n], err)
		}
	})
}

func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newPair(t, Config{}, Config{}, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		if _, err := pr.a.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(pr.b, buf); err != nil {
			t.Fatal(err)
		}
		pr.b.Write([]byte("unread"))
		start := time.Now()
		if err := pr.a.Close(); err != nil {
			t.Fatalf("Close = %v", err)
		}
		<-pr.b.Done()
		if el := time.Since(start); el > 5*time.Millisecond {
			t.Fatalf("peer ended %v after Close", el)
		}
		if err := pr.b.Err(); err != ErrPeerAborted {
			t.Fatalf("peer Err = %v", err)
		}
		if _, err := pr.b.Read(buf); err != ErrPeerAborted {
			t.Fatalf("peer Read = %v, want ErrPeerAborted", err)
		}
		if _, err := pr.b.Write(buf); err != ErrPeerAborted {
			t.Fatalf("peer Write = %v, want ErrPeerAborted", err)
		}
		if err := pr.a.Err(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Err = %v", err)
		}
		if _, err := pr.a.Write(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close = %v", err)
		}
		if _, err := pr.a.Read(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v", err)
		}
		if err := pr.a.Close(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close = %v", err)
		}
		if err := pr.a.Input([]byte{Version, 0, framePing}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Input after Close = %v", err)
		}
	})
}

// TestPeerDataBeforeClose: data the peer delivered before its CLOSE is read
// before io.EOF.
func TestPeerDataBeforeClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newPair(t, Config{}, Config{}, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		data := pseudoRandom(200_000, 9)
		if _, err := pr.a.Write(data); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := pr.a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		<-pr.b.Done() // nothing read yet
		got, err := io.ReadAll(pr.b)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("ReadAll = %d bytes, %v", len(got), err)
		}
		if err := pr.a.Shutdown(ctx); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Shutdown = %v", err)
		}
	})
}

func TestShutdownContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{IdleTimeout: time.Minute, SendBuffer: 1000}
		pr := newPair(t, cfg, Config{}, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		pr.ab.cut(true)
		werr := make(chan error, 1)
		go func() {
			_, err := pr.a.Write(make([]byte, 5000)) // blocks: nothing is acknowledged
			werr <- err
		}()
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		serr := make(chan error, 1)
		start := time.Now()
		go func() { serr <- pr.a.Shutdown(ctx) }()
		if err := <-werr; !errors.Is(err, net.ErrClosed) || time.Since(start) != 0 {
			t.Fatalf("blocked Write = %v after %v, want net.ErrClosed at once", err, time.Since(start))
		}
		if err := <-serr; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown = %v", err)
		}
		select {
		case <-pr.a.Done():
		default:
			t.Fatal("not ended after Shutdown gave up")
		}
	})
}

func TestPeerGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{KeepAlive: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
		pr := newPair(t, cfg, cfg, pathConfig{Delay: time.Millisecond}, pathConfig{Delay: time.Millisecond})
		pr.a.Write([]byte("x"))
		io.ReadFull(pr.b, make([]byte, 1))
		pr.ab.cut(true)
		pr.ba.cut(true)
		start := time.Now()
		_, err := pr.b.Read(make([]byte, 1))
		if err != ErrPeerGone {
			t.Fatalf("Read = %v, want ErrPeerGone", err)
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("%v is not a timeout net.Error", err)
		}
		if el := time.Since(start); el < 250*time.Millisecond || el > 350*time.Millisecond {
			t.Fatalf("peer declared gone after %v", el)
		}
		if _, err := pr.b.Write([]byte("x")); err != ErrPeerGone {
			t.Fatalf("Write = %v", err)
		}
		<-pr.a.Done()
		if err := pr.a.Err(); err != ErrPeerGone {
			t.Fatalf("other side Err = %v", err)
		}
	})
}

func TestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := Config{KeepAlive: 50 * time.Millisecond, IdleTimeout: 300 * time.Millisecond}
		pc := pathConfig{Delay: 2 * time.Millisecond, Loss: 0.1, Seed: *seedFlag}
		pr := newPair(t, cfg, cfg, pc, pc)
		time.Sleep(5 * time.Second) // idle, 16 idle timeouts
		select {
		case <-pr.a.Done():
			t.Fatalf("a ended: %v", pr.a.Err())
		case <-pr.b.Done():
			t.Fatalf("b ended: %v", pr.b.Err())
		default:
		}
		s := pr.a.Stats()
		// One PING per KeepAlive on each side, acknowledged: about 100 + 100 packets.
		if s.PacketsSent < 50 || s.PacketsSent > 400 {
			t.Fatalf("%d packets sent in 5 s of idling", s.PacketsSent)
		}
		pr.a.Write([]byte("still here"))
		buf := make([]byte, 10)
		if _, err := io.ReadFull(pr.b, buf); err != nil || string(buf) != "still here" {
			t.Fatalf("%q, %v", buf, err)
		}
	})
}

func TestSetMaxPacket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const big, small = 16 << 10, 1000
		n := 4 << 20
		cfg := Config{MaxPacket: big, IdleTimeout: time.Minute}
		pc := pathConfig{Delay: 2 * time.Millisecond, Loss: 0.05, Seed: *seedFlag}
		pr := newPair(t, cfg, cfg, pc, pc)
		var switched bool
		var bigAfter, before int
		var sent int
		pr.ab.setCheck(func(pkt []byte) {
			sent += len(pkt)
			switch {
			case switched && len(pkt) > small:
				bigAfter++
			case !switched && len(pkt) > small:
				before++
			}
			if !switched && sent > n/4 {
				// On the sender goroutine, between two packets.
				pr.a.SetMaxPacket(small)
				switched = true
			}
		})
		data := pseudoRandom(n, 4)
		errc := make(chan error, 1)
		go func() { errc <- writeAll(pr.a, data, 4) }()
		if err := readCheck(pr.b, data, 5); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		pr.ab.setCheck(nil)
		if !switched || before == 0 {
			t.Fatalf("switched %v, %d big packets before", switched, before)
		}
		if bigAfter != 0 {
			t.Fatalf("%d packets above %d bytes after SetMaxPacket", bigAfter, small)
		}
		if s := pr.a.Stats(); s.MaxPacket != small || s.BytesRetransmitted == 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestDuplicatesCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pc := pathConfig{Dup: 1, Delay: time.Millisecond}
		pr := newPair(t, Config{}, Config{}, pc, pc)
		data := pseudoRandom(100_000, 1)
		go pr.a.Write(data)
		if err := readCheck(pr.b, data, 1); err != nil {
			t.Fatal(err)
		}
		s := pr.b.Stats()
		if s.DuplicatesReceived == 0 || s.DuplicatesReceived*2 < s.PacketsReceived-2 {
			t.Fatalf("duplicates %d of %d packets", s.DuplicatesReceived, s.PacketsReceived)
		}
	})
}

// TestSpuriousUndo: pure reordering (no loss) makes RACK declare losses
// that turn out spurious; the reordering window grows, and no congestion
// cut is left standing (suspects acknowledged within their grace period
// cause none; cuts confirmed too early are undone).
func TestSpuriousUndo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Spikes longer than the initial reordering window (one minRTT).
		pc := pathConfig{Delay: 10 * time.Millisecond, Spike: 0.02, SpikeDelay: 30 * time.Millisecond, Seed: *seedFlag}
		pr := newPair(t, Config{IdleTimeout: time.Minute}, Config{IdleTimeout: time.Minute}, pc, pc)
		data := pseudoRandom(4<<20, 2)
		go pr.a.Write(data)
		if err := readCheck(pr.b, data, 1); err != nil {
			t.Fatal(err)
		}
		s := pr.a.Stats()
		t.Logf("%+v", s)
		if s.SpuriousRetransmits == 0 {
			t.Fatalf("no spurious loss detected: %+v", s)
		}
		if s.CongestionEvents > s.CwndUndos {
			t.Fatalf("%d congestion cuts for spurious losses, %d undone: %+v", s.CongestionEvents, s.CwndUndos, s)
		}
		if s.PacketsLost > s.SpuriousRetransmits+s.PTOs*2 {
			t.Fatalf("lossless path: %d lost, %d spurious", s.PacketsLost, s.SpuriousRetransmits)
		}
		if s.ReorderWindow <= s.MinRTT {
			t.Fatalf("reordering window did not grow beyond one minRTT (%v): %v", s.MinRTT, s.ReorderWindow)
		}
	})
}

func TestMalformedInput(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pr := newPair(t, Config{}, Config{}, pathConfig{}, pathConfig{})
		bad := [][]byte{
			nil,
			{},
			{Version},
			{9, 0, framePing},
			{Version, 0},
			{Version, 0, 0x77},
			{Version, 0, framePing, framePing},
			{Version, 0, frameStream, 0, 10, 1, 2},
			{Version, 0, frameAck, 5, 0, 0, 6},
			{Version, 0, frameAck, 5, 0, 40, 0},
			{Version, 0, frameAck, 0, 0, 0, 0}, // ACK of a packet never sent
			{Version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, framePing}, // number > 2^62
		}
		for i, pkt := range bad {
			if err := pr.a.Input(pkt); err == nil {
				t.Errorf("packet %d (%x) accepted", i, pkt)
			}
		}
		if s := pr.a.Stats(); s.MalformedReceived != uint64(len(bad)) {
			t.Errorf("MalformedReceived = %d, want %d", s.MalformedReceived, len(bad))
		}
		// Beyond the window: counted, dropped, the Conn lives on.
		var p Packet
		p.Number = 1000
		p.HasStream, p.Offset, p.Data = true, InitialWindow, []byte{1}
		if err := pr.a.Input(p.Append(nil)); err != nil {
			t.Fatal(err)
		}
		if s := pr.a.Stats(); s.FlowViolations != 1 {
			t.Errorf("FlowViolations = %d", s.FlowViolations)
		}
		pr.b.Write([]byte("ok"))
		buf := make([]byte, 2)
		if _, err := io.ReadFull(pr.a, buf); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfigValidate(t *testing.T) {
	out := func([]byte) error { return nil }
	cases := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{Output: out}, true},
		{"no output", Config{}, false},
		{"small packet", Config{Output: out, MaxPacket: 100}, false},
		{"huge packet", Config{Output: out, MaxPacket: 2 << 20}, false},
		{"small window", Config{Output: out, RecvWindow: 1000}, false},
		{"idle below keepalive", Config{Output: out, KeepAlive: time.Second, IdleTimeout: time.Second}, false},
		{"negative buffer", Config{Output: out, SendBuffer: -1}, false},
		{"64k packets", Config{Output: out, MaxPacket: 64 << 10}, true},
	}
	for _, tc := range cases {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate = %v", tc.name, err)
		}
	}
	if _, err := New(Config{}); err == nil {
		t.Error("New accepted a config without Output")
	}
}

// TestRealClock runs a lossy, reordering exchange on the real clock and
// real timers (no synctest bubble), as the product does.
func TestRealClock(t *testing.T) {
	n := 2 << 20
	if testing.Short() {
		n = 256 << 10
	}
	seed := *seedFlag
	t.Logf("seed %d", seed)
	pc := pathConfig{Loss: 0.05, Dup: 0.02, Delay: time.Millisecond, Jitter: 500 * time.Microsecond, Seed: seed}
	pc2 := pc
	pc2.Seed = seed + 100
	pr := newPair(t, Config{}, Config{}, pc, pc2)
	exchange(t, pr, n, seed)
	s := pr.a.Stats()
	t.Logf("a: %+v", s)
	if s.BytesRetransmitted == 0 {
		t.Errorf("no retransmissions on a lossy path")
	}
}
