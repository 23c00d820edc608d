package memnet

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// sendN sends n datagrams of size bytes from a to b, seq 0..n-1.
func sendN(t testing.TB, a, b *Conn, n, size int, epoch time.Time) {
	t.Helper()
	for i := range n {
		if _, err := a.WriteTo(payload(size, i, epoch), b.LocalAddr()); err != nil {
			t.Fatalf("WriteTo %d: %v", i, err)
		}
	}
}

func TestLossRate(t *testing.T) {
	const n = 20000
	for _, p := range []float64{0, 0.01, 0.1, 0.3, 0.5, 1} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			net := newNet(t)
			net.SetRecvQueue(n, 64<<20)
			a, b := net.Listen(), net.Listen()
			net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Loss: p})
			sendN(t, a, b, n, 100, time.Now())
			got := drain(t, b)
			lost := n - len(got)
			within(t, "lost", lost, n, p, 5)
			s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
			if s.Sent != n || s.Lost != uint64(lost) || s.Delivered != uint64(len(got)) {
				t.Errorf("stats %+v, want Sent %d Lost %d Delivered %d", s, n, lost, len(got))
			}
			checkBalance(t, "a→b", s)
			if !slices.IsSortedFunc(got, func(x, y arrival) int { return x.seq - y.seq }) {
				t.Errorf("loss alone reordered datagrams")
			}
		})
	}
}

func TestDuplicateRate(t *testing.T) {
	const n = 20000
	for _, p := range []float64{0, 0.05, 0.2, 0.5, 1} {
		t.Run(fmt.Sprint(p), func(t *testing.T) {
			net := newNet(t)
			net.SetRecvQueue(2*n, 64<<20)
			a, b := net.Listen(), net.Listen()
			net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Duplicate: p})
			sendN(t, a, b, n, 64, time.Now())
			got := drain(t, b)
			dups := len(got) - n
			within(t, "duplicated", dups, n, p, 5)
			seen := make([]int, n)
			for _, g := range got {
				seen[g.seq]++
			}
			for seq, k := range seen {
				if k < 1 || k > 2 {
					t.Fatalf("seq %d delivered %d times", seq, k)
				}
			}
			s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
			if s.Duplicated != uint64(dups) || s.Delivered != uint64(len(got)) {
				t.Errorf("stats %+v, want Duplicated %d Delivered %d", s, dups, len(got))
			}
			checkBalance(t, "a→b", s)
		})
	}
}

// inTolerance runs a timing measurement on the real clock up to 3 times and
// fails if none is within tolerance: the 2-core test machine is shared, and a
// starved scheduler or sender skews one run. attempt reports a non-nil error
// for a measurement out of tolerance; it fails t directly on hard errors
// (which no load can cause).
func inTolerance(t *testing.T, attempt func(t *testing.T) error) {
	t.Helper()
	var errs []error
	for i := range 3 {
		err := attempt(t)
		if t.Failed() {
			return
		}
		if err == nil {
			return
		}
		t.Logf("attempt %d: %v", i+1, err)
		errs = append(errs, err)
	}
	t.Errorf("out of tolerance in every attempt: %v", errors.Join(errs...))
}

// TestDelayRealTime measures the one-way delay on the real clock.
func TestDelayRealTime(t *testing.T) {
	const (
		delay = 30 * time.Millisecond
		n     = 20
	)
	inTolerance(t, func(t *testing.T) error {
		net := newNet(t)
		a, b := net.Listen(), net.Listen()
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Delay: delay})
		epoch := time.Now()
		r := record(t, b, epoch)
		for i := range n {
			if _, err := a.WriteTo(payload(32, i, epoch), b.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			time.Sleep(2 * time.Millisecond)
		}
		r.waitN(t, n, 10*time.Second)
		got := r.stop()
		var ds []time.Duration
		for i, g := range got {
			if g.seq != i {
				t.Errorf("arrival %d is seq %d: constant delay reordered", i, g.seq)
			}
			if g.delay() < delay {
				t.Errorf("seq %d arrived after %v, before the delay %v", g.seq, g.delay(), delay)
			}
			ds = append(ds, g.delay())
		}
		slices.Sort(ds)
		med := ds[len(ds)/2]
		t.Logf("delay %v: measured min %v median %v max %v", delay, ds[0], med, ds[len(ds)-1])
		// The scheduler wakes on a timer: allow the OS some lateness.
		if med > delay+5*time.Millisecond {
			return fmt.Errorf("median delay %v, want close to %v", med, delay)
		}
		return nil
	})
}

