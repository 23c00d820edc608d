package mesh

// MDP ports: (SID, port) addressed datagrams.
//
// Packet path: WriteTo builds a DATA frame (MDP header + payload) in a pooled
// buffer and queues it on the link of the next hop towards the destination,
// waiting while that queue is full (until the write deadline or Close); a
// frame to this node goes straight to deliver (relay.go). Frames for a bound
// port arrive in its queue from deliver, in the order the links received
// them (a frame behind a lost one is not held back), and ReadFrom takes them
// off. WriteToWithin does the same with a TypeDataBudget frame, whose budget
// every hop spends (budget.go).

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/deadline"
	"github.com/servald/servald/mesh/internal/wire"
)

// DefaultTTL is the hop limit of a new datagram.
const DefaultTTL = 32

// firstEphemeralPort is where ports chosen by Bind(0) start.
const firstEphemeralPort = 32768

// MaxPayload is the largest MDP payload on any link: a datagram less the
// DATA header, the budget of a WriteToWithin frame (so that both writes
// take the same payloads) and the authentication trailer.
const MaxPayload = maxDatagram - wire.AuthLen - dataOverhead

// dataOverhead is the room a DATA frame's header takes out of a link's MTU,
// for WriteTo and WriteToWithin alike.
const dataOverhead = wire.DataHeaderLen + wire.BudgetLen

type datagram struct {
	src Addr
	bp  *[]byte
	off int // where the payload starts in *bp
}

// PacketConn is a bound MDP port. It implements net.PacketConn with Addr
// addresses. Reads and writes are safe for concurrent use.
type PacketConn struct {
	n    *Node
	port uint16
	q    chan datagram
	done chan struct{}
	once sync.Once

	rd, wd deadline.Timer // read and write deadlines
}

// Bind binds an MDP port; port 0 picks a free ephemeral port.
func (n *Node) Bind(port uint16) (*PacketConn, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed.Load() {
		return nil, net.ErrClosed
	}
	if port == 0 {
		for i := 0; i < 65536-firstEphemeralPort; i++ {
			p := n.nextPort
			n.nextPort++
			if n.nextPort == 0 {
				n.nextPort = firstEphemeralPort
			}
			if n.ports[p] == nil {
				port = p
				break
			}
		}
		if port == 0 {
			return nil, fmt.Errorf("mesh: bind: no free ephemeral port")
		}
	} else if port == RoutingPort {
		return nil, fmt.Errorf("mesh: bind port %d: reserved for routing", port)
	} else if n.ports[port] != nil {
		return nil, fmt.Errorf("mesh: bind port %d: %w", port, ErrPortInUse)
	}
	c := &PacketConn{
		n: n, port: port,
		q:    make(chan datagram, n.cfg.PortQueue),
		done: make(chan struct{}),
	}
	n.ports[port] = c
	return c, nil
}

// LocalAddr returns this node's SID and the bound port.
func (c *PacketConn) LocalAddr() net.Addr { return Addr{SID: c.n.sid, Port: c.port} }

// Node returns the node the port is bound on.
func (c *PacketConn) Node() *Node { return c.n }

// Close unbinds the port; blocked calls return net.ErrClosed.
func (c *PacketConn) Close() error {
	c.once.Do(func() {
		c.n.mu.Lock()
		if c.n.ports[c.port] == c {
			delete(c.n.ports, c.port)
		}
		if c.n.unbound == c {
			c.n.unbound = nil
		}
		c.n.mu.Unlock()
		close(c.done)
		for {
			select {
			case d := <-c.q:
				c.n.bufs.put(d.bp)
			default:
				return
			}
		}
	})
	return nil
}

// ReadFrom reads one datagram; the address is an Addr.
func (c *PacketConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case <-c.done:
		return 0, nil, net.ErrClosed
	default:
	}
	select {
	case d := <-c.q:
		k := copy(p, (*d.bp)[d.off:])
		c.n.bufs.put(d.bp)
		return k, d.src, nil
	case <-c.done:
		return 0, nil, net.ErrClosed
	case <-c.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	}
}

// MaxPayload returns the largest payload that reaches sid in one datagram
// now; it grows as links discover their MTU.
func (c *PacketConn) MaxPayload(sid identity.SID) int { return c.n.maxPayload(sid) }

// PeerAddr returns the address of port on node sid: Addr{sid, port}. With
// FromNode it makes a PacketConn an msp.Transport.
func (c *PacketConn) PeerAddr(sid identity.SID, port uint16) net.Addr {
	return Addr{SID: sid, Port: port}
}

// FromNode reports whether a datagram that ReadFrom returned with address
// addr was sent by node sid: the mesh names the source node of every
// datagram (unauthenticated: the layer above checks signatures).
func (c *PacketConn) FromNode(addr net.Addr, sid identity.SID) bool {
	a, ok := addr.(Addr)
	return ok && a.SID == sid
}

