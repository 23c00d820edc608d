package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/servald/servald/daemon"
	inst "github.com/servald/servald/instance"
)

// startTimeout bounds how long `servald start` waits for the daemon it
// launched to answer.
const startTimeout = 30 * time.Second

// stopTimeout bounds how long `servald stop` waits for the daemon to end.
const stopTimeout = 15 * time.Second

type startOptions struct {
	node       nodeOptions
	foreground bool
	notifyFD   int
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
	if o.foreground {
		return o.runForeground(cmd, g, dir)
	}
	return o.runDetached(cmd, g, dir)
}

// runForeground runs the node and its control socket in this process.
func (o *startOptions) runForeground(cmd *cobra.Command, g *globals, dir string) error {
	lock, err := daemon.LockPidFile(dir)
	if err != nil {
		var re *daemon.RunningError
		if errors.As(err, &re) {
			return alreadyRunning(re.PID)
		}
		return err
	}
	node, err := inst.StartNode(dir, o.node.options(cmd.Flags(), g))
	if err != nil {
		lock.Close()
		return err
	}
	srv, err := daemon.Listen(daemon.Config{Dir: dir, Node: node, Lock: lock, Logger: g.logger()})
	if err != nil {
		node.Close()
		lock.Close()
		return err
	}
	fmt.Fprintf(g.stderr, "servald: started, SID %s pid %d UDP %s\n", node.SID(), os.Getpid(), node.LocalAddr())
	if o.notifyFD > 0 {
		if f := os.NewFile(uintptr(o.notifyFD), "notify"); f != nil {
			f.WriteString("ok\n")
			f.Close()
		}
	}
	err = srv.Serve(cmd.Context())
	// Serve removed the socket; free the UDP port and the instance before
	// telling a waiting `servald stop` (srv.Close) that we are gone.
	node.Close()
	lock.Close()
	srv.Close()
	fmt.Fprintln(g.stderr, "servald: stopped")
	return err
}

func alreadyRunning(pid int) error {
	if pid == 0 {
		return errors.New("already running")
	}
	return fmt.Errorf("already running (pid %d)", pid)
}

// runDetached re-executes this program as a detached daemon and waits
// until it serves, or reports why it did not.
func (o *startOptions) runDetached(cmd *cobra.Command, g *globals, dir string) error {
	if pid, running := daemon.Probe(dir); running {
		return alreadyRunning(pid)
	}
	args, err := o.childArgs(cmd.Flags(), g, dir)
	if err != nil {
		return err
	}
	// A damaged keyring is reported here, with its own message.
	if _, err := g.identity(); err != nil {
		return err
	}
	logPath := filepath.Join(dir, daemon.LogName)
	child, pr, err := spawnDaemon(args, logPath)
	if err != nil {
		return err
	}
	defer pr.Close()
	if err := waitNotify(cmd.Context(), child, pr, logPath); err != nil {
		return err
	}
	child.Process.Release()
	ctx, cancel := context.WithTimeout(cmd.Context(), inst.DaemonTimeout)
	defer cancel()
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if err != nil {
		return fmt.Errorf("the daemon started but does not answer: %w", err)
	}
	defer c.Close()
	fmt.Fprintf(g.stderr, "servald: started, SID %s pid %d UDP %s\n", c.SID(), c.PID(), c.UDPAddr())
	return nil
}

// spawnDaemon starts this program detached with args, its output to the
// log at logPath; the child writes "ok" to the returned pipe once serving.
func spawnDaemon(args []string, logPath string) (*exec.Cmd, *os.File, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("cannot find this program to start the daemon: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("daemon log: %w", err)
	}
	defer logf.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, err
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, err
	}
	child := exec.Command(exe, args...)
	child.Env = withoutEnv(os.Environ(), "SERVALINSTANCE_PATH")
	child.Stdin, child.Stdout, child.Stderr = devnull, logf, logf
	child.ExtraFiles = []*os.File{pw} // fd 3
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		pw.Close()
		pr.Close()
		return nil, nil, fmt.Errorf("start the daemon: %w", err)
	}
	pw.Close()
	return child, pr, nil
}

