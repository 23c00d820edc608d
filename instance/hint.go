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
// do not answer, or it was given none.
func noNeighbours(peers []string) string {
	switch len(peers) {
	case 0:
		return "no neighbours: add --peer HOST:PORT, or --broadcast on a LAN"
	case 1:
		return "the peer " + peers[0] + " does not answer"
	}
	return "the peers " + strings.Join(peers, ", ") + " do not answer"
}

// NoNodeHint is the line for a mesh in which no other node is reachable:
// for a node started with peers, that they do not answer.
func NoNodeHint(m Mesh) string {
	if e, ok := m.(*embedded); ok {
		return "no node reachable (" + noNeighbours(e.peers) + ")"
	}
	return "no node reachable (the daemon has no neighbours: start it with --peer HOST:PORT or --broadcast, or check that its peers answer)"
}

// WaitReachable waits for a route to sid; when none came and the node has
// no neighbours, the error says whether its peers are silent.
func (e *embedded) WaitReachable(ctx context.Context, sid identity.SID) error {
	err := e.n.WaitReachable(ctx, sid)
	if errors.Is(err, mesh.ErrNoRoute) && len(e.peers) > 0 && len(e.n.Neighbours()) == 0 {
		return fmt.Errorf("mesh: %w %s: %s", mesh.ErrNoRoute, sid, noNeighbours(e.peers))
	}
	return err
}