// TestTimingSynctest checks delays, jitter, reordering and serialization
// exactly, on the fake clock of a synctest bubble.
func TestTimingSynctest(t *testing.T) {
	const (
		n      = 2000
		gap    = 100 * time.Microsecond
		delay  = 10 * time.Millisecond
		jitter = 5 * time.Millisecond
		hold   = 3 * time.Millisecond
	)
	tests := []struct {
		name string
		cfg  LinkConfig
		// check inspects the arrivals, in arrival order; reordered counts
		// arrivals with a lower seq than one that came before.
		check func(t *testing.T, got []arrival, reordered int)
	}{{
		name: "delay",
		cfg:  LinkConfig{Delay: delay},
		check: func(t *testing.T, got []arrival, reordered int) {
			for _, g := range got {
				if g.delay() != delay {
					t.Fatalf("seq %d: delay %v, want exactly %v", g.seq, g.delay(), delay)
				}
			}
			if reordered != 0 {
				t.Errorf("%d reordered without jitter or reorder", reordered)
			}
		},
	}, {
		name: "jitter",
		cfg:  LinkConfig{Delay: delay, Jitter: jitter},
		check: func(t *testing.T, got []arrival, reordered int) {
			var sum time.Duration
			for _, g := range got {
				if d := g.delay(); d < delay || d >= delay+jitter {
					t.Fatalf("seq %d: delay %v outside [%v, %v)", g.seq, d, delay, delay+jitter)
				}
				sum += g.delay()
			}
			mean := sum / time.Duration(len(got))
			// Uniform on [0, 5ms): sd of the mean over 2000 is ~32µs.
			if want := delay + jitter/2; mean < want-200*time.Microsecond || mean > want+200*time.Microsecond {
				t.Errorf("mean delay %v, want %v", mean, want)
			}
			if reordered < n/10 {
				t.Errorf("only %d of %d reordered by %v jitter at %v spacing", reordered, n, jitter, gap)
			}
		},
	}, {
		name: "reorder",
		cfg:  LinkConfig{Delay: delay, Reorder: 0.1, ReorderDelay: hold},
		check: func(t *testing.T, got []arrival, reordered int) {
			held, heldEarly := 0, 0
			last := n - int(hold/gap) // datagrams sent after this one may see nothing overtake
			for _, g := range got {
				switch g.delay() {
				case delay:
				case delay + hold:
					held++
					if g.seq < last {
						heldEarly++
					}
				default:
					t.Fatalf("seq %d: delay %v, want %v or %v", g.seq, g.delay(), delay, delay+hold)
				}
			}
			within(t, "held back", held, n, 0.1, 5)
			// A held datagram is overtaken by the next one not held, if one
			// is sent within the hold; only held ones arrive out of order.
			if reordered > held || reordered < heldEarly {
				t.Errorf("%d arrived out of order, %d were held back (%d early)", reordered, held, heldEarly)
			}
		},
	}, {
		name: "reorder default delay",
		cfg:  LinkConfig{Delay: delay, Reorder: 0.5},
		check: func(t *testing.T, got []arrival, reordered int) {
			for _, g := range got {
				if d := g.delay(); d != delay && d != 2*delay {
					t.Fatalf("seq %d: delay %v, want %v or %v", g.seq, d, delay, 2*delay)
				}
			}
			within(t, "reordered", reordered, n, 0.5, 6)
		},
	}, {
		name: "reorder without delay",
		cfg:  LinkConfig{Reorder: 0.3},
		check: func(t *testing.T, got []arrival, reordered int) {
			held := 0
			for _, g := range got {
				switch g.delay() {
				case 0:
				case time.Millisecond: // the default hold when Delay is 0
					held++
				default:
					t.Fatalf("seq %d: delay %v, want 0 or 1ms", g.seq, g.delay())
				}
			}
			within(t, "held back", held, n, 0.3, 5)
			if reordered == 0 {
				t.Errorf("nothing arrived out of order")
			}
		},
	}, {
		name: "bandwidth",
		// 1000 B datagrams at 2 MB/s take 500µs each: the sender (one per
		// 100µs) outruns the link, which must space arrivals 500µs apart.
		cfg: LinkConfig{Delay: delay, Bandwidth: 2_000_000, QueueBytes: 1 << 30},
		check: func(t *testing.T, got []arrival, reordered int) {
			for i, g := range got {
				want := time.Duration(i+1)*500*time.Microsecond + delay
				if g.at != want {
					t.Fatalf("seq %d arrived at %v, want %v", g.seq, g.at, want)
				}
			}
			if reordered != 0 {
				t.Errorf("%d reordered", reordered)
			}
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				net := newNet(t)
				net.SetRecvQueue(4*n, 64<<20)
				a, b := net.Listen(), net.Listen()
				net.SetLink(a.LocalAddr(), b.LocalAddr(), tt.cfg)
				epoch := time.Now()
				r := record(t, b, epoch)
				for i := range n {
					if _, err := a.WriteTo(payload(1000, i, epoch), b.LocalAddr()); err != nil {
						t.Fatal(err)
					}
					time.Sleep(gap)
				}
				time.Sleep(time.Second)
				got := r.stop()
				if len(got) != n {
					t.Fatalf("%d of %d arrived", len(got), n)
				}
				reordered, hi := 0, -1
				for _, g := range got {
					if g.seq < hi {
						reordered++
					}
					hi = max(hi, g.seq)
				}
				t.Logf("%d of %d arrived out of order", reordered, n)
				tt.check(t, got, reordered)
				checkBalance(t, "a→b", net.LinkStats(a.LocalAddr(), b.LocalAddr()))
			})
		})
	}
}

