package arq

import (
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// stallLog records the calls of Config.Stalled.
type stallLog struct {
	mu    sync.Mutex
	at    []time.Time
	moved bool // what Stalled answers
	then  func()
}

func (l *stallLog) stalled() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.at = append(l.at, time.Now())
	if l.then != nil {
		l.then()
		l.then = nil
	}
	return l.moved
}

func (l *stallLog) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

// warmUp moves some data each way, so that both ends measured the RTT.
func warmUp(t *testing.T, pr *pair) {
	t.Helper()
	d := pseudoRandom(64<<10, 1)
	for _, c := range [][2]*Conn{{pr.a, pr.b}, {pr.b, pr.a}} {
		go writeAll(c[0], d, 1)
		if err := readCheck(c[1], d, 2); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStallReported: a path that stops carrying packets (a relay that
// drops) is reported a few PTOs and at least stallTime after the last
// acknowledgement, whether data or only keepalives are outstanding, and
// reports are spaced by stallTime at least.
func TestStallReported(t *testing.T) {
	for _, idle := range []bool{false, true} {
		name := "writing"
		if idle {
			name = "idle"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var log stallLog
				ca := Config{Stalled: log.stalled, IdleTimeout: time.Minute}
				pc := pathConfig{Delay: 5 * time.Millisecond}
				pr := newPair(t, ca, Config{IdleTimeout: time.Minute}, pc, pc)
				warmUp(t, pr)
				pr.ab.cut(true)
				cut := time.Now()
				if !idle {
					pr.a.Write([]byte("into the void"))
				}
				time.Sleep(10 * time.Second)
				at := log.times()
				if len(at) < 2 {
					t.Fatalf("%d stalls reported in 10 s", len(at))
				}
				first := at[0].Sub(cut)
				// Idle, the first keepalive PING goes out up to KeepAlive after the cut.
				lo, hi := time.Duration(stallTime), 700*time.Millisecond
				if idle {
					// The first PING goes out after KeepAlive without
					// sending; the ACKs of the peer's PINGs can put it off
					// for a while.
					hi += 3 * DefaultKeepAlive
				}
				if first < lo || first > hi {
					t.Errorf("first stall %v after the cut, want in [%v, %v]", first, lo, hi)
				}
				for i := 1; i < len(at); i++ {
					if d := at[i].Sub(at[i-1]); d < time.Duration(stallTime) {
						t.Errorf("stall %d only %v after the one before", i, d)
					}
				}
				if s := pr.a.Stats(); s.Stalls != uint64(len(at)) {
					t.Errorf("Stats.Stalls %d, %d calls", s.Stalls, len(at))
				}
				if s := pr.b.Stats(); s.Stalls != 0 {
					t.Errorf("b without Stalled counts %d stalls", s.Stalls)
				}
			})
		})
	}
}

// TestStallNewPathProbedAtOnce: when Stalled says the path changed, the
// PTO back-off starts again, so the new path carries the data within a few
// PTOs rather than after the backed-off timer; when it says nothing
// changed, the back-off goes on.
func TestStallNewPathProbedAtOnce(t *testing.T) {
	for _, moved := range []bool{true, false} {
		name := "moved"
		if !moved {
			name = "unchanged"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				log := stallLog{moved: moved}
				ca := Config{Stalled: log.stalled, IdleTimeout: time.Minute}
				pc := pathConfig{Delay: 5 * time.Millisecond}
				pr := newPair(t, ca, Config{IdleTimeout: time.Minute}, pc, pc)
				warmUp(t, pr)
				pr.ab.cut(true)
				var healed time.Time
				log.then = func() { // the route moved: the path works again
					healed = time.Now()
					pr.ab.cut(false)
				}
				pr.a.Write([]byte("x"))
				if _, err := io.ReadFull(pr.b, make([]byte, 1)); err != nil {
					t.Fatal(err)
				}
				took := time.Since(healed)
				t.Logf("delivered %v after the path healed; stall at %v; %+v", took, log.times(), pr.a.Stats())
				if moved && took > 30*time.Millisecond {
					t.Errorf("delivered %v after the path healed, want within 30 ms", took)
				}
				if !moved && took < 50*time.Millisecond {
					t.Errorf("delivered %v after the path healed: the back-off was reset though nothing changed", took)
				}
			})
		})
	}
}

// TestNoStallOnLossyPath: heavy loss, duplication and reordering are no
// stall: acknowledgements keep coming.
func TestNoStallOnLossyPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log stallLog
		cfg := Config{Stalled: log.stalled, IdleTimeout: time.Minute}
		pc := pathConfig{Loss: 0.2, Dup: 0.05, Delay: 5 * time.Millisecond, Jitter: time.Millisecond, Spike: 0.1, SpikeDelay: 30 * time.Millisecond, Seed: *seedFlag}
		pb := pc
		pb.Seed++
		pr := newPair(t, cfg, cfg, pc, pb)
		exchange(t, pr, 1<<20, *seedFlag)
		if n := len(log.times()); n != 0 {
			t.Fatalf("%d stalls reported on a lossy path that works", n)
		}
	})
}
