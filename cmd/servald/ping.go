package main

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/servald/servald/identity"
	inst "github.com/servald/servald/instance"
	"github.com/servald/servald/probe"
)

// probeOptions are the options ping and trace share.
type probeOptions struct {
	node    nodeOptions
	timeout time.Duration
	json    bool
}

func (o *probeOptions) addFlags(cmd *cobra.Command, timeoutHelp string, timeout time.Duration) {
	o.node.addFlags(cmd.Flags())
	cmd.Flags().DurationVar(&o.timeout, "timeout", timeout, timeoutHelp)
	cmd.Flags().BoolVar(&o.json, "json", false, "print one JSON object per line")
}

// reach opens the mesh, finds the node the argument names (within
// --timeout) and binds a port to ask from; the caller closes the Mesh.
func (o *probeOptions) reach(cmd *cobra.Command, g *globals, arg string) (inst.Mesh, identity.SID, probe.PacketConn, error) {
	sidArg, err := inst.ParseSIDArg(arg)
	if err != nil {
		return nil, identity.SID{}, nil, err
	}
	if o.timeout <= 0 {
		return nil, identity.SID{}, nil, usagef("--timeout must be positive")
	}
	m, err := g.access(&o.node, cmd.Flags())
	if err != nil {
		return nil, identity.SID{}, nil, err
	}
	sid, pc, err := inst.Reach(cmd.Context(), m, sidArg, o.timeout)
	if err != nil {
		m.Close()
		return nil, identity.SID{}, nil, err
	}
	return m, sid, pc, nil
}

type pingOptions struct {
	probeOptions
	count     int
	interval  string
	size      int
	replyWait time.Duration
}

// newPingCmd is `ping`.
func newPingCmd(g *globals) *cobra.Command {
	o := &pingOptions{}
	cmd := &cobra.Command{
		Use:   "ping SID|PREFIX [-c N] [-i INTERVAL] [-s SIZE] [-W D] [--timeout D] [--json]",
		Short: "Send MDP echo requests to a node and print its replies, as ping(8)",
		Long: `Send MDP echo requests (port 7) to the node SID (or a unique prefix of it)
and print each reply as ping(8) does:

  64 bytes from 4F3A09B1: seq=1 hops=3 time=2.41 ms

hops is the replying node's hop count back to this node. Interrupted, or
after -c requests, it prints a summary: requests sent, replies received,
loss, and min/avg/max/mdev of the round-trip times. With --json, one JSON
object per line instead: {"type":"reply",...} per reply, {"type":"error",...}
per request that could not be sent, {"type":"summary",...} last.

Exit status 0 when any reply came, 1 when none did (within -W after the
last request), or when the node was not reachable within --timeout. Nodes answer ping unless started with
--no-echo. Through the instance's daemon when it runs; otherwise a node is
started with the node options.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	fs := cmd.Flags()
	fs.IntVarP(&o.count, "count", "c", 0, "stop after N requests (0: until interrupted)")
	fs.StringVarP(&o.interval, "interval", "i", "1s", "time between requests: a duration (200ms) or seconds (0.2)")
	fs.IntVarP(&o.size, "size", "s", 56, fmt.Sprintf("data bytes in each request after its %d-byte header (0-%d)", probe.HeaderLen, probe.MaxData))
	fs.DurationVarP(&o.replyWait, "reply-wait", "W", 2*time.Second, "after the last request, how long to wait for replies")
	o.addFlags(cmd, "how long to wait for a route to the node", 5*time.Second)
	return cmd
}

func (o *pingOptions) run(cmd *cobra.Command, g *globals, arg string) error {
	interval, err := inst.ParseInterval(o.interval)
	if err != nil {
		return err
	}
	if o.replyWait <= 0 {
		return usagef("-W must be positive")
	}
	cfg := probe.PingConfig{Count: o.count, Interval: interval, Size: o.size, Wait: o.replyWait}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	m, sid, pc, err := o.reach(cmd, g, arg)
	if err != nil {
		return err
	}
	defer m.Close()
	out := cmd.OutOrStdout()
	if !o.json {
		fmt.Fprintf(out, "PING %s: %d data bytes\n", sid, o.size)
	}
	sum, err := probe.RunPing(cmd.Context(), pc, sid, cfg, func(r probe.Reply) { o.emit(out, r) })
	if o.json {
		json.NewEncoder(out).Encode(sum)
	} else {
		fmt.Fprintf(out, "\n--- %s ping statistics ---\n%s\n", sid.Short(), sum)
	}
	return err
}

// emit prints a line: v as JSON with --json, else as text.
func (o *probeOptions) emit(w io.Writer, v fmt.Stringer) {
	if o.json {
		json.NewEncoder(w).Encode(v)
	} else {
		fmt.Fprintln(w, v)
	}
}

type traceOptions struct {
	probeOptions
	maxHops int
}

// newTraceCmd is `trace`.
func newTraceCmd(g *globals) *cobra.Command {
	o := &traceOptions{}
	cmd := &cobra.Command{
		Use:   "trace SID|PREFIX [--max-hops N] [--timeout D] [--json]",
		Short: "Print the path to a node, one line per hop: SID prefix, UDP address, RTT",
		Long: `Print the path to the node SID (or a unique prefix of it), one line per
hop, from this node's next hop to the node itself:

   1  4F3A09B1  192.0.2.7:4110  2.41 ms

Each hop is the next hop the one before it (this node first) routes
through; the address is that hop's UDP address as the hop before it knows
it ("-" when it did not say); the time is the round trip of a trace query
(MDP port 8) to the hop. A hop that does not answer is printed with "*"
and ends the trace. With --json, one JSON object per hop.

Exit status 0 when the node was reached, 1 otherwise. Nodes answer trace
unless started with --no-echo. Through the instance's daemon when it runs;
otherwise a node is started with the node options.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args[0])
		},
	}
	cmd.Flags().IntVar(&o.maxHops, "max-hops", probe.DefaultTraceConfig().MaxHops, "longest path followed")
	o.addFlags(cmd, "how long to wait for a route to the node, and for each hop's answer", 5*time.Second)
	return cmd
}

func (o *traceOptions) run(cmd *cobra.Command, g *globals, arg string) error {
	if o.maxHops <= 0 {
		return usagef("--max-hops must be positive")
	}
	m, sid, pc, err := o.reach(cmd, g, arg)
	if err != nil {
		return err
	}
	defer m.Close()
	out := cmd.OutOrStdout()
	if !o.json {
		fmt.Fprintf(out, "trace to %s, %d hops max\n", sid, o.maxHops)
	}
	// Three queries per hop within --timeout.
	cfg := probe.TraceConfig{MaxHops: o.maxHops, Timeout: max(o.timeout/3, time.Millisecond), Tries: 3}
	_, err = probe.Trace(cmd.Context(), pc, m.Identity().SID(), m, sid, cfg, func(h probe.Hop) { o.emit(out, h) })
	return err
}
