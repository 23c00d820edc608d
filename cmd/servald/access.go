package main

import (
	"context"
	"net"

	"github.com/spf13/pflag"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// meshAccess is how a command reaches the mesh: through a node embedded in
// its own process, or through the instance's running daemon.
type meshAccess interface {
	Identity() *identity.Identity
	// UDPAddr is the node's UDP socket address.
	UDPAddr() net.Addr
	// Bind binds an MDP port (0: any free one).
	Bind(port uint16) (msp.Transport, error)
	WaitReachable(ctx context.Context, sid identity.SID) error
	Routes() []mesh.Route
	Neighbours() []mesh.Neighbour
	Close() error
}

// embedded is a node running inside this process.
type embedded struct{ n *mesh.Node }

func (e embedded) Identity() *identity.Identity { return e.n.Identity() }
func (e embedded) UDPAddr() net.Addr            { return e.n.LocalAddr() }
func (e embedded) Bind(port uint16) (msp.Transport, error) {
	pc, err := e.n.Bind(port)
	if err != nil {
		return nil, err
	}
	return pc, nil
}
func (e embedded) WaitReachable(ctx context.Context, sid identity.SID) error {
	return e.n.WaitReachable(ctx, sid)
}
func (e embedded) Routes() []mesh.Route         { return e.n.Routes() }
func (e embedded) Neighbours() []mesh.Neighbour { return e.n.Neighbours() }
func (e embedded) Close() error                 { return e.n.Close() }

// access returns the instance's daemon when one runs, else starts an
// embedded node with the node options.
func (g *globals) access(o *nodeOptions, fs *pflag.FlagSet) (meshAccess, error) {
	if d, err := g.daemonAccess(); d != nil || err != nil {
		return d, err
	}
	n, err := g.startNode(o, fs)
	if err != nil {
		return nil, err
	}
	return embedded{n}, nil
}

// daemonAccess returns a connection to the instance's daemon, or nil when
// none runs. (The daemon arrives with its own change.)
func (g *globals) daemonAccess() (meshAccess, error) { return nil, nil }

// dialSession opens an MSP session to (sid, port) through a.
func dialSession(ctx context.Context, a meshAccess, sid identity.SID, port uint16, cfg msp.Config) (*msp.Session, error) {
	if err := a.WaitReachable(ctx, sid); err != nil {
		return nil, err
	}
	tr, err := a.Bind(0)
	if err != nil {
		return nil, err
	}
	return msp.DialTransport(ctx, tr, a.Identity(), sid, mesh.Addr{SID: sid, Port: port}, port, cfg)
}
