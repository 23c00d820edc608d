package mesh

import (
	"fmt"

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
