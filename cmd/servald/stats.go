package main

import (
	"context"
	"time"

	inst "github.com/servald/servald/instance"
)

const statsUsage = "print a line of tunnel statistics to stderr every INTERVAL, at least 100ms (0: none); -v prints a summary at exit in any case"

// startStats starts the --stats lines of msp; Stop prints the -v summary.
func startStats(ctx context.Context, g *globals, every time.Duration) (*inst.TunnelStats, error) {
	return inst.StartTunnelStats(ctx, inst.StatsConfig{Out: g.stderr, Interval: every, Summary: g.verbose > 0})
}
