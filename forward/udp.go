package forward

// UDP flows through a tunnel's datagrams. Each local client address is a
// flow with a number; its datagrams cross the tunnel one by one as
// session datagrams (never through a stream), each behind its flow number.
//
//	connect: client ─► local UDP socket ─► flow (by client address) ─► SendDatagram(id | payload)
//	         ReceiveDatagram ─► flow (by id) ─► local UDP socket ─► that client
//	listen:  receive (session, id | payload) ─► flow (by session and id) ─► its own UDP socket, connected to the target
//	         that socket ─► SendDatagram(id | reply) in the flow's session
//
// One goroutine reads the local socket (connect) or the tunnel (listen);
// replies come from one goroutine per session (connect) or per flow
// (listen); a sweeper forgets flows idle for Idle. Flows are bounded:
// beyond MaxFlows the one idle longest is forgotten (counted Evicted); on
// the listening side, of the session holding the most flows.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// UDPPrefix marks UDP in the argument of --forward: "udp:[HOST:]PORT".
const UDPPrefix = "udp:"

// Defaults of UDPFlows.
const (
	DefaultDeadline = 200 * time.Millisecond // --deadline
	DefaultUDPIdle  = 60 * time.Second       // --udp-idle
	DefaultMaxFlows = 1024
)

// maxUDP is the largest UDP payload read or written.
const maxUDP = 65535

// udpSocketBuffer is the receive buffer asked for on the flows' UDP
// sockets (the kernel may give less: net.core.rmem_max), so that a burst
// of a fast sender waits there rather than being dropped.
const udpSocketBuffer = 4 << 20

// growReadBuffer asks for udpSocketBuffer on c if it is a UDP socket.
func growReadBuffer(c any) {
	if u, ok := c.(interface{ SetReadBuffer(int) error }); ok {
		u.SetReadBuffer(udpSocketBuffer)
	}
}

// ParseUDPTarget parses the argument of --forward when it names UDP,
// "udp:[HOST:]PORT", into "host:port" (host as in ParseTarget); ok is
// false when s does not start with "udp:".
func ParseUDPTarget(s string) (addr string, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, UDPPrefix)
	if !ok {
		return "", false, nil
	}
	addr, err = ParseTarget(rest)
	if err != nil {
		// ParseTarget speaks of TCP ports.
		err = fmt.Errorf("forward: bad UDP target %q: %s", s, strings.ReplaceAll(err.Error(), "TCP port", "UDP port"))
	}
	return addr, true, err
}

// DatagramSession is what flows travel in: an MSP session.
type DatagramSession interface {
	// SendDatagram sends p as one datagram, delivered only within budget.
	SendDatagram(p []byte, budget time.Duration) error
	// MaxDatagram is the largest p SendDatagram carries now.
	MaxDatagram() int
	// Done is closed when the session has ended.
	Done() <-chan struct{}
}

// DialedSession is a connecting side's session: it also receives.
type DialedSession interface {
	DatagramSession
	ReceiveDatagram(ctx context.Context) ([]byte, error)
}

// appendFlow frames a flow's datagram: its id as a varint, then payload.
func appendFlow(b []byte, id uint64, payload []byte) []byte {
	return append(binary.AppendUvarint(b, id), payload...)
}

// parseFlow decodes a flow's datagram: its id and payload (aliasing b).
func parseFlow(b []byte) (uint64, []byte, error) {
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New("forward: UDP flow datagram without a flow id")
	}
	return id, b[n:], nil
}

// UDPFlows carries UDP flows through sessions' datagrams: ServeConnect on
// the connecting side, ServeListen on the listening side. The zero value
// takes the defaults. Its counters are safe to read while it serves.
type UDPFlows struct {
	// Deadline is each datagram's budget: delivered within it or dropped
	// (DefaultDeadline if 0; negative: no deadline).
	Deadline time.Duration
	// Idle forgets a flow after this long without a datagram either way
	// (DefaultUDPIdle if 0).
	Idle time.Duration
	// MaxFlows bounds the flows held at once (DefaultMaxFlows if 0).
	MaxFlows int
	// Logger receives logs; nil is silent.
	Logger *slog.Logger

	in, out, tooLarge, unknown, sendErrors atomic.Uint64
	opened, evicted, expired               atomic.Uint64
	largest                                atomic.Int64
	flows                                  atomic.Int64
}

// UDPStats are the counters of a UDPFlows.
type UDPStats struct {
	In       uint64 // datagrams from local UDP sockets sent into the tunnel
	Out      uint64 // datagrams from the tunnel written to local UDP sockets
	TooLarge uint64 // datagrams dropped: larger than the path carries
	Largest  int    // the largest datagram dropped as too large
	Unknown  uint64 // datagrams from the tunnel for a flow not (or no longer) held
	// SendErrors are datagrams the session refused (it ended, say).
	SendErrors uint64
	Flows      int    // flows held now
	Opened     uint64 // flows started
	Evicted    uint64 // flows forgotten to make room (MaxFlows)
	Expired    uint64 // flows forgotten after Idle
}

