package memnet

// Data path of a datagram:
//
//	Conn.WriteTo ─► Network.send, under n.mu: MTU check, then per destination
//	  sendLocked: cut, bandwidth queue, loss, duplicate, delay/jitter/reorder
//	  (every random decision from n.rng)
//	    ├─ due now ─────────────────────────────────► deliverLocked
//	    └─ due later ─► n.events (heap) ─► run (the one scheduler goroutine)
//	                                           at due time ─► deliverLocked
//	deliverLocked ─► Conn.enqueue (bounded receive queue) ─► Conn.ReadFrom

import (
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"time"
)

// Network is an in-memory datagram network. It is safe for concurrent use.
// It runs one scheduler goroutine, stopped by Close.
type Network struct {
	epoch time.Time     // time origin; n.now() is time since epoch
	done  chan struct{} // closed by Close to stop run
	wake  chan struct{} // cap 1: an event earlier than nextWake was queued
	wg    sync.WaitGroup

	mu       sync.Mutex // guards all fields below; taken before any Conn.mu
	closed   bool
	rng      *rand.Rand
	nextID   int
	mtu      int
	recvPkts int // receive queue bound of every Conn, datagrams
	recvByte int // receive queue bound of every Conn, bytes
	maxBytes int // in-flight bound, bytes
	def      LinkConfig
	conns    map[Addr]*Conn
	order    []*Conn // open Conns by ascending ID: deterministic broadcast
	links    map[pair]*link
	events   eventHeap     // datagrams in flight
	inFlight int           // payload bytes in events
	seq      uint64        // tie-break of events due at the same time: FIFO
	nextWake time.Duration // when run will next look at events; idle if none
}

const idle = time.Duration(math.MaxInt64)

type pair struct{ from, to Addr }

// link is the state of one directed pair. Guarded by Network.mu.
type link struct {
	from, to  Addr
	cfg       *LinkConfig   // own setting; nil means Network.def
	busyUntil time.Duration // when the bandwidth queue will be empty
	stats     LinkStats
}

// New returns a running Network whose random decisions all come from a
// generator seeded with seed. The defaults are a perfect link, an MTU of
// DefaultMTU and receive queues of DefaultRecvPackets / DefaultRecvBytes.
// Close must be called to stop its goroutine.
func New(seed int64) *Network {
	n := &Network{
		epoch:    time.Now(),
		done:     make(chan struct{}),
		wake:     make(chan struct{}, 1),
		rng:      rand.New(rand.NewPCG(uint64(seed), 0x6d656d6e6574)), // "memnet"
		nextID:   1,
		mtu:      DefaultMTU,
		recvPkts: DefaultRecvPackets,
		recvByte: DefaultRecvBytes,
		maxBytes: DefaultInFlightBytes,
		conns:    make(map[Addr]*Conn),
		links:    make(map[pair]*link),
		nextWake: idle,
	}
	n.wg.Add(1)
	go n.run()
	return n
}

func (n *Network) now() time.Duration { return time.Since(n.epoch) }

// Listen returns a new endpoint with a fresh address. After Close it returns
// an endpoint that is already closed.
func (n *Network) Listen() *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := newConn(n, Addr{ID: n.nextID})
	n.nextID++
	if n.closed {
		c.shut()
		return c
	}
	n.conns[c.addr] = c
	n.order = append(n.order, c)
	return c
}

// Close stops the scheduler, drops everything in flight and closes every
// Conn. Later calls return net.ErrClosed.
func (n *Network) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return fmt.Errorf("memnet: close network: %w", net.ErrClosed)
	}
	n.closed = true
	conns := n.order
	n.order = nil
	clear(n.conns)
	n.events = nil
	n.inFlight = 0
	n.mu.Unlock()
	close(n.done)
	n.wg.Wait()
	for _, c := range conns {
		c.shut()
	}
	return nil
}

// Broadcast returns the broadcast address: a datagram written to it is sent
// to every other open endpoint, each through its own link.
func (n *Network) Broadcast() net.Addr { return Addr{ID: BroadcastID} }

