package mesh_test

// Per-hop deadlines (WriteToWithin): on virtual time, over memnet chains,
// a datagram is delivered within its budget or dropped (counted Late) at
// the hop where the budget ran out, and a frame given up for its budget
// does not hold up the frames behind it.

import (
	"encoding/binary"
	"fmt"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// lateSum adds up Stats.Late over nodes.
func lateSum(nodes []*mesh.Node) uint64 {
	var n uint64
	for _, x := range nodes {
		n += x.Stats().Late
	}
	return n
}

// budgetRun is what a receiver saw of datagrams numbered 0..count-1.
type budgetRun struct {
	got     []bool
	worst   time.Duration // the longest time from a write to its read
	dups    int
	strange int // datagrams that were not one of those sent
}

// sendTimed writes count datagrams from pa to pb with WriteToWithin(budget),
// one every gap, while a reader takes them off pb; it returns what the
// reader saw by wait after the last write (virtual time: call it inside a
// synctest bubble).
func sendTimed(t *testing.T, pa, pb *mesh.PacketConn, count int, gap, budget, wait time.Duration) budgetRun {
	t.Helper()
	sent := make([]time.Time, count)
	run := budgetRun{got: make([]bool, count)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			k, _, err := pb.ReadFrom(buf)
			if err != nil {
				return
			}
			now := time.Now()
			i := -1
			if k == 100 {
				i = int(binary.BigEndian.Uint32(buf))
			}
			switch {
			case i < 0 || i >= count:
				run.strange++
			case run.got[i]:
				run.dups++
			default:
				run.got[i] = true
				run.worst = max(run.worst, now.Sub(sent[i]))
			}
		}
	}()
	msg := make([]byte, 100)
	for i := range count {
		binary.BigEndian.PutUint32(msg, uint32(i))
		sent[i] = time.Now()
		if _, err := pa.WriteToWithin(msg, pb.LocalAddr(), budget); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		time.Sleep(gap)
	}
	time.Sleep(wait)
	pb.SetReadDeadline(time.Now()) // the reader returns
	<-done
	if run.dups != 0 || run.strange != 0 {
		t.Errorf("%d datagrams delivered twice, %d not sent", run.dups, run.strange)
	}
	return run
}

func bindPair(t *testing.T, a, b *mesh.Node) (pa, pb *mesh.PacketConn) {
	t.Helper()
	pa, err := a.Bind(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pa.Close() })
	pb, err = b.Bind(100)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pb.Close() })
	return pa, pb
}

// TestWithinBudgetOverLossyChain (a): three hops of 10 ms with 10% loss
// each way; datagrams written with WriteToWithin(100 ms) arrive within
// 100 ms plus the path delay of being written, at least 95% of them, and
// every one that does not is counted Late somewhere on the path.
func TestWithinBudgetOverLossyChain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			hop    = 10 * time.Millisecond
			hops   = 3
			budget = 100 * time.Millisecond
		)
		count := 1000
		if testing.Short() {
			count = 300
		}
		m := meshtest.Chain(t, hops+1, memnet.LinkConfig{Loss: 0.1, Delay: hop})
		pa, pb := bindPair(t, m.Nodes[0], m.Nodes[hops])
		late0 := lateSum(m.Nodes)
		run := sendTimed(t, pa, pb, count, 2*time.Millisecond, budget, time.Second)
		delivered := countTrue(run.got)
		late := lateSum(m.Nodes) - late0
		var retransmits, abandoned, drops uint64
		for _, n := range m.Nodes {
			s := n.Stats()
			retransmits += s.Retransmits
			abandoned += s.Abandoned
			drops += s.RelayDrops + s.PortDrops + s.NoRoute + s.TTLExpired + s.TooBig
		}
		t.Logf("%d of %d delivered (%.1f%%), worst %v after the write (bound %v); Late %d, retransmits %d, abandoned %d",
			delivered, count, 100*float64(delivered)/float64(count), run.worst, budget+hops*hop, late, retransmits, abandoned)
		if run.worst > budget+hops*hop {
			t.Errorf("a datagram arrived %v after it was written, beyond %v", run.worst, budget+hops*hop)
		}
		if delivered*100 < count*95 {
			t.Errorf("%d of %d delivered, want at least 95%%", delivered, count)
		}
		if retransmits == 0 {
			t.Error("no retransmits: the loss was not applied")
		}
		// Every datagram not delivered was dropped for its deadline
		// (the ACK of a delivered one can be lost too, and its sender
		// give it up: Late may count more, never fewer).
		if missing := uint64(count - delivered); late < missing || drops != 0 || abandoned != 0 {
			t.Errorf("%d not delivered, but Late %d (other drops %d, abandoned %d)", missing, late, drops, abandoned)
		}
	})
}

