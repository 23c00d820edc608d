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
	"github.com/spf13/pflag"

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

// listenTCP listens on the local TCP address of connect --forward.
func listenTCP(target string) (net.Listener, error) {
	ln, err := net.Listen("tcp", target)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("TCP port %s is in use", target)
		}
		return nil, fmt.Errorf("listen on TCP %s: %w", target, err)
	}
	return ln, nil
}

func parseTarget(s string) (string, error) {
	t, err := forward.ParseTarget(s)
	if err != nil {
		return "", usagef("--forward: %v", err)
	}
	return t, nil
}

// tunnelFlags are --once and --forward, alike on every listen and connect.
type tunnelFlags struct {
	once    bool
	forward string
}

func (f *tunnelFlags) addFlags(fs *pflag.FlagSet, connect bool) {
	if connect {
		fs.BoolVar(&f.once, "once", false, "handle one TCP connection, then exit when it closes")
		fs.StringVar(&f.forward, "forward", "", "listen on this local TCP [HOST:]PORT (default host 127.0.0.1) and tunnel each connection; without it, use stdin/stdout")
		return
	}
	fs.BoolVar(&f.once, "once", false, "handle one connection, then exit when it closes")
	fs.StringVar(&f.forward, "forward", "", "connect each tunnelled connection to this TCP [HOST:]PORT (default host 127.0.0.1); without it, use stdin/stdout for one connection")
}

// forwardTarget is the --forward address, "" without --forward.
func (f *tunnelFlags) forwardTarget() (string, error) {
	if f.forward == "" {
		return "", nil
	}
	return parseTarget(f.forward)
}

