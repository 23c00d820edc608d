package main

// split listen / split connect: a plain point-to-point tunnel over the
// splitter. One splitter session (N TCP connections with Reed-Solomon FEC)
// carries one tunnelled connection; there is no MSP, no mesh node and no
// keyring, so nothing is authenticated or encrypted.
//
//	connect: TCP accept (or stdio) -> splitter.Dial -> Join
//	listen:  splitter.Listener.AcceptContext -> TCP dial of the target (or stdio) -> Join

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/msp/splitmsp"
	"github.com/servald/servald/splitter"

	inst "github.com/servald/servald/instance"
)

func newSplitCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "split",
		Short: "Tunnel TCP or stdio over many TCP connections with FEC, point to point (not authenticated, not encrypted)",
		Long: `A plain point-to-point tunnel over split transport: each tunnelled
connection is one splitter session of N TCP connections with Reed-Solomon
FEC, with no mesh node, no keys and no MSP.

The tunnel is neither authenticated nor encrypted: anyone who reaches the
listener's port gets its forward target (or its stdin/stdout), and anyone
on the path reads and can change the bytes. For authentication and
encryption use msp listen/connect --split.`,
	}
	cmd.AddCommand(newSplitListenCmd(g), newSplitConnectCmd(g))
	return cmd
}

// splitTunnelConfig adjusts splitter settings for a session that is the
// tunnelled connection itself: Close may wait as long for the far end to
// take the last bytes as a session waits for a lost peer to come back.
func splitTunnelConfig(cfg splitter.Config) splitter.Config {
	cfg.Linger = cfg.PeerTimeout
	return cfg
}

type splitListenOptions struct {
	params splitParams
	tunnelFlags
}

func newSplitListenCmd(g *globals) *cobra.Command {
	o := &splitListenOptions{}
	cmd := &cobra.Command{
		Use:   "listen [--once] [--forward=[HOST:]TCPPORT] [--fec=D:P] [--payload=BYTES] ADDR",
		Short: "Accept split sessions on TCP [HOST:]PORT; forward each to a TCP port, or stdin/stdout",
		Long: `Accept split sessions on TCP ADDR, [HOST:]PORT (no HOST: every interface;
port 0: any free port, printed). With --forward, connect each session to
that TCP target; without it, tunnel stdin/stdout over one session.

Not authenticated, not encrypted: anyone who reaches ADDR gets the forward
target (or this process's stdin/stdout). For authentication and encryption
use msp listen/connect --split.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	o.tunnelFlags.addFlags(fs, false)
	o.params.addFlags(fs, false, "")
	return cmd
}

func (o *splitListenOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	ctx := cmd.Context()
	addr, err := inst.ParseSplitAddr("ADDR", args[0], false)
	if err != nil {
		return err
	}
	target, err := o.forwardTarget()
	if err != nil {
		return err
	}
	cfg, err := o.params.config(false, g)
	if err != nil {
		return err
	}
	ln, err := inst.ListenSplit("split listen", addr, splitTunnelConfig(cfg))
	if err != nil {
		return err
	}
	log := g.logger()
	var wg sync.WaitGroup // the goroutine turning sessions away
	defer func() {
		ln.Close()
		wg.Wait()
		reportListener(g, ln)
	}()
	turnAway := sync.OnceFunc(func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ln.TurnAway(log)
		}()
	})
	o.printListening(cmd, g, ln, target)
	if target != "" {
		return o.serveForward(ctx, ln, target, turnAway, log)
	}
	c, err := ln.AcceptContext(ctx)
	if err != nil {
		return fmt.Errorf("no connection: %w", err)
	}
	turnAway()
	if _, _, err := forward.Join(ctx, forward.TerminalStdio(cmd.InOrStdin(), cmd.OutOrStdout()), splitter.Tunnel(c)); err != nil {
		return fmt.Errorf("stream broke: %w", err)
	}
	return nil
}

// printListening tells where the listener is, how to connect to it, and
// that the tunnel is not secured.
func (o *splitListenOptions) printListening(cmd *cobra.Command, g *globals, ln *splitter.Listener, target string) {
	fwd := ""
	if target != "" {
		_, p, _ := net.SplitHostPort(target)
		fwd = " --forward=" + p
	}
	fmt.Fprintf(g.stderr, "servald: split listening on TCP %s (fec %s, payload %d)\n", ln.Addr(), o.params.fec, o.params.payload)
	fmt.Fprintf(g.stderr, "servald: connect with: servald split connect%s%s %s\n", o.params.hintFlags(cmd.Flags()), fwd, inst.HintAddr(ln.Addr()))
	gets := "this process's stdin/stdout"
	if target != "" {
		gets = "a connection to " + target
	}
	fmt.Fprintf(g.stderr, "servald: warning: the tunnel is neither authenticated nor encrypted: anyone who reaches TCP %s gets %s; for authentication and encryption use msp listen/connect --split\n", ln.Addr(), gets)
}

// serveForward connects each session ln accepts to target (with --once,
// one, turning the others away).
func (o *splitListenOptions) serveForward(ctx context.Context, ln *splitter.Listener, target string, turnAway func(), log *slog.Logger) error {
	accept := func(ctx context.Context) (net.Conn, error) {
		c, err := ln.AcceptContext(ctx)
		if err != nil {
			return nil, err
		}
		if o.once {
			turnAway()
		}
		return splitter.Tunnel(c), nil
	}
	return inst.IgnoreCanceled(o.forwarder(log).ServeStreams(ctx, accept, forward.Endpoint{Network: "tcp", Addr: target}))
}

type splitConnectOptions struct {
	params splitParams
	tunnelFlags
	timeout time.Duration
}

func newSplitConnectCmd(g *globals) *cobra.Command {
	o := &splitConnectOptions{}
	cmd := &cobra.Command{
		Use:   "connect [--once] [--forward=[HOST:]TCPPORT] [--conns=N] [--fec=D:P] [--payload=BYTES] [--timeout=10s] HOST:PORT",
		Short: "Connect to a split listener; serve a local TCP port through it, or stdin/stdout",
		Long: `Connect to the split listener at HOST:PORT. With --forward, listen on a
local TCP port and open one split session (of --conns TCP connections) per
connection accepted there; without it, tunnel stdin/stdout over one session.

Not authenticated, not encrypted: whoever answers at HOST:PORT gets the
tunnelled bytes. For authentication and encryption use msp listen/connect
--split.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, g, args)
		},
	}
	fs := cmd.Flags()
	o.tunnelFlags.addFlags(fs, true)
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "how long to wait for the listener to answer")
	o.params.addFlags(fs, true, "")
	return cmd
}

