package deadline

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waiter blocks on d.Done() in a goroutine; woken reports whether it has
// returned (call after synctest.Wait).
type waiter struct {
	mu   sync.Mutex
	done bool
	at   time.Time
}

func wait(d *Timer) *waiter {
	w := &waiter{}
	ch := d.Done()
	go func() {
		<-ch
		w.mu.Lock()
		w.done, w.at = true, time.Now()
		w.mu.Unlock()
	}()
	return w
}

// expect waits until the bubble is idle and fails with msg unless the
// waiter has returned and d expired (want), or neither.
func (w *waiter) expect(t *testing.T, d *Timer, want bool, msg string) {
	t.Helper()
	synctest.Wait()
	if ok, _ := w.woken(); ok != want || d.Expired() != want {
		t.Fatal(msg)
	}
}

func (w *waiter) woken() (bool, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done, w.at
}

func TestZeroValueHasNoDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		w := wait(&d)
		time.Sleep(time.Hour)
		w.expect(t, &d, false, "a Timer never set expired")
		d.Set(time.Now()) // wake the waiter so the bubble can end
		w.expect(t, &d, true, "Set(now) did not wake the waiter")
	})
}

func TestPassesAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		start := time.Now()
		d.Set(start.Add(time.Second))
		w := wait(&d)
		time.Sleep(999 * time.Millisecond)
		w.expect(t, &d, false, "expired before the deadline")
		time.Sleep(time.Millisecond)
		synctest.Wait()
		ok, at := w.woken()
		if !ok || !d.Expired() {
			t.Fatal("not expired at the deadline")
		}
		if got := at.Sub(start); got != time.Second {
			t.Fatalf("woken after %v, want 1s", got)
		}
	})
}

// TestBlockedSeesMovedDeadline: a call blocked on Done sees the deadline
// moved later, earlier, into the past, and set after it blocked.
func TestBlockedSeesMovedDeadline(t *testing.T) {
	cases := []struct {
		name  string
		first time.Duration // 0: no deadline when the call blocks
		moved time.Duration // relative to when it is moved; <0: the past
		want  time.Duration // when the waiter wakes, from the start
	}{
		{"later", time.Second, 5 * time.Second, 5*time.Second + 100*time.Millisecond},
		{"earlier", 10 * time.Second, time.Second, time.Second + 100*time.Millisecond},
		{"into the past", 10 * time.Second, -time.Second, 100 * time.Millisecond},
		{"set while blocked", 0, 2 * time.Second, 2*time.Second + 100*time.Millisecond},
		{"past while blocked", 0, -time.Second, 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var d Timer
				start := time.Now()
				if tc.first != 0 {
					d.Set(start.Add(tc.first))
				}
				w := wait(&d)
				time.Sleep(100 * time.Millisecond)
				synctest.Wait()
				if ok, _ := w.woken(); ok {
					t.Fatal("woken before the deadline was moved")
				}
				d.Set(time.Now().Add(tc.moved))
				if rest := tc.want - 100*time.Millisecond; rest > 0 {
					time.Sleep(rest - time.Nanosecond)
					synctest.Wait()
					if ok, _ := w.woken(); ok {
						t.Fatalf("woken before %v", tc.want)
					}
					time.Sleep(time.Nanosecond)
				}
				synctest.Wait()
				ok, at := w.woken()
				if !ok {
					t.Fatalf("not woken at %v", tc.want)
				}
				if got := at.Sub(start); got != tc.want {
					t.Fatalf("woken at %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestClearedDeadline: clearing a pending deadline keeps a blocked call
// blocked (and its channel valid for a later deadline).
func TestClearedDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		d.Set(time.Now().Add(time.Second))
		w := wait(&d)
		d.Set(time.Time{})
		time.Sleep(time.Hour)
		w.expect(t, &d, false, "a cleared deadline passed")
		d.Set(time.Now().Add(time.Second))
		time.Sleep(time.Second)
		w.expect(t, &d, true, "a deadline set after clearing did not wake the blocked call")
	})
}

// TestRearmAfterExpiry: once passed, a deadline moved into the future (or
// cleared) gives a fresh open channel; the old one stays closed.
func TestRearmAfterExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		d.Set(time.Now().Add(-time.Second))
		old := d.Done()
		if !d.Expired() || !isClosed(old) {
			t.Fatal("a deadline in the past has not expired")
		}
		d.Set(time.Now().Add(-time.Minute)) // still passed: same channel
		if d.Done() != old {
			t.Fatal("moving a passed deadline within the past replaced the channel")
		}
		d.Set(time.Now().Add(time.Second))
		if d.Expired() || !isClosed(old) {
			t.Fatal("a deadline moved into the future: want a new open channel, the old one closed")
		}
		w := wait(&d)
		time.Sleep(time.Second)
		w.expect(t, &d, true, "the re-armed deadline did not pass")
		d.Set(time.Time{})
		if d.Expired() {
			t.Fatal("a passed deadline, cleared, still reads as expired")
		}
	})
}

// TestStaleTimerIgnored: the timer of a deadline moved later must not close
// the channel at the old time, even when it is already firing.
func TestStaleTimerIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		for range 100 {
			d.Set(time.Now().Add(time.Millisecond))
			time.Sleep(time.Millisecond) // the timer is due now
			d.Set(time.Now().Add(time.Hour))
			synctest.Wait()
			if d.Expired() {
				t.Fatal("a deadline moved an hour later expired at the old time")
			}
		}
	})
}

func TestStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var d Timer
		d.Set(time.Now().Add(time.Second))
		d.Stop()
		time.Sleep(time.Hour)
		synctest.Wait()
		if d.Expired() {
			t.Fatal("a stopped deadline passed")
		}
		d.Set(time.Now())
		d.Stop()
		if !d.Expired() {
			t.Fatal("Stop undid a deadline that had passed")
		}
	})
}

// TestConcurrent moves the deadline from several goroutines, on the real
// clock, while others wait on it; run it with -race. At the end a deadline
// in the past must wake every waiter.
func TestConcurrent(t *testing.T) {
	var d Timer
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Go(func() {
			for k := 0; ; k++ {
				select {
				case <-stop:
					return
				default:
				}
				switch (i + k) % 4 {
				case 0:
					d.Set(time.Now().Add(time.Duration(k%50) * time.Microsecond))
				case 1:
					d.Set(time.Time{})
				case 2:
					d.Set(time.Now().Add(time.Hour))
				case 3:
					d.Expired()
				}
			}
		})
	}
	waiters := make(chan struct{}, 8)
	for range 8 {
		go func() {
			for {
				select {
				case <-stop:
					waiters <- struct{}{}
					return
				case <-d.Done():
				}
			}
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	d.Set(time.Now().Add(-time.Second))
	if !d.Expired() {
		t.Fatal("a deadline in the past after concurrent moves has not expired")
	}
	for range 8 {
		<-waiters
	}
}
