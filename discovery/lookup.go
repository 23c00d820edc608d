package discovery

// Lookup: Find in rounds until a node answers for a service. Each round
// reads the routing table afresh (the mesh may learn the node meanwhile),
// asks through a fresh MDP port, and lasts at most LookupRound; rounds
// start at least LookupGap apart.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// LookupRound bounds one round of queries of Lookup; LookupGap is the
// least time between the starts of two rounds.
const (
	LookupRound = time.Second
	LookupGap   = 250 * time.Millisecond
)

// ErrNoService is wrapped by Lookup's error when no node answered in time.
var ErrNoService = errors.New("no node answered")

// Net is the mesh as Lookup asks through it: *mesh.Node behind a small
// adapter, or a node reached through a daemon.
type Net interface {
	// Self is this node's SID.
	Self() identity.SID
	// Routes is the routing table now.
	Routes() ([]mesh.Route, error)
	// Port binds an unused MDP port for one round (Find closes it).
	Port() (PacketConn, error)
}

// Lookup asks every node nw knows (and itself) for service name, in
// rounds, until one answers or within has passed, and returns the nearest
// answer. After within, the error wraps ErrNoService; when ctx is
// cancelled, it is ctx's error.
func Lookup(ctx context.Context, nw Net, name string, within time.Duration) (Answer, error) {
	all, err := LookupAll(ctx, nw, name, within)
	if err != nil {
		return Answer{}, err
	}
	return all[0], nil
}

// LookupAll is Lookup returning every answer of the first round that had
// any, nearest first.
func LookupAll(ctx context.Context, nw Net, name string, within time.Duration) ([]Answer, error) {
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		start := time.Now()
		routes, err := nw.Routes()
		if err != nil {
			return nil, err
		}
		pc, err := nw.Port()
		if err != nil {
			return nil, err
		}
		rctx, rcancel := context.WithTimeout(wctx, LookupRound)
		answers, err := Find(rctx, pc, nw.Self(), routes, name)
		rcancel()
		if err != nil {
			return nil, err
		}
		if len(answers) > 0 {
			return answers, nil
		}
		sleep(wctx, LookupGap-time.Since(start))
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, ctx.Err()
		}
		if wctx.Err() != nil {
			return nil, fmt.Errorf("%w for service %s within %v (%d nodes asked)", ErrNoService, name, within, len(routes)+1)
		}
	}
}

// sleep returns after d, or sooner when ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