// TestOrderRealTime sends bursts on the real clock: without jitter or
// reorder nothing may overtake; with them something must.
func TestOrderRealTime(t *testing.T) {
	const n = 5000
	tests := []struct {
		name    string
		cfg     LinkConfig
		wantOOO bool
	}{
		{"zero delay", LinkConfig{}, false},
		{"delay", LinkConfig{Delay: 2 * time.Millisecond}, false},
		{"delay and bandwidth", LinkConfig{Delay: time.Millisecond, Bandwidth: 50 << 20, QueueBytes: 8 << 20}, false},
		{"jitter", LinkConfig{Delay: time.Millisecond, Jitter: 2 * time.Millisecond}, true},
		{"reorder", LinkConfig{Delay: time.Millisecond, Reorder: 0.05}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newNet(t)
			net.SetRecvQueue(2*n, 64<<20)
			a, b := net.Listen(), net.Listen()
			net.SetLink(a.LocalAddr(), b.LocalAddr(), tt.cfg)
			epoch := time.Now()
			r := record(t, b, epoch)
			for i := range n {
				if _, err := a.WriteTo(payload(200, i, epoch), b.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				if i%100 == 99 {
					time.Sleep(100 * time.Microsecond) // spread the sends over time
				}
			}
			r.waitN(t, n, 10*time.Second)
			got := r.stop()
			ooo, hi := 0, -1
			for _, g := range got {
				if g.seq < hi {
					ooo++
				}
				hi = max(hi, g.seq)
			}
			t.Logf("%d of %d out of order", ooo, n)
			if tt.wantOOO && ooo == 0 {
				t.Errorf("nothing arrived out of order")
			}
			if !tt.wantOOO && ooo != 0 {
				t.Errorf("%d arrived out of order", ooo)
			}
		})
	}
}

