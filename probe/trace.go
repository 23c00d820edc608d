package probe

// The trace side: the path to a node, one hop at a time.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// Errors Trace ends with, besides ErrNoReply and mesh.ErrNoRoute.
var (
	// ErrLoop means a hop named a node already on the path as its next hop.
	ErrLoop = errors.New("routing loop")
	// ErrTooManyHops means the destination was not reached within MaxHops.
	ErrTooManyHops = errors.New("too many hops")
)

// TraceConfig configures Trace. Zero fields take the defaults of
// DefaultTraceConfig.
type TraceConfig struct {
	// MaxHops is the longest path followed. Default 32 (mesh.DefaultTTL).
	MaxHops int
	// Timeout is how long one query waits for its reply. Default 1 s.
	Timeout time.Duration
	// Tries is how many queries a hop is sent before it counts as silent.
	// Default 3.
	Tries int
}

// DefaultTraceConfig returns the defaults.
func DefaultTraceConfig() TraceConfig {
	return TraceConfig{MaxHops: mesh.DefaultTTL, Timeout: time.Second, Tries: 3}
}

func (c *TraceConfig) fill() {
	d := DefaultTraceConfig()
	if c.MaxHops <= 0 {
		c.MaxHops = d.MaxHops
	}
	if c.Timeout <= 0 {
		c.Timeout = d.Timeout
	}
	if c.Tries <= 0 {
		c.Tries = d.Tries
	}
}

// Hop is one node on a traced path.
type Hop struct {
	// N counts hops from 1 (the local node's next hop).
	N   int
	SID identity.SID
	// Addr is the node's UDP address as the hop before it (its neighbour)
	// knows it; "" when it did not say.
	Addr string
	// RTT is the round trip of the query answered, from this node to the
	// hop and back.
	RTT time.Duration
	// Hops is the hop's own hop count to the destination (0 at the
	// destination).
	Hops int
	// Lost: the hop did not answer (RTT and Hops are then zero).
	Lost bool
}

// String formats h as a line of a trace: number, SID prefix, address ("-"
// when not known), RTT ("*" for a hop that did not answer).
//
//	2  4F3A09B1  192.0.2.7:4110  2.41 ms
func (h Hop) String() string {
	addr := h.Addr
	if addr == "" {
		addr = "-"
	}
	if h.Lost {
		return fmt.Sprintf("%2d  %s  %s  *", h.N, h.SID.Short(), addr)
	}
	return fmt.Sprintf("%2d  %s  %s  %s ms", h.N, h.SID.Short(), addr, rttString(h.RTT))
}

// Trace follows the path from the local node (self, whose routing table is
// table) to node to: the local node's next hop towards it, then that
// node's next hop as it answers a trace request, and so on, through pc (an
// unused MDP port, which Trace closes). It calls each (if not nil) with
// every hop as it is found and returns them all. It stops at the
// destination (nil error), or with an error at a hop that does not answer
// (the last Hop is Lost; ErrNoReply) or has no route (mesh.ErrNoRoute), at
// a loop (ErrLoop), after cfg.MaxHops (ErrTooManyHops), or when ctx ends.
// A trace to self has no hops.
func Trace(ctx context.Context, pc PacketConn, self identity.SID, table Table, to identity.SID, cfg TraceConfig, each func(Hop)) ([]Hop, error) {
	cfg.fill()
	if each == nil {
		each = func(Hop) {}
	}
	if to == self {
		pc.Close()
		return nil, nil
	}
	fail := func(format string, args ...any) error {
		return fmt.Errorf("probe: trace %s: "+format, append([]any{to.Short()}, args...)...)
	}
	next, addr, err := firstHop(table, to)
	if err != nil {
		pc.Close()
		return nil, fail("%w", err)
	}
	a := newAsker(ctx, pc)
	defer a.close()

	var path []Hop
	seen := map[identity.SID]bool{self: true}
	seq := uint32(0)
	for n := 1; ; n++ {
		if n > cfg.MaxHops {
			return path, fail("%w (%d)", ErrTooManyHops, cfg.MaxHops)
		}
		if seen[next] {
			return path, fail("%w: hop %d names %s, already on the path", ErrLoop, n-1, next.Short())
		}
		seen[next] = true
		hop := Hop{N: n, SID: next, Addr: addr}
		rep, rtt, err := query(ctx, a, next, to, &seq, cfg)
		if err != nil {
			if errors.Is(err, ErrNoReply) {
				hop.Lost = true
				path = append(path, hop)
				each(hop)
			}
			return path, fail("hop %d (%s): %w", n, next.Short(), err)
		}
		hop.RTT, hop.Hops = rtt, rep.Hops
		path = append(path, hop)
		each(hop)
		switch {
		case rep.Status == StatusDestination && next == to:
			return path, nil
		case rep.Status == StatusDestination:
			return path, fail("hop %d (%s) claims to be the destination", n, next.Short())
		case rep.Status == StatusNoRoute:
			return path, fail("hop %d (%s): %w", n, next.Short(), mesh.ErrNoRoute)
		}
		next, addr = rep.Next, rep.Addr
	}
}

// firstHop reads the local node's next hop towards to, and its address.
func firstHop(table Table, to identity.SID) (identity.SID, string, error) {
	routes, err := table.Routes()
	if err != nil {
		return identity.SID{}, "", err
	}
	var next identity.SID
	for _, rt := range routes {
		if rt.SID == to {
			next = rt.NextHop
			break
		}
	}
	if next.IsZero() {
		return identity.SID{}, "", fmt.Errorf("%w %s", mesh.ErrNoRoute, to)
	}
	nbs, err := table.Neighbours()
	if err != nil {
		return identity.SID{}, "", err
	}
	for _, nb := range nbs {
		if nb.SID == next && nb.Addr != nil && ValidAddr(nb.Addr.String()) {
			return next, nb.Addr.String(), nil
		}
	}
	return next, "", nil
}

// query asks node hop for its next hop towards dst, up to cfg.Tries times,
// and returns the first reply to any of its queries with that query's
// round trip.
func query(ctx context.Context, a *asker, hop, dst identity.SID, seq *uint32, cfg TraceConfig) (TraceReply, time.Duration, error) {
	sent := map[uint32]time.Time{}
	buf := make([]byte, 0, TraceRequestLen)
	to := mesh.Addr{SID: hop, Port: TracePort}
	timer := time.NewTimer(cfg.Timeout)
	defer timer.Stop()
	for try := 0; try < cfg.Tries; try++ {
		*seq++
		sent[*seq] = time.Now()
		if _, err := a.pc.WriteTo(TraceRequest{ID: a.id, Seq: *seq, Dst: dst}.Append(buf[:0]), to); err != nil {
			if ctx.Err() != nil {
				return TraceReply{}, 0, ctx.Err()
			}
			return TraceReply{}, 0, err
		}
		timer.Reset(cfg.Timeout)
	wait:
		for {
			select {
			case r, ok := <-a.in:
				if !ok {
					if ctx.Err() != nil {
						return TraceReply{}, 0, ctx.Err()
					}
					return TraceReply{}, 0, a.err
				}
				if r.from.SID != hop || r.from.Port != TracePort {
					continue
				}
				rep, _, err := ParseTraceReply(r.b)
				if err != nil || rep.ID != a.id || sent[rep.Seq].IsZero() {
					continue
				}
				return rep, r.at.Sub(sent[rep.Seq]), nil
			case <-timer.C:
				break wait
			case <-ctx.Done():
				return TraceReply{}, 0, ctx.Err()
			}
		}
	}
	return TraceReply{}, 0, ErrNoReply
}
