package mesh

import "errors"

// SetUnbound directs the datagrams addressed to this node on MDP ports that
// nothing is bound to into c, a port bound on this node (its ReadFrom
// returns them with their source address; the port they were sent to is
// not told), so that the node can answer them, for instance with a
// refusal. nil, or closing c, drops them again (counted in
// Stats.NoPort either way). c bound on another node is an error.
func (n *Node) SetUnbound(c *PacketConn) error {
	if c != nil && c.n != n {
		return errForeignPort
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if c != nil && n.ports[c.port] != c {
		return errForeignPort // closed already
	}
	n.unbound = c
	return nil
}

var errForeignPort = errors.New("mesh: SetUnbound: not an open port of this node")
