package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/spf13/pflag"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/discovery"
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
	Routes() ([]mesh.Route, error)
	Neighbours() ([]mesh.Neighbour, error)
	// Changed returns a channel closed at the next change of neighbours or
	// routes, or nil when changes are not signalled (look again instead).
	Changed() <-chan struct{}
	// Advertise answers discovery queries for service name at MDP port
	// until the returned Closer is closed.
	Advertise(name string, port uint16, log *slog.Logger) (io.Closer, error)
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
func (e embedded) Routes() ([]mesh.Route, error)         { return e.n.Routes(), nil }
func (e embedded) Neighbours() ([]mesh.Neighbour, error) { return e.n.Neighbours(), nil }
func (e embedded) Changed() <-chan struct{}              { return e.n.Changed() }

// Advertise binds the node's discovery port: one service per process.
func (e embedded) Advertise(name string, port uint16, log *slog.Logger) (io.Closer, error) {
	pc, err := e.n.Bind(discovery.Port)
	if err != nil {
		return nil, err
	}
	r := discovery.NewResponder(pc, log)
	if err := r.Add(name, port); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
func (e embedded) Close() error { return e.n.Close() }

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

// daemonTimeout bounds each exchange with the daemon that has no deadline
// of its own (status, bind, routes).
const daemonTimeout = 10 * time.Second

// daemonAccess returns a connection to the instance's daemon, or nil when
// none runs (no socket, or a dead daemon's). The daemon's node must be this
// instance's identity.
func (g *globals) daemonAccess() (meshAccess, error) {
	dir, err := g.instanceDir()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if errors.Is(err, daemon.ErrNotRunning) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the daemon of %s does not answer: %w", dir, err)
	}
	id, err := g.identity()
	if err != nil {
		c.Close()
		return nil, err
	}
	if id.SID() != c.SID() {
		c.Close()
		return nil, fmt.Errorf("the daemon (pid %d) runs as %s but the keyring of %s now says %s: restart it (servald stop; servald start)", c.PID(), c.SID(), dir, id.SID())
	}
	g.logger().Info("using the running daemon; node options are ignored", "pid", c.PID(), "udp", c.UDPAddr())
	return viaDaemon{c: c, id: id}, nil
}

// viaDaemon reaches the mesh through the instance's daemon.
type viaDaemon struct {
	c  *daemon.Client
	id *identity.Identity
}

func (d viaDaemon) Identity() *identity.Identity { return d.id }
func (d viaDaemon) UDPAddr() net.Addr            { return d.c.UDPAddr() }
func (d viaDaemon) Bind(port uint16) (msp.Transport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	p, err := d.c.Bind(ctx, port)
	if err != nil {
		return nil, err
	}
	return p, nil
}
func (d viaDaemon) WaitReachable(ctx context.Context, sid identity.SID) error {
	return d.c.WaitReachable(ctx, sid)
}
func (d viaDaemon) Routes() ([]mesh.Route, error) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	return d.c.Routes(ctx)
}
func (d viaDaemon) Neighbours() ([]mesh.Neighbour, error) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	return d.c.Neighbours(ctx)
}
func (d viaDaemon) Changed() <-chan struct{} { return nil }

// Advertise asks the daemon, which answers on the discovery port for all
// its clients.
func (d viaDaemon) Advertise(name string, port uint16, _ *slog.Logger) (io.Closer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), daemonTimeout)
	defer cancel()
	a, err := d.c.Advertise(ctx, name, port)
	if err != nil {
		return nil, err
	}
	return a, nil
}
func (d viaDaemon) Close() error { return d.c.Close() }

// dialSession opens an MSP session to (sid, port) through a.
func dialSession(ctx context.Context, a meshAccess, sid identity.SID, port uint16, cfg msp.Config) (*msp.Session, error) {
	if err := a.WaitReachable(ctx, sid); err != nil {
		return nil, err
	}
	tr, err := a.Bind(0)
	if err != nil {
		return nil, err
	}
	return msp.Dialer{Identity: a.Identity(), Config: cfg}.Dial(ctx, tr, sid, port)
}
