package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/forward"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
)

func newMSPCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "msp", Short: "Tunnel TCP or stdio over MSP streams"}
	cmd.AddCommand(newListenCmd(g), newConnectCmd(g))
	return cmd
}

// parsePort parses an MDP port, 1-65535.
func parsePort(s string) (uint16, error) {
	p, err := strconv.Atoi(s)
	if err != nil {
		return 0, usagef("MDP port %q is not a number", s)
	}
	if p < 1 || p > 65535 {
		return 0, usagef("MDP port %d out of range 1-65535", p)
	}
	return uint16(p), nil
}

func parseTarget(s string) (string, error) {
	t, err := forward.ParseTarget(s)
	if err != nil {
		return "", usagef("--forward: %v", err)
	}
	return t, nil
}

type listenOptions struct {
	node    nodeOptions
	split   splitOptions
	once    bool
	forward string
	service string
	allow   []string
}

func newListenCmd(g *globals) *cobra.Command {
	o := &listenOptions{}
	cmd := &cobra.Command{
		Use:   "listen [--once] [--forward=[HOST:]TCPPORT] [--service=NAME] [--allow=SID]... [--split=[HOST:]PORT [--fec=D:P]] MDPPORT",
		Short: "Accept MSP connections on MDPPORT; forward each to a TCP port, or stdin/stdout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.once, "once", false, "handle one connection, then exit when it closes")
	fs.StringVar(&o.forward, "forward", "", "connect each stream to this TCP [HOST:]PORT (default host 127.0.0.1); without it, use stdin/stdout for one connection")
	fs.StringVar(&o.service, "service", "", "answer service discovery for NAME")
	fs.StringArrayVar(&o.allow, "allow", nil, "only this SID may connect (repeatable)")
	o.split.addFlags(fs, false)
	o.node.addFlags(fs)
	return cmd
}

func (o *listenOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	ctx := cmd.Context()
	port, err := parsePort(args[0])
	if err != nil {
		return err
	}
	target := ""
	if o.forward != "" {
		if target, err = parseTarget(o.forward); err != nil {
			return err
		}
	}
	if o.service != "" {
		if err := discovery.ValidName(o.service); err != nil {
			return usagef("--service: %v", err)
		}
	}
	var allow func(identity.SID) bool
	if len(o.allow) > 0 {
		set := map[identity.SID]bool{}
		for _, a := range o.allow {
			sid, err := identity.ParseSID(a)
			if err != nil {
				return usagef("--allow: %v", err)
			}
			set[sid] = true
		}
		allow = func(s identity.SID) bool { return set[s] }
	}
	splitCfg, split, err := o.split.config(cmd.Flags(), false, g)
	if err != nil {
		return err
	}
	node, err := g.access(&o.node, cmd.Flags())
	if err != nil {
		return err
	}
	defer node.Close()
	tr, err := node.Bind(port)
	if err != nil {
		return err
	}
	lis := msp.ListenTransport(tr, node.Identity(), port, msp.Config{Allow: allow, Logger: g.logger()})
	defer lis.Close()
	var ss *splitServer
	if split {
		if ss, err = serveSplit(lis, o.split.addr, splitCfg); err != nil {
			return err
		}
		defer ss.Close(g)
	}
	if o.service != "" {
		stop, err := g.serveDiscovery(node, o.service, port)
		if err != nil {
			return err
		}
		defer stop()
	}
	fwd := ""
	if target != "" {
		_, p, _ := net.SplitHostPort(target)
		fwd = "--forward=" + p + " "
	}
	sid := node.Identity().SID()
	fmt.Fprintf(g.stderr, "servald: listening as %s on MDP port %d (UDP %s)\n", sid, port, node.UDPAddr())
	fmt.Fprintf(g.stderr, "servald: connect with: servald msp connect %s%s %d\n", fwd, sid, port)
	if ss != nil {
		fmt.Fprintf(g.stderr, "servald: split sessions on TCP %s (fec %s)\n", ss.Addr(), o.split.fec)
		fmt.Fprintf(g.stderr, "servald: or over split transport: %s\n", ss.connectHint(fwd, sid, port, o.split.fec, cmd.Flags().Changed("fec")))
	}

	if target != "" {
		err := forward.ServeStreams(ctx, lis.AcceptContext, target, o.once, nil, g.logger())
		if errors.Is(err, context.Canceled) {
			return nil // stopped by a signal
		}
		if err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return lis.Shutdown(sctx)
	}
	st, err := lis.AcceptContext(ctx)
	if err != nil {
		return fmt.Errorf("no connection: %w", err)
	}
	_, _, err = forward.Join(ctx, stdio(cmd), st)
	if err != nil {
		return fmt.Errorf("stream broke: %w", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return lis.Shutdown(sctx)
}

type connectOptions struct {
	node    nodeOptions
	split   splitOptions
	once    bool
	forward string
	timeout time.Duration
}

func newConnectCmd(g *globals) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [--once] [--forward=[HOST:]TCPPORT] [--split=HOST:PORT [--conns=N] [--fec=D:P]] SID MDPPORT",
		Short: "Connect to an MSP listener; serve a local TCP port through it, or stdin/stdout",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.once, "once", false, "handle one TCP connection, then exit when it closes")
	fs.StringVar(&o.forward, "forward", "", "listen on this local TCP [HOST:]PORT (default host 127.0.0.1) and tunnel each connection; without it, use stdin/stdout")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the SID to answer")
	o.split.addFlags(fs, true)
	o.node.addFlags(fs)
	return cmd
}

func (o *connectOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	ctx := cmd.Context()
	sid, err := identity.ParseSID(args[0])
	if err != nil {
		return usageError{err}
	}
	port, err := parsePort(args[1])
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	splitCfg, split, err := o.split.config(cmd.Flags(), true, g)
	if err != nil {
		return err
	}
	var ln net.Listener
	if o.forward != "" {
		target, err := parseTarget(o.forward)
		if err != nil {
			return err
		}
		if ln, err = net.Listen("tcp", target); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("TCP port %s is in use", target)
			}
			return fmt.Errorf("listen on TCP %s: %w", target, err)
		}
		defer ln.Close()
	}
	cfg := msp.Config{Logger: g.logger()}
	var dialVia func(ctx context.Context) (*msp.Session, error)
	if split {
		// No mesh node: the split session reaches the listener directly.
		sd, err := g.newSplitDialer(o.split.addr, splitCfg)
		if err != nil {
			return err
		}
		defer sd.report(g) // after the session below has closed
		dialVia = func(ctx context.Context) (*msp.Session, error) { return sd.dial(ctx, sid, port, cfg) }
	} else {
		node, err := g.access(&o.node, cmd.Flags())
		if err != nil {
			return err
		}
		defer node.Close()
		dialVia = func(ctx context.Context) (*msp.Session, error) { return dialSession(ctx, node, sid, port, cfg) }
	}
	dial := func(ctx context.Context) (*msp.Session, error) {
		dctx, cancel := context.WithTimeout(ctx, o.timeout)
		defer cancel()
		s, err := dialVia(dctx)
		if err != nil && ctx.Err() == nil && dctx.Err() != nil {
			return nil, fmt.Errorf("%s unreachable after %v: %w", sid, o.timeout, err)
		}
		return s, err
	}
	sess, err := dial(ctx)
	if err != nil {
		return err
	}
	defer func() { sess.Close() }() // the current one, after any redial

	if ln == nil {
		st, err := sess.OpenStream(ctx)
		if err != nil {
			return err
		}
		_, _, err = forward.Join(ctx, stdio(cmd), st)
		if err != nil {
			return fmt.Errorf("stream broke: %w", err)
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return sess.Shutdown(sctx)
	}
	fmt.Fprintf(g.stderr, "servald: forwarding TCP %s to %s port %d\n", ln.Addr(), sid, port)
	// A session that ended (the peer restarted, say) is dialled again for
	// the next connection.
	var mu sync.Mutex
	open := func(ctx context.Context) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if sess.Err() != nil {
			s, err := dial(ctx)
			if err != nil {
				return nil, err
			}
			sess.Close()
			sess = s
		}
		return sess.OpenStream(ctx)
	}
	err = forward.Serve(ctx, ln, open, o.once, g.logger())
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err == nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mu.Lock()
		sess.Shutdown(sctx)
		mu.Unlock()
	}
	return err
}

// serveDiscovery answers discovery queries for name on node.
func (g *globals) serveDiscovery(node meshAccess, name string, port uint16) (func(), error) {
	tr, err := node.Bind(discovery.Port)
	if err != nil {
		return nil, fmt.Errorf("--service: %w", err)
	}
	r := discovery.NewResponder(tr, g.logger())
	r.Add(name, port)
	return func() { r.Close() }, nil
}