// TestBandwidthRealTime saturates a link on the real clock and measures the
// delivered rate.
func TestBandwidthRealTime(t *testing.T) {
	const (
		size = 1400
		run  = 500 * time.Millisecond
	)
	for _, bw := range []int64{1_000_000, 20_000_000} {
		t.Run(fmt.Sprint(bw), func(t *testing.T) {
			inTolerance(t, func(t *testing.T) error {
				net := newNet(t)
				a, b := net.Listen(), net.Listen()
				net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{
					// A queue of 250ms keeps the link busy through a
					// sender's pause on a loaded machine.
					Delay: 5 * time.Millisecond, Bandwidth: bw, QueueBytes: int(bw / 4),
				})
				epoch := time.Now()
				r := record(t, b, epoch)
				msg := make([]byte, size)
				// Saturate: every millisecond, write until the queue
				// tail-drops.
				for time.Since(epoch) < run {
					for dropped := net.LinkStats(a.LocalAddr(), b.LocalAddr()).QueueDropped; ; {
						if _, err := a.WriteTo(msg, b.LocalAddr()); err != nil {
							t.Fatal(err)
						}
						if net.LinkStats(a.LocalAddr(), b.LocalAddr()).QueueDropped > dropped {
							break
						}
					}
					time.Sleep(time.Millisecond)
				}
				s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
				r.waitN(t, int(s.Sent-s.QueueDropped), 10*time.Second)
				got := r.stop()
				s = net.LinkStats(a.LocalAddr(), b.LocalAddr())
				if s.QueueDropped == 0 {
					t.Errorf("a saturating sender caused no queue drops: %+v", s)
				}
				checkBalance(t, "a→b", s)
				first, last := got[0], got[len(got)-1]
				rate := float64((len(got)-1)*size) / (last.at - first.at).Seconds()
				t.Logf("bandwidth %d B/s: measured %.0f B/s (%.1f%%) over %v, %d delivered, %d queue-dropped",
					bw, rate, 100*rate/float64(bw), last.at-first.at, len(got), s.QueueDropped)
				if rate < 0.9*float64(bw) || rate > 1.1*float64(bw) {
					return fmt.Errorf("measured %.0f B/s, want %d ± 10%%", rate, bw)
				}
				return nil
			})
		})
	}
}

func TestBandwidthQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			size  = 1400
			queue = 64 << 10
			bw    = 1_000_000
		)
		net := newNet(t)
		a, b := net.Listen(), net.Listen()
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Bandwidth: bw, QueueBytes: queue})
		epoch := time.Now()
		r := record(t, b, epoch)
		sendN(t, a, b, 100, size, epoch) // at one instant
		fit := queue / size              // 46
		s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
		if s.Sent != 100 || s.QueueDropped != uint64(100-fit) {
			t.Fatalf("after a burst of 100: %+v, want %d queue-dropped", s, 100-fit)
		}
		time.Sleep(time.Second)
		got := r.stop()
		if len(got) != fit {
			t.Fatalf("%d arrived, want %d", len(got), fit)
		}
		for i, g := range got {
			if want := time.Duration(i+1) * 1400 * time.Microsecond; g.seq != i || g.at != want {
				t.Errorf("arrival %d: seq %d at %v, want seq %d at %v", i, g.seq, g.at, i, want)
			}
		}
		// Once the queue has drained it accepts a full burst again; the
		// default queue (256 KiB) holds 187 datagrams of 1400 bytes.
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Bandwidth: bw})
		sendN(t, a, b, 200, size, epoch)
		s = net.LinkStats(a.LocalAddr(), b.LocalAddr())
		if want := uint64(100 - fit + 200 - DefaultQueueBytes/size); s.QueueDropped != want {
			t.Errorf("QueueDropped %d, want %d", s.QueueDropped, want)
		}
		time.Sleep(time.Second)
		checkBalance(t, "a→b", net.LinkStats(a.LocalAddr(), b.LocalAddr()))
	})
}

