package memnet

import (
	"encoding/binary"
	"errors"
	"flag"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

var seedFlag = flag.Int64("memnet.seed", 0, "seed for memnet tests (0: random, logged)")

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newNet returns a Network with a logged seed, closed at the end of the test.
func newNet(t testing.TB) *Network {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Int64() // the global generator: not frozen by synctest
	}
	t.Logf("seed %d (rerun with -memnet.seed=%d)", seed, seed)
	n := New(seed)
	t.Cleanup(func() { n.Close() })
	return n
}

// payload makes a datagram of size bytes (>= 16) carrying seq and the send
// time relative to epoch.
func payload(size int, seq int, epoch time.Time) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, uint64(seq))
	binary.BigEndian.PutUint64(b[8:], uint64(time.Since(epoch)))
	return b
}

type arrival struct {
	seq    int
	sentAt time.Duration
	at     time.Duration
	from   Addr
	size   int
}

func (a arrival) delay() time.Duration { return a.at - a.sentAt }

// recorder reads a Conn in a goroutine and records what arrives.
type recorder struct {
	c     *Conn
	epoch time.Time
	done  chan struct{}
	more  chan struct{} // cap 1: something arrived

	mu  sync.Mutex
	got []arrival
	err error
}

func record(t testing.TB, c *Conn, epoch time.Time) *recorder {
	t.Helper()
	r := &recorder{c: c, epoch: epoch, done: make(chan struct{}), more: make(chan struct{}, 1)}
	go r.run()
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *recorder) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := r.c.ReadFrom(buf)
		if err != nil {
			r.mu.Lock()
			r.err = err
			r.mu.Unlock()
			return
		}
		a := arrival{at: time.Since(r.epoch), from: from.(Addr), size: n}
		if n >= 16 {
			a.seq = int(binary.BigEndian.Uint64(buf))
			a.sentAt = time.Duration(binary.BigEndian.Uint64(buf[8:]))
		}
		r.mu.Lock()
		r.got = append(r.got, a)
		r.mu.Unlock()
		select {
		case r.more <- struct{}{}:
		default:
		}
	}
}

// stop ends the reader (by an expired read deadline) and returns what it
// recorded. Datagrams still queued are left in the Conn.
func (r *recorder) stop() []arrival {
	_ = r.c.SetReadDeadline(time.Unix(1, 0))
	<-r.done
	_ = r.c.SetReadDeadline(time.Time{})
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.got
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// waitN waits until n datagrams arrived or timeout passed (real time).
func (r *recorder) waitN(t testing.TB, n int, timeout time.Duration) {
	t.Helper()
	tm := time.NewTimer(timeout)
	defer tm.Stop()
	for r.count() < n {
		select {
		case <-r.more:
		case <-r.done:
			t.Fatalf("reader stopped after %d of %d: %v", r.count(), n, r.err)
		case <-tm.C:
			t.Fatalf("only %d of %d datagrams arrived within %v", r.count(), n, timeout)
		}
	}
}

// drain reads every datagram queued at c without blocking.
func drain(t testing.TB, c *Conn) []arrival {
	t.Helper()
	var out []arrival
	buf := make([]byte, 65536)
	for c.Stats().Queued > 0 {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("drain: %v", err)
		}
		a := arrival{from: from.(Addr), size: n}
		if n >= 16 {
			a.seq = int(binary.BigEndian.Uint64(buf))
		}
		out = append(out, a)
	}
	return out
}

// within fails unless got is within k standard deviations of the binomial
// mean p*n.
func within(t testing.TB, what string, got, n int, p float64, k float64) {
	t.Helper()
	mean := p * float64(n)
	sd := math.Sqrt(float64(n) * p * (1 - p))
	if math.Abs(float64(got)-mean) > k*sd+0.5 {
		t.Errorf("%s: got %d of %d (%.4f), want %.4f ± %.1f sd (%.1f)", what, got, n, float64(got)/float64(n), p, k, k*sd)
	}
}

// checkBalance checks the accounting identity of a quiescent link.
func checkBalance(t testing.TB, what string, s LinkStats) {
	t.Helper()
	in := s.Sent + s.Duplicated
	out := s.Delivered + s.Lost + s.CutDropped + s.QueueDropped + s.InFlightDropped + s.Unreachable + s.Overflow
	if in != out {
		t.Errorf("%s: Sent+Duplicated = %d, but outcomes add up to %d: %+v", what, in, out, s)
	}
}

func isTimeout(err error) bool {
	var ne interface{ Timeout() bool }
	return errors.As(err, &ne) && ne.Timeout() && errors.Is(err, os.ErrDeadlineExceeded)
}
