package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/forward"
	"github.com/servald/servald/identity"
	inst "github.com/servald/servald/instance"
	"github.com/servald/servald/msp"
	"github.com/servald/servald/msp/splitmsp"
	"github.com/servald/servald/splitter"
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

// parseListenPort parses the MDP port of msp listen: not the node's
// discovery port.
func parseListenPort(s string) (uint16, error) {
	p, err := parsePort(s)
	if err == nil && p == discovery.Port {
		return 0, usagef("MDP port %d is the node's service discovery port: choose another", p)
	}
	return p, err
}

func parseTarget(s string) (string, error) {
	t, err := forward.ParseTarget(s)
	if err != nil {
		return "", usagef("--forward: %v", err)
	}
	return t, nil
}

// tunnelFlags are --once, --forward and --idle-timeout, alike on every
// listen and connect.
type tunnelFlags struct {
	once        bool
	forward     string
	idleTimeout time.Duration
}

func (f *tunnelFlags) addFlags(fs *pflag.FlagSet, connect bool) {
	fs.DurationVar(&f.idleTimeout, "idle-timeout", forward.DefaultIdleTimeout, "with --forward, close a connection on which no byte moved either way for this long (0: never)")
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
	if err := f.checkIdle(); err != nil {
		return "", err
	}
	if f.forward == "" {
		return "", nil
	}
	return parseTarget(f.forward)
}

// checkIdle refuses a negative --idle-timeout.
func (f *tunnelFlags) checkIdle() error {
	if f.idleTimeout < 0 {
		return usagef("--idle-timeout must not be negative")
	}
	return nil
}

// forwarder serves --forward with --once and --idle-timeout.
func (f *tunnelFlags) forwarder(log *slog.Logger) *forward.Forwarder {
	return &forward.Forwarder{Once: f.once, IdleTimeout: f.idleTimeout, Logger: log}
}

type listenOptions struct {
	node  nodeOptions
	split splitOptions
	tunnelFlags
	udp     inst.UDPFlags
	socks   bool
	to      []string
	service string
	allow   []string
	stats   time.Duration
}

