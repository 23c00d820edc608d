package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/servald/servald/discovery"
	inst "github.com/servald/servald/instance"
	"github.com/servald/servald/mesh"
)

// jsonUsage is the help of --json on the query commands.
const jsonUsage = "print one JSON object instead of text (fields: README.md, JSON output)"

// meshCmdOptions are the options of the commands that look at the mesh.
type meshCmdOptions struct {
	node nodeOptions
	wait time.Duration
	json bool
}

func (o *meshCmdOptions) addFlags(cmd *cobra.Command) {
	o.node.addFlags(cmd.Flags())
	cmd.Flags().DurationVar(&o.wait, "wait", 3*time.Second, "without a daemon: longest time the node started for this command listens for neighbours and routes (it stops sooner once they have not changed for two hello intervals, 2s)")
	cmd.Flags().BoolVar(&o.json, "json", false, jsonUsage)
}

// open reaches the mesh: through the daemon, which knows its neighbours
// already, or through a node started for this command, given until its
// table settles (at most --wait) to learn them.
func (o *meshCmdOptions) open(cmd *cobra.Command, g *globals) (inst.Mesh, error) {
	if o.wait < 0 {
		return nil, usagef("--wait must not be negative")
	}
	a, err := g.access(&o.node, cmd.Flags())
	if err != nil {
		return nil, err
	}
	inst.Settle(cmd.Context(), a, o.wait)
	return a, nil
}

// newPeersCmd is `id peers`.
func newPeersCmd(g *globals) *cobra.Command {
	o := &meshCmdOptions{}
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the reachable SIDs, nearest first: SID hops=N via=NEXTHOP metric=M",
		Long: `List the reachable SIDs, nearest first, one per line:

  SID hops=N via=NEXTHOP metric=M

NEXTHOP is the first 8 hex digits of the neighbour the route leads through;
the metric is the path's cost (256 per clean hop, more for lossy links).
Through the instance's daemon when it runs; otherwise a node is started with
the node options and listens for at most --wait.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a, routes, err := o.routes(cmd, g)
			if err != nil {
				return err
			}
			defer a.Close()
			inst.Print(cmd.OutOrStdout(), inst.PeersDoc(routes), o.json)
			if len(routes) == 0 {
				noRoutesHint(g.stderr, a)
			}
			return nil
		},
	}
	o.addFlags(cmd)
	return cmd
}

// routes reaches the mesh and reads its routing table; the caller closes
// the access.
func (o *meshCmdOptions) routes(cmd *cobra.Command, g *globals) (inst.Mesh, []mesh.Route, error) {
	a, err := o.open(cmd, g)
	if err != nil {
		return nil, nil, err
	}
	routes, err := a.Routes()
	if err != nil {
		a.Close()
		return nil, nil, err
	}
	return a, routes, nil
}

func noRoutesHint(w io.Writer, m inst.Mesh) {
	fmt.Fprintln(w, "servald: "+inst.NoNodeHint(m))
}

// withSubcommands adds subs to cmd and returns it.
func withSubcommands(cmd *cobra.Command, subs ...*cobra.Command) *cobra.Command {
	cmd.AddCommand(subs...)
	return cmd
}

func newRouteCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "route", Short: "Show the routing table"}
	o := &meshCmdOptions{}
	var dot bool
	print := &cobra.Command{
		Use:   "print [--dot]",
		Short: "Print the routing table: destination, next hop, hops, metric, MTU",
		Long: `Print the routing table: destination, next hop, hops, metric (path cost:
256 per clean hop, more for lossy links) and path MTU, nearest first.

With --dot, print a Graphviz digraph instead (render with: dot -Tsvg). A
distance-vector node does not know the whole topology, only its own links
and, for each destination, the neighbour it goes through and how far it is.
The graph draws what is known: solid edges from this node to each
neighbour, labelled with the link's metric, loss and round-trip time; dashed
edges from the next hop to each farther destination, labelled with hops and
metric (the nodes in between are not known). Nodes are labelled with the
first 8 hex digits of their SID.

Through the instance's daemon when it runs; otherwise a node is started with
the node options and listens for at most --wait.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dot && o.json {
				return usagef("--dot and --json are exclusive: give one")
			}
			a, routes, err := o.routes(cmd, g)
			if err != nil {
				return err
			}
			defer a.Close()
			nbs, err := a.Neighbours()
			if err != nil {
				return err
			}
			if dot {
				inst.WriteDot(cmd.OutOrStdout(), a.Identity().SID(), routes, nbs)
				return nil
			}
			inst.Print(cmd.OutOrStdout(), inst.RoutesDoc(routes, nbs), o.json)
			if len(routes) == 0 {
				noRoutesHint(g.stderr, a)
			}
			return nil
		},
	}
	print.Flags().BoolVar(&dot, "dot", false, "print a Graphviz digraph of what this node knows of the mesh")
	o.addFlags(print)
	cmd.AddCommand(print)
	return cmd
}

func newServiceCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "service", Short: "Find services across the mesh"}
	o := &meshCmdOptions{}
	var timeout time.Duration
	find := &cobra.Command{
		Use:   "find [NAME] [--timeout D]",
		Short: "List the nodes that answer for service NAME (every service without NAME): SID NAME.mdp.port=PORT, nearest first",
		Long: `Ask every reachable node (and this one) for service NAME, or for every
service without NAME, and print the answers, nearest first:

  SID NAME.mdp.port=PORT

Exit status 1 when no node answered within --timeout. Through the
instance's daemon when it runs; otherwise a node is started with the node
options and listens for at most --wait before asking.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := ""
			if len(args) == 1 {
				name = args[0]
				if err := discovery.ValidName(name); err != nil {
					return usageError{err}
				}
			}
			if timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			a, routes, err := o.routes(cmd, g)
			if err != nil {
				return err
			}
			defer a.Close()
			pc, err := a.Bind(0)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			answers, err := discovery.Find(ctx, pc, a.Identity().SID(), routes, name)
			if err != nil {
				return err
			}
			switch {
			case len(answers) > 0:
				return inst.Print(cmd.OutOrStdout(), inst.ServicesDoc(answers), o.json)
			case name == "":
				return fmt.Errorf("no node answered (%d asked)", len(routes)+1)
			}
			return fmt.Errorf("no node answered for %s", name)
		},
	}
	find.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "how long to wait for answers")
	o.addFlags(find)
	cmd.AddCommand(find)
	return cmd
}
