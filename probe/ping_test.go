package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/mesh"
)

func TestSummaryAsPing8(t *testing.T) {
	var acc rtts
	for _, d := range []time.Duration{10, 20, 30} {
		acc.add(d * time.Millisecond)
	}
	s := Summary{Sent: 4, Received: 3, Time: 3005 * time.Millisecond}
	acc.fill(&s)
	// mdev = sqrt((100+400+900)/3 − 20²) ms = 8.165 ms
	want := "4 packets transmitted, 3 received, 25% packet loss, time 3005ms\n" +
		"rtt min/avg/max/mdev = 10.000/20.000/30.000/8.165 ms"
	if got := s.String(); got != want {
		t.Fatalf("summary:\n%s\nwant\n%s", got, want)
	}
	none := Summary{Sent: 3, Errors: 1, Duplicates: 2, Time: time.Second}
	if got := none.String(); got != "3 packets transmitted, 0 received, +2 duplicates, +1 errors, 100% packet loss, time 1000ms" {
		t.Fatalf("summary without replies: %q", got)
	}
	if (Summary{}).Loss() != 0 {
		t.Fatal("loss of nothing sent")
	}
}

func TestPingConfigValidate(t *testing.T) {
	d := DefaultPingConfig()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []PingConfig{
		{Count: -1, Interval: time.Second},
		{Interval: time.Microsecond},
		{Interval: time.Second, Size: -1},
		{Interval: time.Second, Size: MaxData + 1},
		{Interval: time.Second, Wait: -1},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	// RunPing refuses it too, and closes the port it was given.
	pc := newLoopConn()
	if _, err := RunPing(context.Background(), pc, sid(1), PingConfig{Size: -1}, nil); err == nil || !pc.isClosed() {
		t.Fatalf("RunPing with a bad size: %v, port closed %v", err, pc.isClosed())
	}
}

// loopConn is a port that answers every echo request itself, with hops 1,
// once or twice (dup), and whose writes may fail.
type loopConn struct {
	mu      sync.Mutex
	q       [][]byte
	closed  bool
	dup     bool
	failAll error
	wake    chan struct{}
}

func (c *loopConn) isClosed() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.closed }

func (c *loopConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	if c.failAll != nil {
		return 0, c.failAll
	}
	e, _, err := ParseEcho(b)
	if err != nil {
		return len(b), nil
	}
	e.Reply, e.Hops = true, 1
	c.q = append(c.q, e.Append(nil))
	if c.dup {
		c.q = append(c.q, e.Append(nil))
	}
	c.signal()
	return len(b), nil
}

func (c *loopConn) signal() { // under mu, not closed
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *loopConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, nil, net.ErrClosed
		}
		if len(c.q) > 0 {
			b := c.q[0]
			c.q = c.q[1:]
			c.mu.Unlock()
			return copy(p, b), mesh.Addr{SID: sid(1), Port: EchoPort}, nil
		}
		c.mu.Unlock()
		<-c.wake
	}
}

func (c *loopConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.wake)
	}
	return nil
}

func newLoopConn() *loopConn { return &loopConn{wake: make(chan struct{}, 1)} }

func TestPingDuplicatesAndErrors(t *testing.T) {
	pc := newLoopConn()
	pc.dup = true
	var dups int
	sum, err := RunPing(context.Background(), pc, sid(1), PingConfig{Count: 3, Interval: time.Millisecond}, func(r Reply) {
		if r.Dup {
			dups++
		}
	})
	// The run ends when all three are answered, maybe before the last
	// duplicate was read.
	if err != nil || sum.Sent != 3 || sum.Received != 3 || sum.Duplicates != dups || dups < 2 {
		t.Fatalf("duplicated replies: %+v, %d dups seen, %v", sum, dups, err)
	}

	// Writes failing for another reason than a missing route: every
	// request is tried, and the error says what failed.
	pc = newLoopConn()
	pc.failAll = errors.New("mesh: datagram too large for the path")
	var failed int
	sum, err = RunPing(context.Background(), pc, sid(1), PingConfig{Count: 3, Interval: time.Millisecond}, func(r Reply) {
		if r.Err != nil {
			failed++
		}
	})
	if !errors.Is(err, ErrNoReply) || !strings.Contains(err.Error(), "too large") || sum.Sent != 3 || sum.Errors != 3 || failed != 3 {
		t.Fatalf("failing writes: %+v, %d failures reported, %v", sum, failed, err)
	}

	// A cancelled run returns what it has.
	pc = newLoopConn()
	ctx, cancel := context.WithCancel(context.Background())
	sum, err = RunPing(ctx, pc, sid(1), PingConfig{Interval: time.Millisecond}, func(r Reply) {
		if r.Seq == 5 {
			cancel()
		}
	})
	if err != nil || sum.Received < 5 || !pc.isClosed() {
		t.Fatalf("cancelled run: %+v, %v, closed %v", sum, err, pc.isClosed())
	}
}

func TestFormats(t *testing.T) {
	from := sid(0x4F)
	tests := []struct {
		got  fmt.Stringer
		want string
	}{
		{Reply{Seq: 1, From: from, Size: 64, Hops: 3, RTT: 2414 * time.Microsecond}, "64 bytes from 4F4F4F4F: seq=1 hops=3 time=2.41 ms"},
		{Reply{Seq: 2, From: from, Size: 8, Hops: HopsUnknown, RTT: 123456 * time.Nanosecond, Dup: true}, "8 bytes from 4F4F4F4F: seq=2 hops=? time=0.123 ms (DUP!)"},
		{Reply{Seq: 3, From: from, Size: 64, Hops: 4, RTT: 24130 * time.Microsecond}, "64 bytes from 4F4F4F4F: seq=3 hops=4 time=24.1 ms"},
		{Reply{Seq: 4, From: from, Size: 64, Hops: 4, RTT: 241300 * time.Microsecond}, "64 bytes from 4F4F4F4F: seq=4 hops=4 time=241 ms"},
		{Reply{Seq: 5, Err: errors.New("mesh: no route")}, "seq=5: mesh: no route"},
		{Hop{N: 2, SID: from, Addr: "192.0.2.7:4110", RTT: 2414 * time.Microsecond, Hops: 2}, " 2  4F4F4F4F  192.0.2.7:4110  2.41 ms"},
		{Hop{N: 12, SID: from, RTT: 30 * time.Millisecond}, "12  4F4F4F4F  -  30.0 ms"},
		{Hop{N: 3, SID: from, Addr: "mem:4", Lost: true}, " 3  4F4F4F4F  mem:4  *"},
	}
	for _, tt := range tests {
		if got := tt.got.String(); got != tt.want {
			t.Errorf("%+v:\n got %q\nwant %q", tt.got, got, tt.want)
		}
	}
}