func newListenCmd(g *globals) *cobra.Command {
	o := &listenOptions{}
	cmd := &cobra.Command{
		Use:   "listen [--once] [--forward=[HOST:]TCPPORT|unix:PATH | --socks --to=RULE...] [--service=NAME] [--allow=SID]... [--split=[HOST:]PORT [--fec=D:P]] MDPPORT",
		Short: "Accept MSP connections on MDPPORT; forward each to a TCP port, a Unix socket, the destination a SOCKS client names, or stdin/stdout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	o.tunnelFlags.addFlags(fs, false)
	fs.Lookup("forward").Usage += "; unix:PATH: a Unix socket"
	o.udp.AddFlags(fs)
	fs.BoolVar(&o.socks, "socks", false, "be a SOCKS5 exit (for msp connect --socks): connect each stream to the destination it names, if --to allows it")
	fs.StringArrayVar(&o.to, "to", nil, "with --socks: allow destinations CIDR|HOST[:PORT|:LOW-HIGH] (repeatable; * for all)")
	fs.StringVar(&o.service, "service", "", "answer service discovery for NAME")
	fs.StringArrayVar(&o.allow, "allow", nil, "only this SID may connect (repeatable)")
	fs.DurationVar(&o.stats, "stats", 0, statsUsage)
	o.split.addFlags(fs, false)
	o.node.addFlags(fs)
	return cmd
}

// parse checks the arguments and flags of msp listen.
func (o *listenOptions) parse(args []string, g *globals) (port uint16, ends inst.ListenEnd, allow []inst.SIDArg, err error) {
	if port, err = parseListenPort(args[0]); err != nil {
		return
	}
	if err = o.checkIdle(); err != nil {
		return
	}
	if ends, err = o.udp.With(inst.EndFlags{Once: o.once, Forward: o.forward, SocksExit: o.socks, To: o.to, Logger: g.logger()}).ListenEnd(len(o.allow) > 0); err != nil {
		return
	}
	if o.service != "" {
		if err = discovery.ValidName(o.service); err != nil {
			err = usagef("--service: %v", err)
			return
		}
	}
	allow = make([]inst.SIDArg, len(o.allow))
	for i, a := range o.allow {
		if allow[i], err = inst.ParsePinnedSIDArg(a); err != nil {
			err = usagef("--allow: %v", err)
			return
		}
	}
	return
}

func (o *listenOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	port, ends, allowArgs, err := o.parse(args, g)
	if err != nil {
		return err
	}
	ts, err := startStats(cmd.Context(), g, o.stats)
	if err != nil {
		return err
	}
	defer ts.Stop() // after the listener closed
	splitCfg, split, err := o.split.config(cmd.Flags(), false, g)
	if err != nil {
		return err
	}
	node, err := g.access(&o.node, cmd.Flags())
	if err != nil {
		return err
	}
	defer node.Close()
	allow, err := inst.AllowList(cmd.Context(), node, allowArgs, allowWait, func(arg string, sid identity.SID) {
		fmt.Fprintf(g.stderr, "servald: --allow %s is %s\n", arg, sid)
	})
	if err != nil {
		return err
	}
	lis, err := inst.ListenService(node, port, msp.Config{Allow: allow, Logger: g.logger()}, ends.Shown(o.service), g.say)
	if err != nil {
		return err
	}
	defer lis.Close()
	var splitLn *splitter.Listener
	if split {
		ss, err := o.listenSplit(lis.Listener, splitCfg)
		if err != nil {
			return err
		}
		splitLn = ss.Listener()
		defer func() { ss.Close(); reportListener(g, splitLn) }()
	}
	o.printListening(cmd, g, node, port, ends.ConnectFlag(), splitLn)
	return o.serve(cmd, g, lis.Listener, ts.Accept(lis.Listener), ends)
}

// listenSplit also serves the MSP listener on --split.
func (o *listenOptions) listenSplit(lis *msp.Listener, cfg splitter.Config) (*splitmsp.Server, error) {
	// An unauthenticated peer gets one block of reorder memory; MSP opens
	// the window once its handshake proved the peer.
	cfg.GatedWindow = true
	ln, err := inst.ListenSplit("--split", o.split.addr, cfg)
	if err != nil {
		return nil, err
	}
	return splitmsp.Serve(lis, ln), nil
}

// printListening tells where the listener is and how to connect to it.
func (o *listenOptions) printListening(cmd *cobra.Command, g *globals, node inst.Mesh, port uint16, fwd string, splitLn *splitter.Listener) {
	sid := node.Identity().SID()
	fmt.Fprintf(g.stderr, "servald: listening as %s on MDP port %d (UDP %s)\n", sid, port, node.UDPAddr())
	peer := inst.HintAddr(node.UDPAddr())
	fmt.Fprintf(g.stderr, "servald: connect with: servald msp connect --udp :0 --peer %s %s%s %d\n", peer, fwd, sid, port)
	fmt.Fprintln(g.stderr, "servald: "+inst.ListenerTicket(node, port, o.service, fwd))
	if splitLn != nil {
		fmt.Fprintf(g.stderr, "servald: split sessions on TCP %s (fec %s)\n", splitLn.Addr(), o.split.fec)
		fmt.Fprintf(g.stderr, "servald: or over split transport: servald msp connect --split=%s%s %s%s %d\n",
			inst.HintAddr(splitLn.Addr()), o.split.hintFlags(cmd.Flags()), fwd, sid, port)
	}
}

// serve forwards each stream to the --forward target or the SOCKS
// destination it names, or joins one to stdin/stdout, then shuts the
// listener down gracefully.
func (o *listenOptions) serve(cmd *cobra.Command, g *globals, lis *msp.Listener, accept func(context.Context) (net.Conn, error), ends inst.ListenEnd) error {
	ctx := cmd.Context()
	if ends.UDP != nil {
		return ends.ServeUDP(ctx, lis)
	}
	if !ends.Stdio() {
		ends.Forwarder = o.forwarder(g.logger())
		err := ends.Serve(ctx, accept)
		if errors.Is(err, context.Canceled) {
			return nil // stopped by a signal
		}
		if err != nil {
			return err
		}
		return shutdown(lis.Shutdown)
	}
	st, err := accept(ctx)
	if err != nil {
		return fmt.Errorf("no connection: %w", err)
	}
	if _, _, err = forward.Join(ctx, forward.TerminalStdio(cmd.InOrStdin(), cmd.OutOrStdout()), st); err != nil {
		return fmt.Errorf("stream broke: %w", err)
	}
	return shutdown(lis.Shutdown)
}

// shutdown runs a graceful shutdown, for at most 5 s.
func shutdown(f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(ctx)
}

// connectStreams is the MaxStreams of connect's sessions, and so the
// connections connect --forward holds at once (forward.MaxConns). It is
// kept below the listener's MaxStreams (4096 by default): a stream that
// connect evicts is only half-closed at the listener until its target
// answers the EOF, and meanwhile still counts there; the difference is
// room for such streams, so that the stream that replaces one is not
// refused.
const connectStreams = forward.MaxConns

// allowWait bounds how long `msp listen` waits for the mesh to learn a
// node named by a short SID in --allow.
const allowWait = 5 * time.Second

type connectOptions struct {
	node  nodeOptions
	split splitOptions
	tunnelFlags
	udp              inst.UDPFlags
	socks, socksAuth string
	service          string
	serviceSID       string
	timeout, stats   time.Duration
	ticket           *inst.Ticket // the TICKET argument, if given
	mesh             inst.Mesh    // the mesh sessions go through (nil over --split)
}

func newConnectCmd(g *globals) *cobra.Command {
	o := &connectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [--once] [--forward=[HOST:]TCPPORT|unix:PATH | --socks=[HOST:]PORT [--socks-auth=FILE]] [--split=HOST:PORT [--conns=N] [--fec=D:P]] (SID MDPPORT | TICKET | --service=NAME)",
		Short: "Connect to an MSP listener; serve a local TCP port, Unix socket or SOCKS5 port through it, or stdin/stdout",
		Long: `Connect to the MSP listener at SID MDPPORT, or, with --service=NAME, to the
nearest node that answers service discovery for NAME (at the MDP port it
names). SID may be shortened to a unique prefix of at least 8 hex digits of
a node the mesh knows. A TICKET (svd1..., as msp listen prints it) gives
SID, MDPPORT and addresses to add as peers (README.md, With a ticket).
With --forward, listen on a local TCP port (or Unix
socket, mode 0600) and tunnel each connection; with --socks, run a SOCKS5
server for a listener started with --socks; without either, tunnel
stdin/stdout over one connection.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if o.service != "" {
				if len(args) != 0 {
					return usagef("with --service, give no SID or MDPPORT: the service's answer names them")
				}
				return nil
			}
			return cobra.RangeArgs(1, 2)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	o.tunnelFlags.addFlags(fs, true)
	fs.Lookup("forward").Usage += "; unix:PATH: a Unix socket (0600, removed on exit)"
	o.udp.AddFlags(fs)
	fs.StringVar(&o.socks, "socks", "", "run a SOCKS5 server on local TCP [HOST:]PORT (default host 127.0.0.1) for the exit at SID MDPPORT (msp listen --socks), which resolves names")
	fs.StringVar(&o.socksAuth, "socks-auth", "", "with --socks: require a username and password (RFC 1929) from FILE, one user:password a line")
	fs.StringVar(&o.service, "service", "", "connect to the nearest node offering service NAME (instead of SID MDPPORT); the same node on every redial while it offers it")
	fs.StringVar(&o.serviceSID, "service-sid", "", "with --service: take it only from this node (full SID or a prefix of 16+ hex digits)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the SID (or a node offering --service) to answer")
	fs.DurationVar(&o.stats, "stats", 0, statsUsage)
	o.split.addFlags(fs, true)
	o.node.addFlags(fs)
	return cmd
}

func (o *connectOptions) target(args []string) (inst.Target, error) {
	if o.service != "" {
		if err := discovery.ValidName(o.service); err != nil {
			return inst.Target{}, usagef("--service: %v", err)
		}
		if o.serviceSID != "" {
			if _, err := inst.ParsePinnedSIDArg(o.serviceSID); err != nil {
				return inst.Target{}, usagef("--service-sid: %v", err)
			}
		}
		return inst.Target{Service: o.service, ServiceSID: o.serviceSID}, nil
	}
	if o.serviceSID != "" {
		return inst.Target{}, usagef("--service-sid needs --service")
	}
	if len(args) == 1 { // a ticket: its addresses become peers of an embedded node
		tk, err := inst.ParseTicketArg(args[0])
		if err != nil {
			return inst.Target{}, err
		}
		o.ticket, o.node.peers = &tk, append(o.node.peers, inst.PeerStrings(tk.Addrs)...)
		return tk.Target(), nil
	}
	arg, err := inst.ParseSIDArg(args[0])
	if err != nil {
		return inst.Target{}, err
	}
	port, err := parsePort(args[1])
	if err != nil {
		return inst.Target{}, err
	}
	return inst.Target{SID: arg, Port: port}, nil
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
	if err := o.checkIdle(); err != nil {
		return err
	}
	ends, err := o.udp.With(inst.EndFlags{Once: o.once, Forward: o.forward, Socks: o.socks, SocksAuth: o.socksAuth, Logger: g.logger()}).ConnectEnd()
	if err != nil {
		return err
	}
	ts, err := startStats(ctx, g, o.stats)
	if err != nil {
		return err
	}
	defer ts.Stop() // after the sessions closed
	var ln net.Listener
	if ends.Addr.Addr != "" {
		if ln, err = ends.Addr.Listen(ctx); err != nil {
			return err
		}
		defer ln.Close()
	}
	rd, done, err := o.redialer(cmd, g, tgt, split, splitCfg)
	if err != nil {
		return err
	}
	defer done()
	defer rd.Close() // the current session, after any redial
	rd.Watch(ts.Add)
	sess, err := rd.Session(ctx)
	if err != nil {
		return err
	}
	if ends.UDP != nil {
		return ends.ServeUDP(ctx, rd, g.stderr)
	}
	if ln == nil {
		st, err := rd.OpenStream(ctx) // on the session just dialled, counted by ts
		if err != nil {
			return err
		}
		jctx, cancel := inst.WhileAttached(ctx, o.mesh, sess)
		defer cancel()
		if _, _, err = forward.Join(jctx, forward.TerminalStdio(cmd.InOrStdin(), cmd.OutOrStdout()), st); err != nil {
			return inst.StreamBroke(o.mesh, err)
		}
		return shutdown(rd.Shutdown)
	}
	return o.serveLocal(ctx, g, ends, ln, rd)
}

// serveLocal tunnels each connection to ln through rd: a session that ended
// (the peer restarted, say) is dialled again for the next connection (with
// --service, to the node offering it then).
func (o *connectOptions) serveLocal(ctx context.Context, g *globals, ends inst.ConnectEnd, ln net.Listener, rd *inst.Redialer) error {
	sid, port := rd.Target()
	fmt.Fprintf(g.stderr, "servald: %s to %s port %d\n", ends.Describe(ln), sid, port)
	// Each connection holds a stream: beyond the streams a session allows,
	// the forwarder evicts one instead of failing the newcomer's open.
	ends.Forwarder = o.forwarder(g.logger())
	ends.Forwarder.MaxConns = connectStreams
	err := ends.Serve(ctx, ln, rd.OpenStream)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err == nil {
		shutdown(rd.Shutdown)
	}
	return err
}

// redialer finds the target and opens sessions to it, each dial within
// --timeout: over split transport straight to the listener (no mesh node,
// so the SID must be given in full), else through the mesh. done closes
// what it opened, after the last session has closed.
func (o *connectOptions) redialer(cmd *cobra.Command, g *globals, tgt inst.Target, split bool, splitCfg splitter.Config) (rd *inst.Redialer, done func(), err error) {
	cfg := msp.Config{Logger: g.logger(), MaxStreams: connectStreams}
	if split {
		if tgt.Service != "" || tgt.SID.IsShort() {
			return nil, nil, usagef("--split reaches one listener directly, without the mesh: give its full SID and MDPPORT")
		}
		id, err := g.identity()
		if err != nil {
			return nil, nil, err
		}
		d := &splitmsp.Dialer{Addr: o.split.addr, Config: splitCfg, Identity: id}
		find := func(context.Context) (identity.SID, uint16, error) { return tgt.SID.SID(), tgt.Port, nil }
		return inst.NewRedialer(o.timeout, find, splitDial(d, cfg)), func() { reportSessions(g, &d.Sessions) }, nil
	}
	node, err := g.access(&o.node, cmd.Flags())
	if err != nil {
		return nil, nil, err
	}
	o.mesh = node
	for _, note := range o.ticket.Notes(node) {
		fmt.Fprintln(g.stderr, "servald: "+note)
	}
	tgt.Say = g.say
	if o.forward != "" || o.socks != "" {
		inst.Announce(node, g.say) // stdio cannot outlive the daemon: no lines
	}
	find := func(ctx context.Context) (identity.SID, uint16, error) {
		short := tgt.SID.Prefix()
		sid, port, err := tgt.Find(ctx, node, o.timeout)
		if err == nil && short != "" {
			fmt.Fprintf(g.stderr, "servald: %s is %s\n", short, sid)
		}
		return sid, port, err
	}
	dial := func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error) {
		return inst.DialSession(ctx, node, sid, port, cfg, inst.Shown{Service: tgt.Service})
	}
	return inst.NewRedialer(o.timeout, find, dial), func() { node.Close() }, nil
}