func TestCut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t)
		a, b := net.Listen(), net.Listen()
		ab, ba := func() LinkStats { return net.LinkStats(a.LocalAddr(), b.LocalAddr()) },
			func() LinkStats { return net.LinkStats(b.LocalAddr(), a.LocalAddr()) }
		epoch := time.Now()

		// Cut at send time, one direction only.
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Cut: true})
		sendN(t, a, b, 100, 64, epoch)
		sendN(t, b, a, 10, 64, epoch)
		if got := len(drain(t, b)); got != 0 {
			t.Errorf("%d crossed a cut link", got)
		}
		if got := len(drain(t, a)); got != 10 {
			t.Errorf("reverse direction delivered %d of 10", got)
		}
		if s := ab(); s.CutDropped != 100 || s.Delivered != 0 {
			t.Errorf("a→b %+v, want 100 cut-dropped", s)
		}

		// Un-cut: traffic flows again.
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{})
		sendN(t, a, b, 100, 64, epoch)
		if got := len(drain(t, b)); got != 100 {
			t.Errorf("after un-cut %d of 100 arrived", got)
		}

		// Cut while in flight: what has not arrived yet is lost.
		net.SetLinkBoth(a.LocalAddr(), b.LocalAddr(), LinkConfig{Delay: 50 * time.Millisecond})
		sendN(t, a, b, 10, 64, epoch)
		time.Sleep(10 * time.Millisecond)
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Cut: true})
		time.Sleep(100 * time.Millisecond)
		if got := len(drain(t, b)); got != 0 {
			t.Errorf("%d in-flight datagrams crossed after the cut", got)
		}
		if s := ab(); s.CutDropped != 110 {
			t.Errorf("a→b CutDropped %d, want 110", s.CutDropped)
		}
		// The default can cut too, and a pair with its own setting is
		// unaffected.
		c := net.Listen()
		net.SetDefault(LinkConfig{Cut: true})
		sendN(t, c, a, 5, 64, epoch)
		sendN(t, b, a, 5, 64, epoch)
		time.Sleep(100 * time.Millisecond)
		got := drain(t, a)
		if len(got) != 5 || got[0].from != b.Addr() {
			t.Errorf("a got %d (want 5 from b only)", len(got))
		}
		net.SetDefault(LinkConfig{})
		sendN(t, c, a, 5, 64, epoch)
		if got := len(drain(t, a)); got != 5 {
			t.Errorf("after the default is restored %d of 5 arrived", got)
		}
		checkBalance(t, "a→b", ab())
		checkBalance(t, "b→a", ba())
	})
}

