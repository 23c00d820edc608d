package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/servald/servald/daemon"
	inst "github.com/servald/servald/instance"
)

// stopTimeout bounds how long `servald stop` waits for the daemon to end.
const stopTimeout = 15 * time.Second

type startOptions struct {
	node       nodeOptions
	foreground bool
	notifyFD   int
	metrics    inst.MetricsOptions
}

func newStartCmd(g *globals) *cobra.Command {
	o := &startOptions{}
	cmd := &cobra.Command{
		Use:   "start [--foreground]",
		Short: "Start this instance's daemon: a long-lived node that msp, id peers, route print and service find use while it runs",
		Long: `Start this instance's daemon: a long-lived node (a relay for others) that
msp listen/connect, id peers, route print and service find in the same
instance use, over the Unix socket DIR/servald.sock, instead of starting a
node of their own. Without --foreground it detaches, logs to
DIR/servald.log, writes its pid to DIR/servald.pid, and this command
returns once it answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, g)
		},
	}
	fs := cmd.Flags()
	fs.BoolVar(&o.foreground, "foreground", false, "run in this process until SIGINT/SIGTERM or servald stop")
	fs.IntVar(&o.notifyFD, "notify-fd", 0, "file descriptor to write \"ok\" to once serving (used when detaching)")
	fs.MarkHidden("notify-fd")
	fs.StringVar(&o.metrics.Addr, "metrics", "", "serve Prometheus metrics at http://[HOST:]PORT/metrics (HOST 127.0.0.1 unless given: loopback)")
	fs.BoolVar(&o.metrics.Pprof, "pprof", false, "also serve the Go profiler at /debug/pprof/ on the --metrics address")
	o.node.addFlags(fs)
	return cmd
}

// daemonDir returns the instance directory as an absolute path.
func (g *globals) daemonDir() (string, error) {
	dir, err := g.instanceDir()
	if err != nil {
		return "", err
	}
	return filepath.Abs(dir)
}

func (o *startOptions) run(cmd *cobra.Command, g *globals) error {
	dir, err := g.daemonDir()
	if err != nil {
		return err
	}
	if err := o.metrics.Check(!o.foreground); err != nil {
		return err
	}
	if o.foreground {
		return o.runForeground(cmd, g, dir)
	}
	return o.runDetached(cmd, g, dir)
}

// runForeground runs the node and its control socket in this process.
func (o *startOptions) runForeground(cmd *cobra.Command, g *globals, dir string) error {
	defer inst.DetachedLog(o.notifyFD, dir, &g.stderr)()
	lock, err := inst.LockInstance(dir)
	if err != nil {
		inst.NotifyHeld(o.notifyFD, err)
		return err
	}
	opts := o.node.options(cmd.Flags(), g)
	node, err := inst.StartNode(dir, opts)
	if err != nil {
		lock.Close()
		return err
	}
	probes, err := inst.ServeProbes(node, opts)
	if err != nil {
		node.Close()
		lock.Close()
		return err
	}
	if probes != nil {
		defer probes.Close()
	}
	srv, err := daemon.Listen(daemon.Config{Dir: dir, Node: node, Lock: lock, Logger: g.logger(), Peers: opts.PeersIn(dir), Version: versionString()})
	if err != nil {
		node.Close()
		lock.Close()
		return err
	}
	ms, err := inst.ServeMetrics(inst.DaemonSource(node, srv), o.metrics, g.logger())
	if err != nil {
		srv.Close()
		node.Close()
		lock.Close()
		return err
	}
	defer ms.Close()
	fmt.Fprintf(g.stderr, "servald: started, SID %s pid %d UDP %s\n", node.SID(), os.Getpid(), node.LocalAddr())
	fmt.Fprint(g.stderr, ms.Notice())
	inst.NotifyReady(o.notifyFD, g.logger())
	err = srv.Serve(cmd.Context())
	inst.SystemdNotify("STOPPING=1")
	// Serve removed the socket; free the UDP port and the instance before
	// telling a waiting `servald stop` (srv.Close) that we are gone.
	node.Close()
	lock.Close()
	srv.Close()
	fmt.Fprintln(g.stderr, "servald: stopped")
	return err
}

// runDetached re-executes this program as a detached daemon and waits
// until it serves, or reports why it did not.
func (o *startOptions) runDetached(cmd *cobra.Command, g *globals, dir string) error {
	if pid, running := daemon.Probe(dir); running {
		return inst.Running(cmd.Context(), dir, pid)
	}
	args, err := o.childArgs(cmd.Flags(), g, dir)
	if err != nil {
		return err
	}
	// A damaged keyring is reported here, with its own message.
	if _, err := g.identity(); err != nil {
		return err
	}
	c, err := inst.StartDaemon(cmd.Context(), dir, args)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(g.stderr, "servald: started, SID %s pid %d UDP %s\n", c.SID(), c.PID(), c.UDPAddr())
	fmt.Fprint(g.stderr, o.metrics.Notice())
	return nil
}

// childArgs are the arguments of the detached daemon: the options given
// here (only those given, so that a config file keeps its say), with the
// instance directory and paths made absolute.
func (o *startOptions) childArgs(fs *pflag.FlagSet, g *globals, dir string) ([]string, error) {
	// Check the options now, so that a mistake is a usage error here.
	if err := o.node.options(fs, g).Check(dir); err != nil {
		return nil, err
	}
	args := []string{"start", "--foreground", "--notify-fd", "3", "--instance", dir}
	for i := 0; i < g.verbose; i++ {
		args = append(args, "-v")
	}
	if fs.Changed("udp") {
		args = append(args, "--udp", o.node.udp)
	}
	if fs.Changed("peer") {
		for _, p := range o.node.peers {
			args = append(args, "--peer", p)
		}
	}
	if fs.Changed("broadcast") {
		args = append(args, "--broadcast="+strings.Join(o.node.broadcast, ","))
	}
	for _, sid := range o.node.trust {
		args = append(args, "--trust", sid)
	}
	if o.node.noEcho {
		args = append(args, "--no-echo")
	}
	args = append(args, o.metrics.Args()...)
	if fs.Changed("config") {
		abs, err := filepath.Abs(o.node.config)
		if err != nil {
			return nil, err
		}
		args = append(args, "--config", abs)
	}
	return args, nil
}

func newStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop",
		Short: "Stop this instance's daemon and wait until it has exited",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.daemonDir()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), stopTimeout)
			defer cancel()
			pid, err := inst.StopDaemon(ctx, dir)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "servald: stopped (pid %d)\n", pid)
			return nil
		},
	}
}

// say writes one status line to stderr ("servald: MSG").
func (g *globals) say(msg string) { fmt.Fprintln(g.stderr, "servald: "+msg) }