// SetMTU sets the largest datagram WriteTo accepts (default DefaultMTU).
// It panics if mtu < 1.
func (n *Network) SetMTU(mtu int) {
	if mtu < 1 {
		panic(fmt.Sprintf("memnet: SetMTU(%d): must be at least 1", mtu))
	}
	n.mu.Lock()
	n.mtu = mtu
	n.mu.Unlock()
}

// SetRecvQueue bounds every Conn's receive queue to packets datagrams and
// bytes payload bytes, whichever is reached first; arrivals beyond it are
// dropped and counted as Overflow. It applies to arrivals from now on. It
// panics if either is < 1.
func (n *Network) SetRecvQueue(packets, bytes int) {
	if packets < 1 || bytes < 1 {
		panic(fmt.Sprintf("memnet: SetRecvQueue(%d, %d): must be at least 1", packets, bytes))
	}
	n.mu.Lock()
	n.recvPkts, n.recvByte = packets, bytes
	n.mu.Unlock()
}

// SetInFlightLimit bounds the payload bytes scheduled for later delivery
// across the whole Network (default DefaultInFlightBytes); a datagram that
// would exceed it is dropped and counted as InFlightDropped. It panics if
// bytes < 1.
func (n *Network) SetInFlightLimit(bytes int) {
	if bytes < 1 {
		panic(fmt.Sprintf("memnet: SetInFlightLimit(%d): must be at least 1", bytes))
	}
	n.mu.Lock()
	n.maxBytes = bytes
	n.mu.Unlock()
}

// SetDefault sets the behaviour of every directed pair that has no setting
// of its own. It applies to datagrams sent from now on (Cut also to those
// in flight). It panics if cfg.Validate fails.
func (n *Network) SetDefault(cfg LinkConfig) {
	mustValid(cfg)
	n.mu.Lock()
	n.def = cfg
	n.mu.Unlock()
}

// SetLink sets the behaviour of the direction from → to, overriding the
// default. It applies to datagrams sent from now on (Cut also to those in
// flight). It panics if an address is not a memnet endpoint address or
// cfg.Validate fails.
func (n *Network) SetLink(from, to net.Addr, cfg LinkConfig) {
	mustValid(cfg)
	f, t := mustEndpoint("SetLink", from), mustEndpoint("SetLink", to)
	n.mu.Lock()
	n.linkLocked(f, t).cfg = &cfg
	n.mu.Unlock()
}

// SetLinkBoth is SetLink in both directions.
func (n *Network) SetLinkBoth(a, b net.Addr, cfg LinkConfig) {
	n.SetLink(a, b, cfg)
	n.SetLink(b, a, cfg)
}

// ClearLink removes the direction's own setting, so it follows the default
// again. Its statistics are kept.
func (n *Network) ClearLink(from, to net.Addr) {
	f, t := mustEndpoint("ClearLink", from), mustEndpoint("ClearLink", to)
	n.mu.Lock()
	if l := n.links[pair{f, t}]; l != nil {
		l.cfg = nil
	}
	n.mu.Unlock()
}

// LinkStats returns the counters of the direction from → to. They are zero
// for a pair that never carried anything. It panics if an address is not a
// memnet address.
func (n *Network) LinkStats(from, to net.Addr) LinkStats {
	f, t := mustAddr("LinkStats", from), mustAddr("LinkStats", to)
	n.mu.Lock()
	defer n.mu.Unlock()
	if l := n.links[pair{f, t}]; l != nil {
		return l.stats
	}
	return LinkStats{}
}

// Stats returns the sum of the counters of all links.
func (n *Network) Stats() LinkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	var s LinkStats
	for _, l := range n.links {
		s.add(l.stats)
	}
	return s
}

// InFlight returns the number of datagram copies scheduled for later
// delivery.
func (n *Network) InFlight() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.events)
}

func mustValid(cfg LinkConfig) {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
}

func mustEndpoint(op string, a net.Addr) Addr {
	v := mustAddr(op, a)
	if v.ID == BroadcastID {
		panic("memnet: " + op + ": the broadcast address has no link of its own")
	}
	return v
}

// linkLocked returns the state of from → to, creating it.
func (n *Network) linkLocked(from, to Addr) *link {
	p := pair{from, to}
	l := n.links[p]
	if l == nil {
		l = &link{from: from, to: to}
		n.links[p] = l
	}
	return l
}

