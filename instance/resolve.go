package instance

// Turning what a user typed into a node: a full SID, a short SID (a unique
// prefix of a node the mesh knows), or a service name answered through
// discovery.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// lookAgain is how often Resolve looks at the routing table again when
// changes are not signalled (through a daemon).
const lookAgain = 100 * time.Millisecond

// SIDArg is a SID as typed: a full one, or a prefix to resolve.
type SIDArg struct {
	sid    identity.SID
	prefix string // upper-case hex; "" when sid is complete
}

// FullSID is the SIDArg of a complete SID.
func FullSID(sid identity.SID) SIDArg { return SIDArg{sid: sid} }

// ParseSIDArg checks the syntax of a typed SID (64 hex digits, or at least
// identity.MinPrefix of them); a mistake is a *UsageError.
func ParseSIDArg(s string) (SIDArg, error) {
	if len(s) == 2*identity.SIDLen {
		sid, err := identity.ParseSID(s)
		if err != nil {
			return SIDArg{}, &UsageError{err}
		}
		return SIDArg{sid: sid}, nil
	}
	p, err := identity.ParsePrefix(s)
	if err != nil {
		return SIDArg{}, &UsageError{err}
	}
	return SIDArg{prefix: p}, nil
}

// ParsePinnedSIDArg is ParseSIDArg for a SID that grants something
// (--allow, --trust): a prefix needs at least identity.MinPinPrefix hex
// digits, so that nobody can grind a key that takes its place.
func ParsePinnedSIDArg(s string) (SIDArg, error) {
	if len(s) < identity.MinPinPrefix {
		return SIDArg{}, &UsageError{fmt.Errorf("prefix %q has %d hex digits: here at least %d (64 bits) are needed, since a key matching fewer can be ground; give more digits or the full SID", s, len(s), identity.MinPinPrefix)}
	}
	return ParseSIDArg(s)
}

// IsShort reports whether s is a prefix, to be resolved.
func (s SIDArg) IsShort() bool { return s.prefix != "" }

// Prefix is the upper-case hex prefix of a short SID, "" for a full one.
func (s SIDArg) Prefix() string { return s.prefix }

// SID is the full SID given, zero for a short one.
func (s SIDArg) SID() identity.SID { return s.sid }

// knownSIDs are the nodes a prefix is matched against: this node and every
// node in its routing table.
func knownSIDs(m Mesh) ([]identity.SID, error) {
	routes, err := m.Routes()
	if err != nil {
		return nil, err
	}
	known := []identity.SID{m.Identity().SID()}
	for _, r := range routes {
		known = append(known, r.SID)
	}
	return known, nil
}

// resolveKnown is identity.Resolve of prefix against known, whose first
// entry is this node: an unknown prefix's error lists the other nodes
// only (this node is matched, but not offered as a choice).
func resolveKnown(prefix string, known []identity.SID) (identity.SID, error) {
	sid, err := identity.Resolve(prefix, known)
	if errors.Is(err, identity.ErrUnknownSID) {
		_, err = identity.Resolve(prefix, known[1:])
	}
	return sid, err
}

// Resolve returns the SID s stands for. A prefix is matched against the
// nodes m knows, waiting (at most wait) until at least one matches: then
// one match is the answer, several are an ambiguity (a *UsageError listing
// them, errors.Is identity.ErrAmbiguousSID). When none appeared in time,
// the error (errors.Is identity.ErrUnknownSID) lists the nodes known.
//
// A prefix of fewer than identity.MinPinPrefix digits (which a ground key
// could match) is matched only against the nodes known once m has settled
// (Settle): it does not wait for a matching node to turn up.
func (s SIDArg) Resolve(ctx context.Context, m Mesh, wait time.Duration) (identity.SID, error) {
	if s.prefix == "" {
		return s.sid, nil
	}
	if len(s.prefix) < identity.MinPinPrefix {
		Settle(ctx, m, wait)
		if errors.Is(ctx.Err(), context.Canceled) {
			return identity.SID{}, ctx.Err()
		}
		known, err := knownSIDs(m)
		if err != nil {
			return identity.SID{}, err
		}
		sid, err := resolveKnown(s.prefix, known)
		if errors.Is(err, identity.ErrAmbiguousSID) {
			return identity.SID{}, &UsageError{fmt.Errorf("%w: give more digits", err)}
		}
		if errors.Is(err, identity.ErrUnknownSID) {
			return identity.SID{}, fmt.Errorf("%w (a prefix of fewer than %d digits is matched only against nodes already known: give %d or more to wait for the node)", err, identity.MinPinPrefix, identity.MinPinPrefix)
		}
		return sid, err
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		known, err := knownSIDs(m)
		if err != nil {
			return identity.SID{}, err
		}
		if len(identity.Match(s.prefix, known)) > 0 || wctx.Err() != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return identity.SID{}, ctx.Err()
			}
			sid, err := resolveKnown(s.prefix, known)
			if errors.Is(err, identity.ErrAmbiguousSID) {
				return identity.SID{}, &UsageError{fmt.Errorf("%w: give more digits", err)}
			}
			if errors.Is(err, identity.ErrUnknownSID) {
				return identity.SID{}, fmt.Errorf("%w, after waiting %v", err, wait)
			}
			return sid, err
		}
		waitChange(wctx, m, lookAgain)
	}
}

