package memnet

import (
	"net"
	"strconv"
)

// BroadcastID is the ID of the broadcast address returned by
// [Network.Broadcast]. Endpoint IDs start at 1, so the zero Addr is never a
// real endpoint and never the broadcast address.
const BroadcastID = -1

// Addr is the address of a memnet endpoint. It is comparable and may be used
// as a map key. It implements [net.Addr].
type Addr struct {
	// ID is the endpoint number, unique within its Network, starting at 1.
	ID int
}

var _ net.Addr = Addr{}

// Network returns "memnet".
func (a Addr) Network() string { return "memnet" }

// String returns "mem:ID", or "mem:broadcast" for the broadcast address.
func (a Addr) String() string {
	if a.ID == BroadcastID {
		return "mem:broadcast"
	}
	return "mem:" + strconv.Itoa(a.ID)
}

// toAddr converts a net.Addr given by a caller into an Addr.
func toAddr(a net.Addr) (Addr, bool) {
	switch v := a.(type) {
	case Addr:
		return v, true
	case *Addr:
		if v == nil {
			return Addr{}, false
		}
		return *v, true
	}
	return Addr{}, false
}

// mustAddr is toAddr for configuration calls, where a foreign address is a
// programming error in the test.
func mustAddr(op string, a net.Addr) Addr {
	v, ok := toAddr(a)
	if !ok {
		panic("memnet: " + op + ": not a memnet address: " + addrString(a))
	}
	return v
}

func addrString(a net.Addr) string {
	if a == nil {
		return "<nil>"
	}
	return a.Network() + "/" + a.String()
}