// TestBudgetShorterThanPath (b): a budget shorter than the path's delay
// delivers nothing, and every datagram is counted Late once, at the hop
// where its budget ran out: the first for a budget under one hop's delay,
// a later one otherwise.
func TestBudgetShorterThanPath(t *testing.T) {
	for _, tc := range []struct {
		budget time.Duration
		at     int // the node that drops them
	}{
		{5 * time.Millisecond, 0},
		{15 * time.Millisecond, 1},
		{25 * time.Millisecond, 2},
	} {
		t.Run(fmt.Sprint(tc.budget), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const count = 50
				m := meshtest.Chain(t, 4, memnet.LinkConfig{Delay: 10 * time.Millisecond})
				pa, pb := bindPair(t, m.Nodes[0], m.Nodes[3])
				before := make([]uint64, len(m.Nodes))
				for i, n := range m.Nodes {
					before[i] = n.Stats().Late
				}
				run := sendTimed(t, pa, pb, count, 5*time.Millisecond, tc.budget, 200*time.Millisecond)
				if d := countTrue(run.got); d != 0 {
					t.Errorf("%d datagrams delivered with a budget of %v over 30 ms", d, tc.budget)
				}
				for i, n := range m.Nodes {
					want := uint64(0)
					if i == tc.at {
						want = count
					}
					if got := n.Stats().Late - before[i]; got != want {
						t.Errorf("node %d: Late %d, want %d", i, got, want)
					}
				}
			})
		})
	}
}

// TestBudgetGivenUpDoesNotStall (c): a frame lost on the first hop whose
// budget is spent by the time it would be resent is given up there (Late,
// not resent, not abandoned after MaxAttempts), and the reliable datagrams
// written behind it all arrive, promptly: whether the loss is found by the
// frames after it or by the timer.
func TestBudgetGivenUpDoesNotStall(t *testing.T) {
	for _, tc := range []struct {
		name  string
		pause time.Duration // between the lost frame and those behind it
	}{
		{"found by later frames", 0},
		{"found by the timer", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				clean := memnet.LinkConfig{Delay: 10 * time.Millisecond}
				m := meshtest.Chain(t, 2, clean)
				a, b := m.Nodes[0], m.Nodes[1]
				pa, pb := bindPair(t, a, b)
				synctest.Wait()
				before := a.Stats()
				m.Net.SetLink(m.Conns[0].LocalAddr(), m.Conns[1].LocalAddr(), memnet.LinkConfig{Cut: true})
				if _, err := pa.WriteToWithin([]byte("late"), pb.LocalAddr(), 15*time.Millisecond); err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // written to the cut link
				m.Net.SetLink(m.Conns[0].LocalAddr(), m.Conns[1].LocalAddr(), clean)
				time.Sleep(tc.pause)
				const count = 20
				start := time.Now()
				for i := range count {
					if _, err := pa.WriteTo([]byte{byte(i)}, pb.LocalAddr()); err != nil {
						t.Fatal(err)
					}
				}
				buf := make([]byte, 64)
				pb.SetReadDeadline(time.Now().Add(time.Second))
				for i := range count {
					k, _, err := pb.ReadFrom(buf)
					if err != nil {
						t.Fatalf("datagram %d of %d: %v", i, count, err)
					}
					if k != 1 {
						t.Fatalf("got %q: the frame given up was delivered", buf[:k])
					}
				}
				if took := time.Since(start); took > 50*time.Millisecond {
					t.Errorf("the datagrams behind the lost one took %v", took)
				}
				time.Sleep(time.Second) // anything more would have come
				pb.SetReadDeadline(time.Now())
				if k, _, err := pb.ReadFrom(buf); !os.IsTimeout(err) {
					t.Errorf("extra datagram %q after the reliable ones", buf[:k])
				}
				s := a.Stats()
				if got := s.Late - before.Late; got != 1 {
					t.Errorf("Late %d, want 1", got)
				}
				if s.Abandoned != before.Abandoned {
					t.Errorf("%d frames abandoned after MaxAttempts", s.Abandoned-before.Abandoned)
				}
				t.Logf("retransmits %d, of them timeouts %d, fast %d", s.Retransmits-before.Retransmits,
					s.Timeouts-before.Timeouts, s.FastRetransmits-before.FastRetransmits)
			})
		})
	}
}
