package splitter

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// waitBytes waits until prog has seen at least n bytes, or fails the test.
func waitBytes(t *testing.T, prog *progress, n int64, done <-chan struct{}) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for prog.bytes.Load() < n {
		select {
		case <-done:
			t.Fatalf("transfer ended after %d bytes, before %d", prog.bytes.Load(), n)
		case <-deadline:
			t.Fatalf("stuck at %d bytes waiting for %d", prog.bytes.Load(), n)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func fecName(d, p int) string { return fmt.Sprintf("fec %d:%d", d, p) }

// TestResetConnections resets one connection, then two at once, in the
// middle of transfers in both directions through a rate-limited relay.
func TestResetConnections(t *testing.T) {
	for _, fec := range [][2]int{{10, 3}, {0, 0}} {
		t.Run(fecName(fec[0], fec[1]), func(t *testing.T) {
			cfg := testConfig()
			cfg.DataShards, cfg.ParityShards = fec[0], fec[1]
			ln := listen(t, cfg)
			r := newRelay(t, ln.Addr().String(), 3e6)
			c, s := pair(t, ln, r.Addr(), cfg)
			waitLive(t, c, cfg.Conns)

			const size = 12 << 20
			prog := &progress{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				transfer(t, c, s, size, true, prog)
			}()
			waitBytes(t, prog, size/4, done)
			live := r.live()
			r.reset(live[0])
			waitBytes(t, prog, size/2, done)
			live = r.live()
			r.reset(live[0])
			r.reset(live[len(live)-1])
			<-done
			waitLive(t, c, cfg.Conns)

			cs, ss := c.Stats(), s.Stats()
			t.Logf("client %+v", cs)
			t.Logf("server %+v", ss)
			if cs.ConnsReopened < 3 || cs.ConnsLost < 3 {
				t.Errorf("client lost %d and re-opened %d connections, want at least 3", cs.ConnsLost, cs.ConnsReopened)
			}
			lost := cs.ShardsLost + ss.ShardsLost
			if lost == 0 {
				t.Errorf("no shards lost with the reset connections: the resets missed the transfer")
			}
			resent := cs.ShardsResent + ss.ShardsResent
			if fec[1] > 0 {
				if ss.BlocksRebuilt+cs.BlocksRebuilt == 0 {
					t.Error("no block rebuilt by FEC")
				}
				// Shards of a lost connection are sent again at once only
				// where a block lost more than P: with at most
				// ceil(13/8) = 2 shards of a block per connection that
				// is rare (two connections reset at once). Re-requests
				// must be rare too: the streams arrived byte-exact, so
				// the blocks whose shards were lost and never sent
				// again were rebuilt from parity.
				requeued := c.st.lossRequeued.Load() + s.st.lossRequeued.Load()
				t.Logf("lost %d shards; re-sent %d, %d of them at once because parity could not cover them", lost, resent, requeued)
				if resent*2 >= lost {
					t.Errorf("re-sent %d of %d lost shards: parity did not help", resent, lost)
				}
			} else if resent == 0 {
				t.Error("FEC off and nothing re-sent after losing shards")
			}
		})
	}
}

// TestStallOneConnection stops forwarding on one connection without
// closing it. The stream must keep going within about MaxHold, the
// connection must be declared stalled and replaced.
func TestStallOneConnection(t *testing.T) {
	for _, fec := range [][2]int{{10, 3}, {0, 0}} {
		t.Run(fecName(fec[0], fec[1]), func(t *testing.T) {
			cfg := testConfig()
			cfg.DataShards, cfg.ParityShards = fec[0], fec[1]
			cfg.MaxHold = 200 * time.Millisecond
			// Long enough that waiting for the stall to be detected
			// cannot pass for waiting the hold time.
			cfg.StallTimeout = 3 * time.Second
			ln := listen(t, cfg)
			const rate = 1e6 // per connection and direction: 8 MB/s in all
			r := newRelay(t, ln.Addr().String(), rate)
			c, s := pair(t, ln, r.Addr(), cfg)
			waitLive(t, c, cfg.Conns)

			const size = 28 << 20 // about 3.5 s at 8 MB/s
			prog := &progress{}
			done := make(chan struct{})
			go func() {
				defer close(done)
				transfer(t, c, s, size, false, prog)
			}()
			waitBytes(t, prog, size/5, done)
			stallAt := time.Now()
			r.stallConn(r.live()[0])
			select {
			case <-done:
			case <-time.After(time.Minute):
				t.Fatalf("transfer stuck at %d of %d bytes after a stall", prog.bytes.Load(), size)
			}
			// While the stall is silent (until StallTimeout) only the lane
			// window, FEC, suspicion and re-requests keep the stream going.
			gap := prog.gapIn(stallAt, stallAt.Add(cfg.StallTimeout))
			all, at := prog.gap()
			cs, ss := c.Stats(), s.Stats()
			t.Logf("largest pause %v in the %v after the stall (largest overall %v, %v after the stall); transfer ran %v after it",
				gap, cfg.StallTimeout, all, at.Sub(stallAt), time.Since(stallAt))
			t.Logf("client %+v", cs)
			t.Logf("server %+v", ss)
			// Without the lane window, FEC and re-requests the stream
			// would wait for the stall to be detected (StallTimeout) or
			// forever. With parity the stalled connection's shards
			// (at most 2 of 13 per block) are not needed: no pause may
			// reach the hold time. Without, the receiver holds for
			// MaxHold, re-requests, and the re-sent shards queue behind
			// at most one ConnWindow on a healthy connection.
			limit := cfg.MaxHold
			if fec[1] == 0 {
				limit = 2*cfg.MaxHold + time.Duration(float64(cfg.ConnWindow)/rate*float64(time.Second))
			}
			if limit >= cfg.StallTimeout/2 {
				t.Fatalf("bound %v would not tell the hold time from the stall timeout %v", limit, cfg.StallTimeout)
			}
			if gap > limit {
				t.Errorf("stream paused %v after a stall, want < %v (MaxHold %v, StallTimeout %v)", gap, limit, cfg.MaxHold, cfg.StallTimeout)
			}
			if cs.ConnsStalled == 0 {
				t.Error("client never declared the stalled connection stalled")
			}
			waitLive(t, c, cfg.Conns)
			if c.Stats().ConnsReopened == 0 {
				t.Error("stalled connection not replaced")
			}
			if fec[1] == 0 && cs.ShardsResent == 0 {
				t.Error("FEC off: shards in the stalled connection were never re-sent")
			}
		})
	}
}

// TestPeerVanishes cuts every connection and refuses new ones: both ends
// must fail with ErrPeerTimeout after about PeerTimeout.
func TestPeerVanishes(t *testing.T) {
	cfg := testConfig()
	cfg.Conns = 4
	cfg.PeerTimeout = time.Second
	ln := listen(t, cfg)
	r := newRelay(t, ln.Addr().String(), 0)
	c, s := pair(t, ln, r.Addr(), cfg)
	waitLive(t, c, cfg.Conns)
	for _, p := range [][2]*Conn{{c, s}, {s, c}} {
		if _, err := p[0].Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(p[1], make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
	}

	start := time.Now()
	r.Close()
	var wg sync.WaitGroup
	for _, end := range []*Conn{c, s} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := end.Read(make([]byte, 10))
			el := time.Since(start)
			if !errors.Is(err, ErrPeerTimeout) {
				t.Errorf("Read = %v, want ErrPeerTimeout", err)
			}
			if el < cfg.PeerTimeout/2 || el > cfg.PeerTimeout+2*time.Second {
				t.Errorf("session failed after %v, PeerTimeout %v", el, cfg.PeerTimeout)
			}
			if _, err := end.Write([]byte("x")); !errors.Is(err, ErrPeerTimeout) {
				t.Errorf("Write = %v, want ErrPeerTimeout", err)
			}
		}()
	}
	wg.Wait()
	if cs := c.Stats(); cs.DialFailures == 0 {
		t.Errorf("client never tried to re-dial: %+v", cs)
	}
}

// TestPoolCaps checks the listener's per-session connection cap and the
// client's dial rate while connections cannot be re-opened.
func TestPoolCaps(t *testing.T) {
	t.Run("listener MaxConns", func(t *testing.T) {
		scfg := testConfig()
		scfg.Conns, scfg.MaxConns = 1, 3
		ln := listen(t, scfg)
		cfg := testConfig()
		cfg.Conns = 6
		c, s := pair(t, ln, ln.Addr().String(), cfg)
		waitLive(t, c, 3)
		time.Sleep(300 * time.Millisecond)
		if n := s.Stats().ConnsLive; n != 3 {
			t.Errorf("server session has %d connections, cap 3", n)
		}
		if st := ln.Stats(); st.JoinsRefused == 0 {
			t.Errorf("no join refused: %+v", st)
		}
		transfer(t, c, s, 2<<20, true, nil)
	})
	t.Run("DialsPerSecond", func(t *testing.T) {
		cfg := testConfig()
		cfg.Conns = 4
		cfg.DialsPerSecond = 2
		cfg.PeerTimeout = 10 * time.Second
		cfg.Linger = 100 * time.Millisecond
		ln := listen(t, cfg)
		r := newRelay(t, ln.Addr().String(), 0)
		c, _ := pair(t, ln, r.Addr(), cfg)
		waitLive(t, c, cfg.Conns)
		// Connections now work for 20 ms only: every dial succeeds (no
		// back-off) and is lost again, so only the rate cap holds dials.
		r.killAfter.Store(int64(20 * time.Millisecond))
		before := r.accepts.Load()
		r.resetAll()
		const period = 2 * time.Second
		time.Sleep(period)
		dials := r.accepts.Load() - before
		// A burst of Conns, then DialsPerSecond.
		limit := int64(cfg.Conns) + int64(cfg.DialsPerSecond*period.Seconds()) + 1
		t.Logf("%d dials in %v (limit %d); client %+v", dials, period, limit, c.Stats())
		if dials > limit {
			t.Errorf("%d dial attempts in %v, cap allows %d", dials, period, limit)
		}
		if dials < int64(cfg.DialsPerSecond*period.Seconds())-1 {
			t.Errorf("only %d dial attempts: the client does not re-dial", dials)
		}
		r.killAfter.Store(0)
	})
}
