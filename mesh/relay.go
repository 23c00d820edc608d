package mesh

// The relay decision: where a DATA frame goes once it is here.
//
// Packet path: a link's receiveData (on the node's read loop) hands every
// new DATA frame on in the order frames arrive, not necessarily in sequence
// order; so does a local WriteTo addressed to this node. deliver parses the
// header: a frame addressed to this node goes to the bound port's queue
// (for an unbound port, to the SetUnbound port's, if any; dropped when
// there is none or the queue is full), read by ReadFrom;
// any other has its TTL lowered and is queued on the link of the next hop
// towards its destination (dropped when there is none, it is too large for
// that path, or that link's queue is full: the read loop never waits).
// A frame with a budget (TypeDataBudget) that arrives with none left is
// dropped (Late); one relayed carries its budget on as a local deadline
// (budget.go).

import (
	"time"

	"github.com/servald/servald/mesh/internal/wire"
)

// deliver hands a frame on, to a local port or to the next hop.
// It owns bp.
func (n *Node) deliver(bp *[]byte) {
	h, _, err := wire.ParseData(*bp)
	if err != nil {
		n.stats.malformed.Add(1)
		n.bufs.put(bp)
		return
	}
	var due time.Time
	if h.Timed {
		if h.Budget == 0 {
			n.stats.late.Add(1)
			n.bufs.put(bp)
			return
		}
		due = time.Now().Add(time.Duration(h.Budget) * time.Microsecond)
	}
	if h.Dst == n.sid {
		n.mu.RLock()
		c := n.ports[h.DstPort]
		if c == nil {
			n.stats.noPort.Add(1)
			c = n.unbound
		}
		n.mu.RUnlock()
		if c == nil {
			n.bufs.put(bp)
			return
		}
		select {
		case c.q <- datagram{src: Addr{SID: h.Src, Port: h.SrcPort}, bp: bp, off: h.Len()}:
			n.stats.delivered.Add(1)
		default:
			n.stats.portDrops.Add(1)
			n.bufs.put(bp)
		}
		return
	}
	if h.TTL <= 1 {
		n.stats.ttlExpired.Add(1)
		n.bufs.put(bp)
		return
	}
	(*bp)[wire.TTLOffset] = h.TTL - 1
	nb, mtu := n.router.nextHop(h.Dst)
	switch {
	case nb == nil:
		n.stats.noRoute.Add(1)
		n.bufs.put(bp)
	case len(*bp) > mtu:
		n.stats.tooBig.Add(1)
		n.bufs.put(bp)
	default:
		if err := nb.link.enqueueRelay(bp, due); err != nil {
			n.stats.relayDrops.Add(1)
			n.bufs.put(bp)
			return
		}
		n.stats.relayed.Add(1)
	}
}
