package mesh

import (
	"fmt"
	"net"

	"github.com/servald/servald/identity"
)

// Addr is an MDP address: a node's SID and a port on it. It implements
// net.Addr.
type Addr struct {
	SID  identity.SID
	Port uint16
}

// Network returns "mdp".
func (a Addr) Network() string { return "mdp" }

// String returns "SID:port".
func (a Addr) String() string { return fmt.Sprintf("%s:%d", a.SID, a.Port) }

// AddrOf returns the MDP address a net.Addr holds: an Addr, or a non-nil
// *Addr. ok is false for any other address.
func AddrOf(a net.Addr) (Addr, bool) {
	switch v := a.(type) {
	case Addr:
		return v, true
	case *Addr:
		if v != nil {
			return *v, true
		}
	}
	return Addr{}, false
}

var _ net.Addr = Addr{}