// TestAccounting runs a mix of every behaviour, several senders and
// receivers, a small receive queue and an unreachable address, and checks
// that every datagram is accounted for exactly once.
func TestAccounting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t)
		net.SetRecvQueue(50, 1<<20)
		net.SetDefault(LinkConfig{
			Loss: 0.1, Delay: 5 * time.Millisecond, Jitter: 2 * time.Millisecond,
			Reorder: 0.1, Duplicate: 0.1, Bandwidth: 1 << 20, QueueBytes: 20000,
		})
		var conns []*Conn
		for range 4 {
			conns = append(conns, net.Listen())
		}
		gone := net.Listen()
		net.SetLink(conns[0].LocalAddr(), conns[1].LocalAddr(), LinkConfig{Delay: time.Millisecond})
		epoch := time.Now()
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Go(func() {
				for k := range 500 {
					to := conns[(i+1+k%3)%len(conns)].LocalAddr()
					if k%50 == 0 {
						to = gone.LocalAddr()
					}
					if k%97 == 0 {
						to = net.Broadcast()
					}
					if _, err := c.WriteTo(payload(500+k, k, epoch), to); err != nil {
						t.Error(err)
						return
					}
					if k == 250 && i == 2 {
						gone.Close()
						net.SetLink(c.LocalAddr(), conns[3].LocalAddr(), LinkConfig{Cut: true, Delay: time.Millisecond})
					}
					time.Sleep(200 * time.Microsecond)
				}
			})
		}
		wg.Wait()
		time.Sleep(time.Second)
		if f := net.InFlight(); f != 0 {
			t.Fatalf("%d still in flight", f)
		}
		all := append(slices.Clone(conns), gone)
		var total LinkStats
		var deliveredOpen uint64 // delivered to endpoints still open
		for _, from := range all {
			for _, to := range all {
				if from == to {
					continue
				}
				s := net.LinkStats(from.LocalAddr(), to.LocalAddr())
				checkBalance(t, fmt.Sprintf("%v→%v", from.Addr(), to.Addr()), s)
				total.add(s)
				if to != gone {
					deliveredOpen += s.Delivered
				}
			}
		}
		if got := net.Stats(); got != total {
			t.Errorf("Network.Stats %+v, want the sum %+v", got, total)
		}
		var queued, overflow uint64
		for _, c := range conns {
			cs := c.Stats()
			queued += uint64(cs.Queued)
			overflow += cs.Overflow
		}
		if queued != deliveredOpen || overflow != total.Overflow {
			t.Errorf("receivers hold %d (overflowed %d), links delivered %d (overflow %d)",
				queued, overflow, deliveredOpen, total.Overflow)
		}
		for _, what := range []struct {
			name string
			v    uint64
		}{{"Lost", total.Lost}, {"Duplicated", total.Duplicated}, {"QueueDropped", total.QueueDropped},
			{"CutDropped", total.CutDropped}, {"Unreachable", total.Unreachable}, {"Overflow", total.Overflow}} {
			if what.v == 0 {
				t.Errorf("the mix produced no %s: %+v", what.name, total)
			}
		}
		t.Logf("totals %+v", total)
	})
}

// TestDeterministic replays the same single-sender run on two networks with
// one seed and checks the random decisions are identical, and differ for
// another seed.
func TestDeterministic(t *testing.T) {
	cfg := LinkConfig{Loss: 0.2, Delay: 3 * time.Millisecond, Jitter: 3 * time.Millisecond, Reorder: 0.1, Duplicate: 0.1}
	run := func(seed int64) []arrival {
		var got []arrival
		synctest.Test(t, func(t *testing.T) {
			n := New(seed)
			defer n.Close()
			a, b := n.Listen(), n.Listen()
			n.SetLink(a.LocalAddr(), b.LocalAddr(), cfg)
			epoch := time.Now()
			r := record(t, b, epoch)
			for i := range 1000 {
				if _, err := a.WriteTo(payload(100, i, epoch), b.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Microsecond)
			}
			time.Sleep(time.Second)
			got = r.stop()
		})
		return got
	}
	seed := *seedFlag
	if seed == 0 {
		seed = 42
	}
	t.Logf("seed %d", seed)
	x, y, z := run(seed), run(seed), run(seed+1)
	if !slices.Equal(x, y) {
		t.Errorf("same seed, different outcomes (%d vs %d arrivals)", len(x), len(y))
	}
	if slices.Equal(x, z) {
		t.Errorf("different seeds, identical outcomes")
	}
}