// waitNotify waits for the child's "ok" on pr, or says why it failed.
func waitNotify(ctx context.Context, child *exec.Cmd, pr *os.File, logPath string) error {
	pr.SetReadDeadline(time.Now().Add(startTimeout))
	stop := context.AfterFunc(ctx, func() { pr.SetReadDeadline(time.Now()) })
	line, rerr := bufio.NewReader(pr).ReadString('\n')
	stop()
	if strings.TrimSpace(line) == "ok" {
		return nil
	}
	if rerr != nil && errors.Is(rerr, os.ErrDeadlineExceeded) {
		child.Process.Kill()
		child.Wait()
		return fmt.Errorf("the daemon did not start within %v; see %s", startTimeout, logPath)
	}
	child.Wait()
	if l := lastLogLine(logPath); l != "" {
		return fmt.Errorf("the daemon failed to start: %s", strings.TrimPrefix(l, "servald: "))
	}
	return fmt.Errorf("the daemon failed to start (%v); see %s", child.ProcessState, logPath)
}

// childArgs are the arguments of the detached daemon: the options given
// here (only those given, so that a config file keeps its say), with the
// instance directory and paths made absolute.
func (o *startOptions) childArgs(fs *pflag.FlagSet, g *globals, dir string) ([]string, error) {
	// Check the options now, so that a mistake is a usage error here.
	if err := o.node.options(fs, g).Check(); err != nil {
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
	if fs.Changed("config") {
		abs, err := filepath.Abs(o.node.config)
		if err != nil {
			return nil, err
		}
		args = append(args, "--config", abs)
	}
	return args, nil
}

func withoutEnv(env []string, name string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, name+"=") {
			out = append(out, e)
		}
	}
	return out
}

// lastLogLine returns the last non-empty line of the daemon's log.
func lastLogLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.TrimSpace(lines[len(lines)-1]))
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
			c, err := dialDaemon(ctx, dir)
			if err != nil {
				return err
			}
			defer c.Close()
			pid, err := c.Stop(ctx)
			if err != nil {
				return err
			}
			if err := waitExit(ctx, pid); err != nil {
				return err
			}
			fmt.Fprintf(g.stderr, "servald: stopped (pid %d)\n", pid)
			return nil
		},
	}
}

// dialDaemon connects to the instance's daemon; "not running" when none
// answers.
func dialDaemon(ctx context.Context, dir string) (*daemon.Client, error) {
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if errors.Is(err, daemon.ErrNotRunning) {
		if pid, running := daemon.Probe(dir); running {
			return nil, fmt.Errorf("the daemon (pid %d) holds %s but does not answer on its socket", pid, dir)
		}
		return nil, errors.New("not running")
	}
	return c, err
}

// waitExit waits until process pid has exited (or is a zombie).
func waitExit(ctx context.Context, pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || isZombie(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the daemon (pid %d) released the instance but has not exited", pid)
		case <-t.C:
		}
	}
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Say whether this instance's daemon runs, and its SID, pid, UDP address and neighbours (exit 1 if it does not run)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			dir, err := g.daemonDir()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), inst.DaemonTimeout)
			defer cancel()
			c, err := dialDaemon(ctx, dir)
			if err != nil {
				return err
			}
			defer c.Close()
			st, err := c.Status(ctx)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, "running")
			fmt.Fprintf(out, "SID: %s\n", st.SID)
			fmt.Fprintf(out, "pid: %d\n", st.PID)
			fmt.Fprintf(out, "UDP: %s\n", st.UDP)
			fmt.Fprintf(out, "neighbours: %d\n", st.Neighbours)
			fmt.Fprintf(out, "routes: %d\n", st.Routes)
			fmt.Fprintf(out, "uptime: %s\n", st.Uptime.Round(time.Second))
			return nil
		},
	}
}
