package memnet

// Data path at an endpoint: WriteTo copies the bytes and hands them to
// Network.send; arrivals come in through enqueue (called by the Network
// under its lock) into a bounded FIFO, which ReadFrom drains.

import (
	"bytes"
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/internal/deadline"
)

// Conn is one endpoint of a Network. It implements [net.PacketConn]: it is
// safe for concurrent use, honours deadlines, and after Close every call
// returns an error matching net.ErrClosed.
type Conn struct {
	n    *Network
	addr Addr

	notify  chan struct{} // cap 1: the queue became non-empty
	closing chan struct{} // closed by Close
	rd, wd  deadline.Timer
	closedA atomic.Bool   // set by Close; lets WriteTo skip c.mu
	sent    atomic.Uint64 // ConnStats.Sent
	// oversize is ConnStats.Oversize.
	oversize atomic.Uint64

	mu       sync.Mutex // guards the fields below
	closed   bool
	q        ring
	qBytes   int
	received uint64
	overflow uint64
}

var _ net.PacketConn = (*Conn)(nil)

type datagram struct {
	from Addr
	data []byte
}

func newConn(n *Network, a Addr) *Conn {
	return &Conn{
		n:       n,
		addr:    a,
		notify:  make(chan struct{}, 1),
		closing: make(chan struct{}),
	}
}

type enqueueResult int

const (
	enqueued enqueueResult = iota
	overflow
	closed
)

// enqueue appends an arrival to the receive queue if it fits in maxPkts
// datagrams and maxBytes bytes.
func (c *Conn) enqueue(from Addr, data []byte, maxPkts, maxBytes int) enqueueResult {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return closed
	}
	if c.q.len() >= maxPkts || c.qBytes+len(data) > maxBytes {
		c.overflow++
		c.mu.Unlock()
		return overflow
	}
	c.q.push(datagram{from, data})
	c.qBytes += len(data)
	c.mu.Unlock()
	c.signal()
	return enqueued
}

func (c *Conn) signal() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

// ReadFrom reads the next datagram into p. Like UDP, a datagram longer than
// p is truncated to len(p) and the rest is discarded. The returned address
// is an [Addr]. It blocks until a datagram arrives, the read deadline
// passes (the error then has Timeout() true and matches
// os.ErrDeadlineExceeded), or the Conn is closed (net.ErrClosed).
func (c *Conn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		expired := c.rd.Done()
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return 0, nil, c.opErr("read", nil, net.ErrClosed)
		}
		select {
		case <-expired:
			c.mu.Unlock()
			return 0, nil, c.opErr("read", nil, os.ErrDeadlineExceeded)
		default:
		}
		if c.q.len() > 0 {
			d := c.q.pop()
			c.qBytes -= len(d.data)
			c.received++
			more := c.q.len() > 0
			c.mu.Unlock()
			if more {
				c.signal() // another reader may be waiting
			}
			return copy(p, d.data), d.from, nil
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-expired:
		case <-c.closing:
		}
	}
}

// WriteTo sends a copy of p to addr, which must be an [Addr] (or *Addr),
// possibly the Network's broadcast address. It never blocks: a datagram the
// network cannot carry is dropped and counted, and an address without an
// endpoint is not an error, as with UDP. A datagram longer than the MTU is
// refused with an error matching syscall.EMSGSIZE. If the write deadline has
// passed it returns an error with Timeout() true.
func (c *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.closedA.Load() {
		return 0, c.opErr("write", addr, net.ErrClosed)
	}
	if c.wd.Expired() {
		return 0, c.opErr("write", addr, os.ErrDeadlineExceeded)
	}
	to, ok := toAddr(addr)
	if !ok {
		return 0, c.opErr("write", addr, errBadAddr)
	}
	data := bytes.Clone(p)
	if data == nil {
		data = []byte{}
	}
	if err := c.n.send(c, to, data); err != nil {
		return 0, c.opErr("write", addr, err)
	}
	c.sent.Add(1)
	return len(p), nil
}

var errBadAddr = errors.New("not a memnet address")

// Close closes the endpoint: its address stops receiving, queued datagrams
// are discarded, blocked calls return net.ErrClosed. Later calls to Close
// return net.ErrClosed.
func (c *Conn) Close() error {
	c.n.mu.Lock()
	if c.n.conns[c.addr] == c {
		delete(c.n.conns, c.addr)
		for i, o := range c.n.order {
			if o == c {
				c.n.order = append(c.n.order[:i], c.n.order[i+1:]...)
				break
			}
		}
	}
	c.n.mu.Unlock()
	if !c.shut() {
		return c.opErr("close", nil, net.ErrClosed)
	}
	return nil
}

// shut marks c closed and wakes its blocked readers; it reports whether c
// was open.
func (c *Conn) shut() bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	c.closed = true
	c.closedA.Store(true)
	c.q = ring{}
	c.qBytes = 0
	close(c.closing)
	c.mu.Unlock()
	c.rd.Stop()
	c.wd.Stop()
	return true
}

// LocalAddr returns the endpoint's [Addr].
func (c *Conn) LocalAddr() net.Addr { return c.addr }

// Addr returns the endpoint's address as an [Addr].
func (c *Conn) Addr() Addr { return c.addr }

// SetDeadline sets the read and write deadlines.
func (c *Conn) SetDeadline(t time.Time) error {
	if c.closedA.Load() {
		return c.opErr("set deadline", nil, net.ErrClosed)
	}
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline sets the deadline for ReadFrom calls, pending and future;
// the zero time means none.
func (c *Conn) SetReadDeadline(t time.Time) error {
	if c.closedA.Load() {
		return c.opErr("set deadline", nil, net.ErrClosed)
	}
	c.rd.Set(t)
	return nil
}

// SetWriteDeadline sets the deadline for WriteTo calls; the zero time means
// none. WriteTo never blocks, so it only fails once the deadline has passed.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	if c.closedA.Load() {
		return c.opErr("set deadline", nil, net.ErrClosed)
	}
	c.wd.Set(t)
	return nil
}

// Stats returns the endpoint's counters.
func (c *Conn) Stats() ConnStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ConnStats{
		Sent:        c.sent.Load(),
		Oversize:    c.oversize.Load(),
		Received:    c.received,
		Overflow:    c.overflow,
		Queued:      c.q.len(),
		QueuedBytes: c.qBytes,
	}
}

func (c *Conn) opErr(op string, addr net.Addr, err error) error {
	e := &net.OpError{Op: op, Net: "memnet", Source: c.addr, Err: err}
	if addr != nil {
		e.Addr = addr
	}
	return e
}

// ring is a FIFO of datagrams that grows by doubling.
type ring struct {
	buf  []datagram
	head int
	n    int
}

func (r *ring) len() int { return r.n }

func (r *ring) push(d datagram) {
	if r.n == len(r.buf) {
		nb := make([]datagram, max(16, 2*len(r.buf)))
		k := copy(nb, r.buf[r.head:])
		copy(nb[k:], r.buf[:r.head])
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = d
	r.n++
}

func (r *ring) pop() datagram {
	d := r.buf[r.head]
	r.buf[r.head] = datagram{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	return d
}
