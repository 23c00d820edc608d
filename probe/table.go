package probe

import (
	"net"

	"github.com/servald/servald/mesh"
)

// PacketConn is an MDP port: *mesh.PacketConn, a daemon.Port, or any
// msp.Transport. Addresses are mesh.Addr.
type PacketConn interface {
	ReadFrom(p []byte) (int, net.Addr, error)
	WriteTo(p []byte, addr net.Addr) (int, error)
	Close() error
}

// Table reads a node's routing table. instance.Mesh implements it; NodeTable
// adapts a *mesh.Node, Funcs anything else (a daemon.Client).
type Table interface {
	Routes() ([]mesh.Route, error)
	Neighbours() ([]mesh.Neighbour, error)
}

// NodeTable is the Table of a node running in this process.
func NodeTable(n *mesh.Node) Table { return nodeTable{n} }

type nodeTable struct{ n *mesh.Node }

func (t nodeTable) Routes() ([]mesh.Route, error)         { return t.n.Routes(), nil }
func (t nodeTable) Neighbours() ([]mesh.Neighbour, error) { return t.n.Neighbours(), nil }

// Funcs is a Table made of two functions, e.g. a daemon.Client's Routes and
// Neighbours with a context bound in.
type Funcs struct {
	RoutesFunc     func() ([]mesh.Route, error)
	NeighboursFunc func() ([]mesh.Neighbour, error)
}

// Routes calls RoutesFunc.
func (f Funcs) Routes() ([]mesh.Route, error) { return f.RoutesFunc() }

// Neighbours calls NeighboursFunc.
func (f Funcs) Neighbours() ([]mesh.Neighbour, error) { return f.NeighboursFunc() }
