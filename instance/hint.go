package instance

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// noNeighbours says why a node has no neighbours: the peers it was given
// do not answer, or it was given none. whose names the node's peers:
// "the", or "the daemon's".
func noNeighbours(whose string, peers []string) string {
	switch len(peers) {
	case 0:
		return "no neighbours: add --peer HOST:PORT, or --broadcast on a LAN"
	case 1:
		return whose + " peer " + peers[0] + " does not answer"
	}
	return whose + " peers " + strings.Join(peers, ", ") + " do not answer"
}

// NoNodeHint is the line for a mesh in which no other node is reachable:
// for a node (or daemon) started with peers, that they do not answer.
func NoNodeHint(m Mesh) string {
	switch m := m.(type) {
	case *embedded:
		return "no node reachable (" + noNeighbours("the", m.peers) + ")"
	case viaDaemon:
		if peers := m.silentPeers(); peers != nil {
			return "no node reachable (" + noNeighbours("the daemon's", peers) + ")"
		}
	}
	return "no node reachable (the daemon has no neighbours: start it with --peer HOST:PORT or --broadcast, or check that its peers answer)"
}

// WaitReachable waits for a route to sid; when none came and the node has
// no neighbours, the error says whether its peers are silent.
func (e *embedded) WaitReachable(ctx context.Context, sid identity.SID) error {
	err := e.n.WaitReachable(ctx, sid)
	if errors.Is(err, mesh.ErrNoRoute) && len(e.peers) > 0 && len(e.n.Neighbours()) == 0 {
		return fmt.Errorf("mesh: %w %s: %s", mesh.ErrNoRoute, sid, noNeighbours("the", e.peers))
	}
	return err
}

// WaitReachable waits for the daemon's route to sid; when none came, the
// daemon has no neighbours and was started with peers, the error says
// that they do not answer; with no daemon there, that it is away.
func (d viaDaemon) WaitReachable(ctx context.Context, sid identity.SID) error {
	err := d.notRunning(d.c.WaitReachable(ctx, sid))
	if errors.Is(err, mesh.ErrNoRoute) {
		if peers := d.silentPeers(); peers != nil {
			return fmt.Errorf("mesh: %w %s: %s", mesh.ErrNoRoute, sid, noNeighbours("the daemon's", peers))
		}
	}
	return err
}

// silentPeers returns the daemon's configured peers when it has no
// neighbours, else (or when its status does not come) nil.
func (d viaDaemon) silentPeers() []string {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	st, err := d.c.Status(ctx)
	if err != nil || st.Neighbours > 0 || len(st.Peers) == 0 {
		return nil
	}
	return st.Peers
}