func (o *splitConnectOptions) run(cmd *cobra.Command, g *globals, args []string) error {
	ctx := cmd.Context()
	addr, err := inst.ParseSplitAddr("ADDR", args[0], true)
	if err != nil {
		return err
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	target, err := o.forwardTarget()
	if err != nil {
		return err
	}
	cfg, err := o.params.config(true, g)
	if err != nil {
		return err
	}
	cfg = splitTunnelConfig(cfg)
	var sessions splitmsp.Sessions
	defer reportSessions(g, &sessions) // after every session has closed
	dial := func(ctx context.Context) (*splitter.Conn, error) {
		c, err := splitter.DialRetry(ctx, addr, cfg, o.timeout)
		if err != nil {
			return nil, inst.SplitError(addr, err)
		}
		sessions.Add(c)
		return c, nil
	}

	if target == "" {
		c, err := dial(ctx)
		if err != nil {
			return err
		}
		if _, _, err := forward.Join(ctx, forward.TerminalStdio(cmd.InOrStdin(), cmd.OutOrStdout()), splitter.Tunnel(c)); err != nil {
			return fmt.Errorf("stream broke: %w", err)
		}
		return nil
	}
	return o.serveForward(cmd, g, addr, cfg, target, dial)
}

// serveForward listens on the --forward target and opens a split session
// for each connection accepted there.
func (o *splitConnectOptions) serveForward(cmd *cobra.Command, g *globals, addr string, cfg splitter.Config, target string, dial func(context.Context) (*splitter.Conn, error)) error {
	ln, err := forward.Endpoint{Network: "tcp", Addr: target}.Listen(cmd.Context())
	if err != nil {
		return err
	}
	defer ln.Close()
	return inst.SplitForward(cmd.Context(), o.forwarder(g.logger()), ln, addr, cfg, o.timeout, dial, func() {
		fmt.Fprintf(g.stderr, "servald: forwarding TCP %s to split listener %s (%d connections per session, fec %s)\n", ln.Addr(), addr, cfg.Conns, o.params.fec)
	})
}