type listenOptions struct {
	node  nodeOptions
	split splitOptions
	tunnelFlags
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
	o.tunnelFlags.addFlags(fs, false)
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
	target, err := o.forwardTarget()
	if err != nil {
		return err
	}
	if o.service != "" {
		if err := discovery.ValidName(o.service); err != nil {
			return usagef("--service: %v", err)
		}
	}
	allowArgs := make([]sidArg, len(o.allow))
	for i, a := range o.allow {
		if allowArgs[i], err = parseSIDArg(a); err != nil {
			return usagef("--allow: %v", err)
		}
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
	var allow func(identity.SID) bool
	if len(allowArgs) > 0 {
		set := map[identity.SID]bool{}
		for i, a := range allowArgs {
			// A short SID stands for the node it names now: a later
			// connector with the same prefix is not let in.
			sid, err := a.resolve(ctx, node, allowWait)
			if err != nil {
				return fmt.Errorf("--allow %s: %w", o.allow[i], err)
			}
			if a.prefix != "" {
				fmt.Fprintf(g.stderr, "servald: --allow %s is %s\n", o.allow[i], sid)
			}
			set[sid] = true
		}
		allow = func(s identity.SID) bool { return set[s] }
	}
	tr, err := node.Bind(port)
	if err != nil {
		return err
	}
	lis := msp.Listen(tr, node.Identity(), port, msp.Config{Allow: allow, Logger: g.logger()})
	defer lis.Close()
	var ss *splitServer
	if split {
		if ss, err = serveSplit(lis, o.split.addr, splitCfg); err != nil {
			return err
		}
		defer ss.Close(g)
	}
	if o.service != "" {
		ad, err := node.Advertise(o.service, port, g.logger())
		if err != nil {
			return fmt.Errorf("--service: %w", err)
		}
		defer ad.Close()
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
		fmt.Fprintf(g.stderr, "servald: or over split transport: %s\n", ss.connectHint(fwd, sid, port, o.split.hintFlags(cmd.Flags())))
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

// allowWait bounds how long `msp listen` waits for the mesh to learn a
// node named by a short SID in --allow.
const allowWait = 5 * time.Second

type connectOptions struct {
	node  nodeOptions
	split splitOptions
	tunnelFlags
	service string
	timeout time.Duration
}

func newConnectCmd(g *globals) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [--once] [--forward=[HOST:]TCPPORT] [--split=HOST:PORT [--conns=N] [--fec=D:P]] (SID MDPPORT | --service=NAME)",
		Short: "Connect to an MSP listener; serve a local TCP port through it, or stdin/stdout",
		Long: `Connect to the MSP listener at SID MDPPORT, or, with --service=NAME, to the
nearest node that answers service discovery for NAME (at the MDP port it
names). SID may be shortened to a unique prefix of at least 8 hex digits of
a node the mesh knows. With --forward, listen on a local TCP port and tunnel
each connection; without it, tunnel stdin/stdout over one connection.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.service != "" {
				if len(args) != 0 {
					return usagef("with --service, give no SID or MDPPORT: the service's answer names them")
				}
				return nil
			}
			return cobra.ExactArgs(2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	o.tunnelFlags.addFlags(fs, true)
	fs.StringVar(&o.service, "service", "", "connect to the nearest node offering service NAME (instead of SID MDPPORT)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the SID (or a node offering --service) to answer")
	o.split.addFlags(fs, true)
	o.node.addFlags(fs)
	return cmd
}

// connectTarget finds what a connect dials: a fixed (SID, port), or the
// nearest node offering a service, asked again at each dial.
type connectTarget struct {
	arg     sidArg
	port    uint16
	service string
}

func (o *connectOptions) target(args []string) (connectTarget, error) {
	if o.service != "" {
		if err := discovery.ValidName(o.service); err != nil {
			return connectTarget{}, usagef("--service: %v", err)
		}
		return connectTarget{service: o.service}, nil
	}
	arg, err := parseSIDArg(args[0])
	if err != nil {
		return connectTarget{}, err
	}
	port, err := parsePort(args[1])
	if err != nil {
		return connectTarget{}, err
	}
	return connectTarget{arg: arg, port: port}, nil
}

// find returns the SID and port to dial, within d; a short SID, once
// resolved, stays resolved.
func (t *connectTarget) find(ctx context.Context, a meshAccess, d time.Duration) (identity.SID, uint16, error) {
	if t.service != "" {
		ans, err := findService(ctx, a, t.service, d)
		if err != nil {
			return identity.SID{}, 0, err
		}
		return ans.SID, ans.Port, nil
	}
	sid, err := t.arg.resolve(ctx, a, d)
	if err != nil {
		return identity.SID{}, 0, err
	}
	t.arg = sidArg{sid: sid}
	return sid, t.port, nil
}

func (o *connectOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	ctx := cmd.Context()
	tgt, err := o.target(args)
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
	target, err := o.forwardTarget()
	if err != nil {
		return err
	}
	var ln net.Listener
	if target != "" {
		if ln, err = listenTCP(target); err != nil {
			return err
		}
		defer ln.Close()
	}
	cfg := msp.Config{Logger: g.logger()}
	// dial finds the target and opens a session to it, all within
	// --timeout: over split transport straight to the listener (no mesh
	// node, so the SID must be given in full), else through the mesh.
	var sid identity.SID
	var port uint16
	var dialVia func(ctx context.Context) (*msp.Session, error)
	if split {
		if tgt.service != "" || tgt.arg.prefix != "" {
			return usagef("--split reaches one listener directly, without the mesh: give its full SID and MDPPORT")
		}
		sid, port = tgt.arg.sid, tgt.port
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
		dialVia = func(ctx context.Context) (*msp.Session, error) {
			var err error
			if sid, port, err = tgt.find(ctx, node, o.timeout); err != nil {
				return nil, err
			}
			if tgt.service != "" {
				fmt.Fprintf(g.stderr, "servald: service %s is at %s port %d\n", tgt.service, sid, port)
			}
			return dialSession(ctx, node, sid, port, cfg)
		}
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
	// the next connection (with --service, to the nearest node offering it
	// then).
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