func (n *Network) configLocked(l *link) *LinkConfig {
	if l.cfg != nil {
		return l.cfg
	}
	return &n.def
}

// errMsgSize is returned (wrapped) for a datagram larger than the MTU.
type errMsgSize struct{ size, mtu int }

func (e *errMsgSize) Error() string {
	return fmt.Sprintf("datagram of %d bytes exceeds MTU %d: %v", e.size, e.mtu, syscall.EMSGSIZE)
}

func (e *errMsgSize) Unwrap() error { return syscall.EMSGSIZE }

// send carries one datagram written by c. data is a private copy that the
// network owns from now on.
func (n *Network) send(c *Conn, to Addr, data []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return net.ErrClosed
	}
	if len(data) > n.mtu {
		n.linkLocked(c.addr, to).stats.Oversize++
		c.oversize.Add(1)
		return &errMsgSize{len(data), n.mtu}
	}
	now := n.now()
	if to.ID != BroadcastID {
		n.sendLocked(now, n.linkLocked(c.addr, to), data)
		return nil
	}
	for _, d := range n.order {
		if d != c {
			// Receivers only read the bytes, so copies can share them.
			n.sendLocked(now, n.linkLocked(c.addr, d.addr), data)
		}
	}
	return nil
}

// sendLocked applies l's behaviour to one datagram sent at now.
func (n *Network) sendLocked(now time.Duration, l *link, data []byte) {
	cfg := n.configLocked(l)
	l.stats.Sent++
	if cfg.Cut {
		l.stats.CutDropped++
		return
	}
	depart := now
	if cfg.Bandwidth > 0 {
		start := max(now, l.busyUntil)
		tx := txTime(len(data), cfg.Bandwidth)
		if start-now+tx > txTime(cfg.queueBytes(), cfg.Bandwidth) {
			l.stats.QueueDropped++
			return
		}
		l.busyUntil = start + tx
		depart = l.busyUntil
	}
	if cfg.Loss > 0 && n.rng.Float64() < cfg.Loss {
		l.stats.Lost++
		return
	}
	copies := 1
	if cfg.Duplicate > 0 && n.rng.Float64() < cfg.Duplicate {
		l.stats.Duplicated++
		copies = 2
	}
	for range copies {
		at := depart + cfg.Delay
		if cfg.Jitter > 0 {
			at += time.Duration(n.rng.Int64N(int64(cfg.Jitter)))
		}
		if cfg.Reorder > 0 && n.rng.Float64() < cfg.Reorder {
			at += cfg.reorderDelay()
		}
		if at <= now {
			n.deliverLocked(l, data)
			continue
		}
		if n.inFlight+len(data) > n.maxBytes {
			l.stats.InFlightDropped++
			continue
		}
		n.inFlight += len(data)
		n.seq++
		n.events.push(event{at: at, seq: n.seq, l: l, data: data})
		if at < n.nextWake {
			n.nextWake = at
			select {
			case n.wake <- struct{}{}:
			default:
			}
		}
	}
}

// deliverLocked hands one copy to l's receiver.
func (n *Network) deliverLocked(l *link, data []byte) {
	c := n.conns[l.to]
	if c == nil {
		l.stats.Unreachable++
		return
	}
	switch c.enqueue(l.from, data, n.recvPkts, n.recvByte) {
	case enqueued:
		l.stats.Delivered++
	case overflow:
		l.stats.Overflow++
	case closed:
		l.stats.Unreachable++
	}
}

// run is the scheduler: it delivers each event when it is due.
func (n *Network) run() {
	defer n.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		n.mu.Lock()
		now := n.now()
		for len(n.events) > 0 && n.events[0].at <= now {
			ev := n.events.pop()
			n.inFlight -= len(ev.data)
			if n.configLocked(ev.l).Cut {
				ev.l.stats.CutDropped++
				continue
			}
			n.deliverLocked(ev.l, ev.data)
		}
		wait := time.Duration(-1)
		n.nextWake = idle
		if len(n.events) > 0 {
			n.nextWake = n.events[0].at
			wait = n.nextWake - now
		}
		n.mu.Unlock()
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-n.done:
			return
		case <-n.wake:
		case <-timer.C:
		}
	}
}
