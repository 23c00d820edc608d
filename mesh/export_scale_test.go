package mesh

import "github.com/servald/servald/identity"

// Reachable counts the nodes n has a next hop towards (routes and
// neighbours), and reports whether sid is one of them. Unlike Routes it
// neither allocates a list nor sorts, so the scale benchmarks can poll 500
// nodes with it.
func Reachable(n *Node, sid identity.SID) (count int, found bool) {
	n.mu.RLock()
	r := n.router
	r.mu.Lock()
	for o, rt := range r.routes {
		if rt.via != nil || n.bySID[o] != nil {
			count++
			found = found || o == sid
		}
	}
	for s := range n.bySID {
		if r.routes[s] == nil {
			count++
			found = found || s == sid
		}
	}
	r.mu.Unlock()
	n.mu.RUnlock()
	return count, found
}

// ControlKinds names the parts of ControlBytesOut and AckBytesOut that
// ControlBreakdown counts, in its order.
var ControlKinds = []string{"hello", "probe", "table", "repair", "trig", "ihu", "ack", "sig"}

// ControlBreakdown is what n's control bytes went to, in ControlKinds'
// order: hellos, MTU probes, routing messages by cause (periodic tables,
// repair tables, triggered updates, IHU alone), per-hop acknowledgements,
// and of the routing messages, the signatures' bytes.
func ControlBreakdown(n *Node) []uint64 {
	c := &n.stats
	return []uint64{c.helloOut.Load(), c.probeOut.Load(),
		c.routeOut[routeTable].Load(), c.routeOut[routeRepair].Load(),
		c.routeOut[routeTriggered].Load(), c.routeOut[routeIHU].Load(),
		c.ackOut.Load(), c.routeSigOut.Load()}
}