// Stats returns the counters.
func (u *UDPFlows) Stats() UDPStats {
	return UDPStats{
		In: u.in.Load(), Out: u.out.Load(), TooLarge: u.tooLarge.Load(), Largest: int(u.largest.Load()),
		Unknown: u.unknown.Load(), SendErrors: u.sendErrors.Load(), Flows: int(u.flows.Load()),
		Opened: u.opened.Load(), Evicted: u.evicted.Load(), Expired: u.expired.Load(),
	}
}

func (u *UDPFlows) deadline() time.Duration {
	switch {
	case u.Deadline == 0:
		return DefaultDeadline
	case u.Deadline < 0:
		return 0
	}
	return u.Deadline
}

func (u *UDPFlows) idle() time.Duration {
	if u.Idle <= 0 {
		return DefaultUDPIdle
	}
	return u.Idle
}

func (u *UDPFlows) maxFlows() int {
	if u.MaxFlows <= 0 {
		return DefaultMaxFlows
	}
	return u.MaxFlows
}

func (u *UDPFlows) log() *slog.Logger {
	if u.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return u.Logger
}

// send frames payload for flow id and sends it in s; one larger than s
// carries is dropped and counted, and the largest such size logged.
func (u *UDPFlows) send(s DatagramSession, buf []byte, id uint64, payload []byte) []byte {
	buf = appendFlow(buf[:0], id, payload)
	if limit := s.MaxDatagram(); len(buf) > limit {
		u.tooLarge.Add(1)
		for n := int64(len(payload)); ; {
			cur := u.largest.Load()
			if n <= cur {
				break
			}
			if u.largest.CompareAndSwap(cur, n) {
				u.log().Info("forward: UDP datagram larger than the tunnel carries: dropped (logged again only for a larger one)",
					"size", n, "largest_that_fits", max(limit-(len(buf)-len(payload)), 0))
				break
			}
		}
		return buf
	}
	if err := s.SendDatagram(buf, u.deadline()); err != nil {
		u.sendErrors.Add(1)
		u.log().Debug("forward: UDP datagram not sent", "err", err)
		return buf
	}
	u.in.Add(1)
	return buf
}

// flowTable holds flows by key, with the time each was last active; its
// methods are safe for concurrent use.
type flowTable[K comparable, F any] struct {
	mu    sync.Mutex
	flows map[K]*tableEntry[F] // guarded by mu
}

type tableEntry[F any] struct {
	f    F
	last time.Time
}

func newFlowTable[K comparable, F any]() *flowTable[K, F] {
	return &flowTable[K, F]{flows: map[K]*tableEntry[F]{}}
}

// get returns k's flow and marks it active.
func (t *flowTable[K, F]) get(k K, now time.Time) (F, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.flows[k]
	if !ok {
		var zero F
		return zero, false
	}
	e.last = now
	return e.f, true
}

// add holds f under k. When the table holds max flows, one goes first and
// is returned: the one idle longest of the group (group(key); nil: all
// one group) that holds the most flows, k's group counting k, so that on
// a tie k's group gives up one of its own. A group that floods the table
// thus takes flows from itself, not from groups that hold fewer.
func (t *flowTable[K, F]) add(k K, f F, now time.Time, max int, group func(K) any) (evicted F, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.flows) >= max {
		if group == nil {
			group = func(K) any { return nil }
		}
		count := map[any]int{group(k): 1}
		for key := range t.flows {
			count[group(key)]++
		}
		most := group(k)
		for g, n := range count {
			if n > count[most] {
				most = g
			}
		}
		var oldK K
		var old *tableEntry[F]
		for key, e := range t.flows {
			if group(key) == most && (old == nil || e.last.Before(old.last)) {
				oldK, old = key, e
			}
		}
		if old != nil {
			delete(t.flows, oldK)
			evicted, ok = old.f, true
		}
	}
	t.flows[k] = &tableEntry[F]{f: f, last: now}
	return evicted, ok
}

// remove removes and returns the flows for which drop is true.
func (t *flowTable[K, F]) remove(drop func(K, F, time.Time) bool) []F {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []F
	for k, e := range t.flows {
		if drop(k, e.f, e.last) {
			delete(t.flows, k)
			out = append(out, e.f)
		}
	}
	return out
}

// sweep calls forget every tick until ctx ends.
func sweep(ctx context.Context, every time.Duration, forget func(now time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case now := <-t.C:
			forget(now)
		case <-ctx.Done():
			return
		}
	}
}

// sweepEvery is how often idle flows are looked for: a quarter of idle,
// from 10 ms to 5 s.
func sweepEvery(idle time.Duration) time.Duration {
	return min(max(idle/4, 10*time.Millisecond), 5*time.Second)
}