// NoProgress tells the node that a session with node sid saw nothing it
// sent acknowledged for several round trips while a route existed (msp
// calls it; see msp.Transport). If another neighbour, not marked, also
// leads to sid, routing avoids the next hop in use towards sid for 30 s
// (doubling, up to 16 min, when it fails again soon after the mark ends)
// and moves the route; otherwise (sid is gone, or no other path exists, or
// sid is the next hop itself) nothing changes. It reports whether the
// route moved.
func (c *PacketConn) NoProgress(sid identity.SID) bool { return c.n.router.noProgress(sid) }

// pathError is the type of ErrNoRoute and ErrTooLarge. Its methods let
// code that is generic over transports (package msp) tell the two apart
// with errors.As on an interface, without importing mesh.
type pathError struct {
	msg     string
	noRoute bool // ErrNoRoute, else ErrTooLarge
}

func (e *pathError) Error() string { return e.msg }

// NoRoute reports whether no path to the destination is known (yet): a
// later write may succeed.
func (e *pathError) NoRoute() bool { return e.noRoute }

// TooLarge reports whether the datagram did not fit the path's MTU: a
// smaller one may pass (see MaxPayload).
func (e *pathError) TooLarge() bool { return !e.noRoute }

// WriteTo sends p to addr (an Addr). It waits while the next hop's queue is
// full; unreachable destinations give ErrNoRoute, oversized ones ErrTooLarge.
func (c *PacketConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return c.write(p, addr, 0, false)
}

// WriteToWithin sends p like WriteTo, but the datagram may be delivered
// only within budget of now: each hop spends from the budget the time it
// held the frame plus the link's one-way delay estimate, resends it only
// while budget remains, and drops it (counted) when the budget runs out.
//
// A datagram dropped for its deadline is counted in Stats.Late of the node
// that dropped it and is not an error of the write (as a datagram lost on
// the way is not), even when that node is this one: a budget of zero or
// less, or one spent waiting for room in the next hop's queue. Budgets are
// carried in microseconds, up to about 71 minutes (longer ones are cut to
// that).
func (c *PacketConn) WriteToWithin(p []byte, addr net.Addr, budget time.Duration) (int, error) {
	return c.write(p, addr, budget, true)
}

// write is WriteTo, or WriteToWithin when timed.
func (c *PacketConn) write(p []byte, addr net.Addr, budget time.Duration, timed bool) (int, error) {
	a, ok := AddrOf(addr)
	if !ok {
		return 0, fmt.Errorf("mesh: write to %v: not an MDP address", addr)
	}
	select {
	case <-c.done:
		return 0, net.ErrClosed
	default:
	}
	n := c.n
	var due time.Time
	if timed {
		if budget < time.Microsecond {
			n.stats.late.Add(1)
			return len(p), nil
		}
		due = time.Now().Add(budget)
	}
	h := wire.DataHeader{TTL: DefaultTTL, Dst: a.SID, Src: n.sid, DstPort: a.Port, SrcPort: c.port,
		Timed: timed, Budget: budgetMicros(budget)}
	bp := n.bufs.get(h.Len() + len(p))
	b := wire.AppendData((*bp)[:0], &h)
	*bp = append(b, p...)
	if a.SID == n.sid {
		n.deliver(bp)
		return len(p), nil
	}
	nb, mtu := n.router.nextHop(a.SID)
	if nb == nil {
		n.bufs.put(bp)
		n.stats.noRoute.Add(1)
		return 0, n.noRouteError(a.SID)
	}
	if len(p) > mtu-dataOverhead {
		n.bufs.put(bp)
		return 0, fmt.Errorf("mesh: write %d bytes to %s: %w (max %d)", len(p), a.SID.Short(), ErrTooLarge, mtu-dataOverhead)
	}
	if err := nb.link.enqueueLocal(bp, due, c.wd.Done(), c.done); err != nil {
		n.bufs.put(bp)
		if errors.Is(err, errLate) {
			return len(p), nil
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
			select {
			case <-c.done:
				return 0, net.ErrClosed
			default:
			}
		}
		return 0, fmt.Errorf("mesh: write to %s: %w", a.SID.Short(), err)
	}
	return len(p), nil
}

// SetDeadline sets the read and write deadlines.
func (c *PacketConn) SetDeadline(t time.Time) error {
	c.rd.Set(t)
	c.wd.Set(t)
	return nil
}

// SetReadDeadline sets the read deadline.
func (c *PacketConn) SetReadDeadline(t time.Time) error { c.rd.Set(t); return nil }

// SetWriteDeadline sets the write deadline.
func (c *PacketConn) SetWriteDeadline(t time.Time) error { c.wd.Set(t); return nil }

// maxPayload is the largest MDP payload that fits the path to sid.
func (n *Node) maxPayload(sid identity.SID) int {
	if sid == n.sid {
		return MaxPayload
	}
	_, mtu := n.router.nextHop(sid)
	if mtu == 0 {
		return baseMTU - dataOverhead
	}
	return mtu - dataOverhead
}