// waitChange returns when m's neighbours or routes change, d has passed,
// or ctx ends, whichever is first.
func waitChange(ctx context.Context, m Mesh, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-m.Changed():
	case <-t.C:
	case <-ctx.Done():
	}
}

// Target is what a connecting side dials: a fixed (SID, Port), or, when
// Service is set, the nearest node offering that service, looked up again
// at each Find.
type Target struct {
	SID     SIDArg
	Port    uint16
	Service string
	// ServiceSID, when set (a prefix of at least identity.MinPinPrefix
	// digits, or a full SID), pins the node a service is taken from.
	ServiceSID string
	// Say, when set, is told which node a service was taken from, and
	// why another than before.
	Say func(msg string)

	chosen identity.SID // the node the service was last taken from
}

// Find returns the SID and port to dial, within d: a service is looked up
// (discovery.LookupAll) and taken from the node it was taken from before
// while that node still offers it, else from the nearest (of those
// ServiceSID pins); a short SID is resolved, and stays resolved.
func (t *Target) Find(ctx context.Context, m Mesh, d time.Duration) (identity.SID, uint16, error) {
	if t.Service != "" {
		return t.findService(ctx, m, d)
	}
	sid, err := t.SID.Resolve(ctx, m, d)
	if err != nil {
		return identity.SID{}, 0, err
	}
	t.SID = FullSID(sid)
	return sid, t.Port, nil
}

// discoveryNet is a Mesh as discovery.Lookup asks through it.
type discoveryNet struct{ m Mesh }

func (n discoveryNet) Self() identity.SID            { return n.m.Identity().SID() }
func (n discoveryNet) Routes() ([]mesh.Route, error) { return n.m.Routes() }
func (n discoveryNet) Port() (discovery.PacketConn, error) {
	pc, err := n.m.Bind(0)
	if err != nil {
		return nil, err
	}
	return pc, nil
}

// findService looks the service up and chooses a node (see Find).
func (t *Target) findService(ctx context.Context, m Mesh, d time.Duration) (identity.SID, uint16, error) {
	if t.chosen.IsZero() {
		Settle(ctx, m, d) // learn the nodes near enough to ask, so as to see every offer
	}
	all, err := discovery.LookupAll(ctx, discoveryNet{m}, t.Service, d)
	if err != nil {
		return identity.SID{}, 0, err
	}
	offers := all[:0:0]
	for _, a := range all {
		if strings.HasPrefix(a.SID.String(), strings.ToUpper(t.ServiceSID)) {
			offers = append(offers, a)
		}
	}
	if len(offers) == 0 {
		return identity.SID{}, 0, fmt.Errorf("%w for service %s from %s (offered by %s)", discovery.ErrNoService, t.Service, t.ServiceSID, sidList(all))
	}
	pick, before := offers[0], t.chosen
	for _, a := range offers {
		if a.SID == before {
			pick = a
		}
	}
	t.chosen = pick.SID
	if t.Say != nil && pick.SID != before {
		msg := fmt.Sprintf("service %s is at %s port %d", t.Service, pick.SID, pick.Port)
		if !before.IsZero() {
			msg = fmt.Sprintf("service %s: %s no longer answers; now at %s port %d", t.Service, before, pick.SID, pick.Port)
		}
		if len(offers) > 1 {
			msg += fmt.Sprintf(" (the nearest of %d that offer it: %s; pin one with --service-sid)", len(offers), sidList(offers))
		}
		t.Say(msg)
	}
	return pick.SID, pick.Port, nil
}

// sidList is the SIDs of answers, comma separated.
func sidList(as []discovery.Answer) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.SID.String()
	}
	return strings.Join(s, ", ")
}

// Reach resolves s on m and waits, at most timeout, until the node is
// reachable; it returns the node and a fresh port of m to ask it from.
func Reach(ctx context.Context, m Mesh, s SIDArg, timeout time.Duration) (identity.SID, msp.Transport, error) {
	sid, err := s.Resolve(ctx, m, timeout)
	if err != nil {
		return identity.SID{}, nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	err = m.WaitReachable(wctx, sid)
	cancel()
	if err != nil {
		return identity.SID{}, nil, fmt.Errorf("%w (waited %v)", err, timeout)
	}
	pc, err := m.Bind(0)
	return sid, pc, err
}
