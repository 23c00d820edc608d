// Routing: which neighbour leads towards a SID.
//
// This version knows only neighbours: a SID is reachable when it is a
// neighbour, through the link to it. Multi-hop routing replaces it.
package mesh

import (
	"github.com/servald/servald/identity"
)

type router struct {
	n *Node
}

func newRouter(n *Node) *router { return &router{n: n} }

// neighbourUpLocked is called with n.mu held when a neighbour appears.
func (r *router) neighbourUpLocked(nb *neighbour) {}

// neighbourDownLocked is called with n.mu held when a neighbour is dropped.
func (r *router) neighbourDownLocked(nb *neighbour) {}

// lookupLocked returns the next hop towards sid; n.mu must be held.
func (r *router) lookupLocked(sid identity.SID) *neighbour { return r.n.bySID[sid] }

// nextHop returns the next hop towards sid and the path MTU, or nil.
func (r *router) nextHop(sid identity.SID) (*neighbour, int) {
	r.n.mu.RLock()
	nb := r.lookupLocked(sid)
	r.n.mu.RUnlock()
	if nb == nil {
		return nil, 0
	}
	return nb, int(nb.mtu.Load())
}

// receive handles a ROUTE frame from nb.
func (r *router) receive(nb *neighbour, b []byte) {}

// tick runs once per hello interval.
func (r *router) tick() {
	for _, nb := range r.n.neighbours() {
		nb.link.decay()
	}
}

// mtuChanged is called when a link's MTU changes.
func (r *router) mtuChanged(nb *neighbour) {}

// Route is a reachable node and how it is reached.
type Route struct {
	SID     identity.SID
	NextHop identity.SID
	Hops    int
	Metric  int // path cost: lower is better
	MTU     int // largest frame along the path
}

// Routes lists every reachable node, nearest first.
func (n *Node) Routes() []Route {
	var out []Route
	for _, nb := range n.Neighbours() {
		out = append(out, Route{SID: nb.SID, NextHop: nb.SID, Hops: 1, Metric: 256, MTU: nb.MTU})
	}
	return out
}