func TestRecvQueueOverflow(t *testing.T) {
	tests := []struct {
		name         string
		pkts, bytes  int
		n, size, fit int
	}{
		{"packets", 10, 1 << 20, 20, 100, 10},
		{"bytes", 100, 5000, 10, 1000, 5},
		{"default packets", DefaultRecvPackets, DefaultRecvBytes, DefaultRecvPackets + 10, 16, DefaultRecvPackets},
		{"default bytes", DefaultRecvPackets, DefaultRecvBytes, 1000, 9000, DefaultRecvBytes / 9000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net := newNet(t)
			net.SetMTU(9000)
			net.SetRecvQueue(tt.pkts, tt.bytes)
			a, b := net.Listen(), net.Listen()
			sendN(t, a, b, tt.n, tt.size, time.Now())
			cs := b.Stats()
			if cs.Queued != tt.fit || cs.QueuedBytes != tt.fit*tt.size || cs.Overflow != uint64(tt.n-tt.fit) {
				t.Errorf("receiver %+v, want %d queued, %d overflow", cs, tt.fit, tt.n-tt.fit)
			}
			if s := net.LinkStats(a.LocalAddr(), b.LocalAddr()); s.Overflow != uint64(tt.n-tt.fit) {
				t.Errorf("link Overflow %d, want %d", s.Overflow, tt.n-tt.fit)
			}
			got := drain(t, b)
			for i, g := range got {
				if g.seq != i {
					t.Fatalf("arrival %d is seq %d: the queue keeps the oldest", i, g.seq)
				}
			}
			if cs := b.Stats(); cs.Received != uint64(tt.fit) || cs.Queued != 0 || cs.QueuedBytes != 0 {
				t.Errorf("after draining %+v", cs)
			}
		})
	}
}

func TestInFlightLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t)
		net.SetInFlightLimit(10000)
		a, b := net.Listen(), net.Listen()
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Delay: time.Millisecond})
		sendN(t, a, b, 20, 1000, time.Now())
		if f := net.InFlight(); f != 10 {
			t.Errorf("InFlight %d, want 10", f)
		}
		time.Sleep(10 * time.Millisecond)
		if got := len(drain(t, b)); got != 10 {
			t.Errorf("%d arrived, want 10", got)
		}
		s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
		if s.InFlightDropped != 10 {
			t.Errorf("InFlightDropped %d, want 10", s.InFlightDropped)
		}
		checkBalance(t, "a→b", s)
	})
}

func TestBroadcast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t)
		var cs []*Conn
		for range 6 {
			cs = append(cs, net.Listen())
		}
		cs[5].Close()
		cs = cs[:5]
		net.SetLink(cs[0].LocalAddr(), cs[3].LocalAddr(), LinkConfig{Cut: true})
		net.SetLink(cs[0].LocalAddr(), cs[4].LocalAddr(), LinkConfig{Delay: 20 * time.Millisecond})
		if _, err := cs[0].WriteTo([]byte("hello"), net.Broadcast()); err != nil {
			t.Fatal(err)
		}
		if _, err := cs[0].WriteTo(make([]byte, 2000), net.Broadcast()); err == nil {
			t.Error("oversize broadcast accepted")
		}
		time.Sleep(30 * time.Millisecond)
		want := map[int]int{0: 0, 1: 1, 2: 1, 3: 0, 4: 1}
		for i, c := range cs {
			got := drain(t, c)
			if len(got) != want[i] {
				t.Errorf("endpoint %d got %d, want %d", i, len(got), want[i])
			}
			for _, g := range got {
				if g.from != cs[0].Addr() || g.size != 5 {
					t.Errorf("endpoint %d got %+v", i, g)
				}
			}
		}
		if s := net.LinkStats(cs[0].LocalAddr(), cs[3].LocalAddr()); s.Sent != 1 || s.CutDropped != 1 {
			t.Errorf("0→3 %+v", s)
		}
		if s := net.LinkStats(cs[0].LocalAddr(), cs[1].LocalAddr()); s.Sent != 1 || s.Delivered != 1 {
			t.Errorf("0→1 %+v", s)
		}
		if s := net.LinkStats(cs[0].LocalAddr(), net.Broadcast()); s.Oversize != 1 {
			t.Errorf("0→broadcast %+v, want 1 oversize", s)
		}
		if s := cs[0].Stats(); s.Sent != 1 || s.Oversize != 1 {
			t.Errorf("sender %+v", s)
		}
	})
}
