package main

// Turning what a user typed into a node: a full SID, a short SID (a unique
// prefix of a node the mesh knows), or a service name answered through
// discovery.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
)

// lookAgain is how often a command waiting for the mesh to learn a node
// looks at the routing table again when changes are not signalled (through
// a daemon).
const lookAgain = 100 * time.Millisecond

// serviceRound bounds one round of discovery queries; serviceGap is the
// least time between the starts of two rounds.
const (
	serviceRound = time.Second
	serviceGap   = 250 * time.Millisecond
)

// sidArg is a SID as typed: a full one, or a prefix to resolve.
type sidArg struct {
	sid    identity.SID
	prefix string // upper-case hex; "" when sid is complete
}

// parseSIDArg checks the syntax of a typed SID (64 hex digits, or at least
// identity.MinPrefix of them); a mistake is a usage error.
func parseSIDArg(s string) (sidArg, error) {
	if len(s) == 2*identity.SIDLen {
		sid, err := identity.ParseSID(s)
		if err != nil {
			return sidArg{}, usageError{err}
		}
		return sidArg{sid: sid}, nil
	}
	p, err := identity.ParsePrefix(s)
	if err != nil {
		return sidArg{}, usageError{err}
	}
	return sidArg{prefix: p}, nil
}

// knownSIDs are the nodes a prefix is matched against: this node and every
// node in its routing table.
func knownSIDs(a meshAccess) ([]identity.SID, error) {
	routes, err := a.Routes()
	if err != nil {
		return nil, err
	}
	known := []identity.SID{a.Identity().SID()}
	for _, r := range routes {
		known = append(known, r.SID)
	}
	return known, nil
}

// resolve returns the SID s stands for. A prefix is matched against the
// nodes a knows, waiting (at most wait) until at least one matches: then
// one match is the answer, several are an ambiguity (a usage error listing
// them). When none appeared in time, the error lists the nodes known.
func (s sidArg) resolve(ctx context.Context, a meshAccess, wait time.Duration) (identity.SID, error) {
	if s.prefix == "" {
		return s.sid, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		known, err := knownSIDs(a)
		if err != nil {
			return identity.SID{}, err
		}
		if len(identity.Match(s.prefix, known)) > 0 || wctx.Err() != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return identity.SID{}, ctx.Err()
			}
			sid, err := identity.Resolve(s.prefix, known)
			if errors.Is(err, identity.ErrAmbiguousSID) {
				return identity.SID{}, usageError{fmt.Errorf("%w: give more digits", err)}
			}
			if errors.Is(err, identity.ErrUnknownSID) {
				return identity.SID{}, fmt.Errorf("%w, after waiting %v", err, wait)
			}
			return sid, err
		}
		waitChange(wctx, a, lookAgain)
	}
}

// waitChange returns when a's neighbours or routes change, d has passed,
// or ctx ends, whichever is first.
func waitChange(ctx context.Context, a meshAccess, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-a.Changed():
	case <-t.C:
	case <-ctx.Done():
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

// errNoService is wrapped by findService when no node answered in time.
var errNoService = errors.New("no node answered")

// findService asks every node a knows (and itself) for service name, in
// rounds, until one answers or within has passed, and returns the nearest
// answer.
func findService(ctx context.Context, a meshAccess, name string, within time.Duration) (discovery.Answer, error) {
	wctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		start := time.Now()
		routes, err := a.Routes()
		if err != nil {
			return discovery.Answer{}, err
		}
		pc, err := a.Bind(0)
		if err != nil {
			return discovery.Answer{}, err
		}
		rctx, rcancel := context.WithTimeout(wctx, serviceRound)
		answers, err := discovery.Find(rctx, pc, a.Identity().SID(), routes, name)
		rcancel()
		if err != nil {
			return discovery.Answer{}, err
		}
		if len(answers) > 0 {
			return answers[0], nil
		}
		sleep(wctx, serviceGap-time.Since(start))
		if errors.Is(ctx.Err(), context.Canceled) {
			return discovery.Answer{}, ctx.Err()
		}
		if wctx.Err() != nil {
			return discovery.Answer{}, fmt.Errorf("%w for service %s within %v (%d nodes asked)", errNoService, name, within, len(routes)+1)
		}
	}
}
