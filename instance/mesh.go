package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// Mesh is how a command reaches the mesh: through a node embedded in its
// own process, or through the instance's running daemon.
type Mesh interface {
	Identity() *identity.Identity
	// UDPAddr is the node's UDP socket address.
	UDPAddr() net.Addr
	// Bind binds an MDP port (0: any free one).
	Bind(port uint16) (msp.Transport, error)
	// WaitReachable waits until the mesh has a route to sid or ctx ends.
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

// Embed returns a Mesh that reaches the mesh through n, which its Close
// closes.
func Embed(n *mesh.Node) Mesh { return &embedded{n: n} }

// embedded is a node running inside this process.
type embedded struct {
	n    *mesh.Node
	lock *daemon.PidFile // the instance lock; nil for Embed
	// expect: the node was given peers or broadcast, so it should find a
	// neighbour (see Settle).
	expect bool
	// probes answers ping and trace for the node (see ServeProbes); nil
	// when switched off.
	probes io.Closer
	peers  []string // the peers it was given (HOST:PORT), for errors
}

func (e *embedded) Identity() *identity.Identity { return e.n.Identity() }
func (e *embedded) UDPAddr() net.Addr            { return e.n.LocalAddr() }
func (e *embedded) Bind(port uint16) (msp.Transport, error) {
	pc, err := e.n.Bind(port)
	if err != nil {
		return nil, err
	}
	return pc, nil
}
func (e *embedded) Routes() ([]mesh.Route, error)         { return e.n.Routes(), nil }
func (e *embedded) Neighbours() ([]mesh.Neighbour, error) { return e.n.Neighbours(), nil }
func (e *embedded) Changed() <-chan struct{}              { return e.n.Changed() }

// Advertise binds the node's discovery port: one service per process.
func (e *embedded) Advertise(name string, port uint16, log *slog.Logger) (io.Closer, error) {
	pc, err := e.n.Bind(discovery.Port)
	if err != nil {
		return nil, err
	}
	r := discovery.NewResponder(pc, e.n.Identity(), log)
	if err := r.Add(name, port); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}
func (e *embedded) Close() error {
	if e.probes != nil {
		e.probes.Close()
	}
	err := e.n.Close()
	e.lock.Close()
	return err
}

// QuietPeriod: a node started for one command has learnt what it will
// learn soon once its neighbours and routes stopped changing for this
// long: two hello intervals, in which every neighbour has sent what it
// knows at least once more (a neighbour's route to a node two hops away
// can arrive a hello interval after the neighbour itself). Embedded nodes
// run with mesh's default hello interval of 1 s (TestQuietPeriod).
const QuietPeriod = 2 * time.Second

// Settle gives an embedded node time to learn its neighbours: it waits
// until the node's neighbours and routes have not changed for QuietPeriod
// (and, when the node was given peers or broadcast, it has a neighbour),
// or wait has passed, or ctx ends. Through a daemon, which knows its
// neighbours already, it returns at once.
func Settle(ctx context.Context, m Mesh, wait time.Duration) {
	e, ok := m.(*embedded)
	if !ok || wait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		ch := e.n.Changed()
		quiet := time.NewTimer(QuietPeriod)
		select {
		case <-ch:
			quiet.Stop()
			continue
		case <-quiet.C:
			if !e.expect || len(e.n.Neighbours()) > 0 {
				return
			}
		case <-ctx.Done():
			quiet.Stop()
			return
		}
	}
}

// DialSession opens an MSP session to (sid, port) through m: it waits for
// a route, then dials from a fresh MDP port, until ctx ends. Through a
// daemon, the port reports the session for `servald status` (with the
// service of sh, if given).
func DialSession(ctx context.Context, m Mesh, sid identity.SID, port uint16, cfg msp.Config, sh ...Shown) (*msp.Session, error) {
	if err := m.WaitReachable(ctx, sid); err != nil {
		return nil, err
	}
	tr, err := m.Bind(0)
	if err != nil {
		return nil, err
	}
	s, err := msp.Dialer{Identity: m.Identity(), Config: cfg}.Dial(ctx, tr, sid, port)
	if errors.Is(err, msp.ErrRefused) {
		return nil, fmt.Errorf("MDP port %d: %w", port, err)
	}
	if err == nil {
		show := firstShown(sh)
		show.Target = dialTarget(sid, port)
		reportSessions(tr, daemon.RoleConnect, show, func() []*msp.Session { return []*msp.Session{s} })
	}
	return s, err
}

// Listen accepts MSP sessions on MDP port of m. Through a daemon, the port
// reports the listener's sessions for `servald status`, with what sh says.
func Listen(m Mesh, port uint16, cfg msp.Config, sh ...Shown) (*msp.Listener, error) {
	tr, err := m.Bind(port)
	if err != nil {
		return nil, err
	}
	lis := msp.Listen(tr, m.Identity(), port, cfg)
	reportSessions(tr, daemon.RoleListen, firstShown(sh), lis.Sessions)
	return lis, nil
}
