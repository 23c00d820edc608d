package instance

// The instance's daemon as a process: starting it detached (this program
// run again with arguments that make it the daemon), asking it to stop and
// waiting until it has exited, and asking for its status.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/internal/logfile"
)

// StartTimeout bounds how long StartDaemon waits for the daemon it
// launched to answer.
const StartTimeout = 30 * time.Second

// StartDaemon runs this program again, detached, with args that make it
// the daemon of instance dir (logging to DIR/servald.log and writing "ok"
// to file descriptor 3 once it serves), waits (at most StartTimeout) until
// it serves, and returns a connection to it. When it did not start, the
// error quotes the last line of its log.
func StartDaemon(ctx context.Context, dir string, args []string) (*daemon.Client, error) {
	if err := PrepareDir(dir); err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, daemon.LogName)
	child, pr, logStart, err := spawnDaemon(args, logPath)
	if err != nil {
		return nil, err
	}
	defer pr.Close()
	if err := waitNotify(ctx, child, pr, logPath, logStart); err != nil {
		var held heldError
		if errors.As(err, &held) {
			// Another start won the race for the instance lock.
			return nil, Running(ctx, dir, int(held))
		}
		return nil, err
	}
	child.Process.Release()
	dctx, cancel := context.WithTimeout(ctx, DaemonTimeout)
	defer cancel()
	c, err := daemon.Dial(dctx, daemon.SocketPath(dir))
	if err != nil {
		return nil, fmt.Errorf("the daemon started but does not answer: %w", err)
	}
	return c, nil
}

// spawnDaemon starts this program detached with args, its output appended
// to the log at logPath (never truncated, a symlink refused, rotated at
// logfile.DefaultMaxSize); the child writes "ok" to the returned pipe once
// serving. logStart is where this run's lines begin in the log.
func spawnDaemon(args []string, logPath string) (child *exec.Cmd, pr *os.File, logStart int64, err error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("cannot find this program to start the daemon: %w", err)
	}
	logf, err := logfile.Open(logPath, logfile.DefaultMaxSize)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("daemon log: %w", describeUnsafe(err, "daemon log"))
	}
	defer logf.Close()
	logStart = logf.Size()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, nil, 0, err
	}
	defer devnull.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, 0, err
	}
	child = exec.Command(exe, args...)
	child.Env = withoutEnv(os.Environ(), "SERVALINSTANCE_PATH")
	child.Stdin, child.Stdout, child.Stderr = devnull, logf.File(), logf.File()
	child.ExtraFiles = []*os.File{pw} // fd 3
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		pw.Close()
		pr.Close()
		return nil, nil, 0, fmt.Errorf("start the daemon: %w", err)
	}
	pw.Close()
	return child, pr, logStart, nil
}

// waitNotify waits for the child's "ok" on pr, or says why it failed.
func waitNotify(ctx context.Context, child *exec.Cmd, pr *os.File, logPath string, logStart int64) error {
	pr.SetReadDeadline(time.Now().Add(StartTimeout))
	stop := context.AfterFunc(ctx, func() { pr.SetReadDeadline(time.Now()) })
	line, rerr := bufio.NewReader(pr).ReadString('\n')
	stop()
	if strings.TrimSpace(line) == "ok" {
		return nil
	}
	if pid, ok := strings.CutPrefix(strings.TrimSpace(line), HeldNotice); ok {
		child.Wait()
		n, _ := strconv.Atoi(strings.TrimSpace(pid))
		return heldError(n)
	}
	if rerr != nil && errors.Is(rerr, os.ErrDeadlineExceeded) {
		child.Process.Kill()
		child.Wait()
		return fmt.Errorf("the daemon did not start within %v; see %s", StartTimeout, logPath)
	}
	child.Wait()
	if l := lastLogLine(logPath, logStart); l != "" {
		return fmt.Errorf("the daemon failed to start: %s", strings.TrimPrefix(l, "servald: "))
	}
	return fmt.Errorf("the daemon failed to start (%v); see %s", child.ProcessState, logPath)
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

// lastLogLine returns the last non-empty line the daemon wrote to its log
// from offset start on (the log is appended to: earlier runs' lines are
// not this run's reason).
func lastLogLine(path string, start int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < start {
		return ""
	}
	b = b[start:]
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return string(bytes.TrimSpace(lines[len(lines)-1]))
}

// HeldNotice starts the line a detached daemon writes to its notify file
// descriptor, followed by the holder's pid, instead of "ok" when another
// node holds the instance lock.
const HeldNotice = "held "

// NotifyHeld tells the start that launched this daemon (its notify file
// descriptor fd, none when 0) that another node holds the instance, when
// err (LockInstance's) says so.
func NotifyHeld(fd int, err error) {
	var nr *NodeRunningError
	if fd <= 0 || !errors.As(err, &nr) {
		return
	}
	if f := os.NewFile(uintptr(fd), "notify"); f != nil {
		fmt.Fprintf(f, "%s%d\n", HeldNotice, nr.PID)
		f.Close()
	}
}

// NotifyReady tells whoever waits that the daemon serves: the start that
// launched it ("ok" on fd, none when 0) and systemd ($NOTIFY_SOCKET,
// Type=notify: READY=1); a failure to tell systemd is logged to log.
func NotifyReady(fd int, log *slog.Logger) {
	if fd > 0 {
		if f := os.NewFile(uintptr(fd), "notify"); f != nil {
			f.WriteString("ok\n")
			f.Close()
		}
	}
	if err := SystemdNotify(fmt.Sprintf("READY=1\nMAINPID=%d", os.Getpid())); err != nil {
		logger(log).Warn("cannot tell systemd the daemon is ready", "err", err)
	}
}

// DetachedLog, in a detached daemon (its notify file descriptor fd > 0),
// sets *w to the daemon's log in instance dir, so that its lines rotate at
// the log's cap while it runs, not only when it starts (its stderr, the
// same file, keeps what the Go runtime itself writes). It returns what
// closes the log; w is left as it is when fd is 0 or the log does not
// open (stderr is the log all the same).
func DetachedLog(fd int, dir string, w *io.Writer) (closeLog func()) {
	if fd <= 0 {
		return func() {}
	}
	l, err := logfile.Open(filepath.Join(dir, daemon.LogName), logfile.DefaultMaxSize)
	if err != nil {
		return func() {}
	}
	*w = l
	return func() { l.Close() }
}

// heldError: the daemon started found the instance lock held by pid.
type heldError int

func (e heldError) Error() string { return fmt.Sprintf("the instance is held by pid %d", int(e)) }

// DaemonRunningError means `servald start` found the instance's daemon
// running already (perhaps started a moment before, by a start that won
// the race).
type DaemonRunningError struct{ PID int }

func (e *DaemonRunningError) Error() string {
	return fmt.Sprintf("a daemon of this instance is already running (pid %d)", e.PID)
}

// runningWait bounds how long Running waits for the holder of an instance
// to answer as its daemon.
const runningWait = 2 * time.Second

// Running says why a daemon of instance dir cannot start while pid holds
// the instance lock: a *DaemonRunningError when a daemon answers on the
// socket within 2 s (one that was starting, say), else a
// *NodeRunningError (a command's own node, or a daemon that hangs).
func Running(ctx context.Context, dir string, pid int) error {
	ctx, cancel := context.WithTimeout(ctx, runningWait)
	defer cancel()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		if c, err := daemon.Dial(ctx, daemon.SocketPath(dir)); err == nil {
			c.Close()
			return &DaemonRunningError{PID: c.PID()}
		}
		select {
		case <-ctx.Done():
			return &NodeRunningError{Dir: dir, PID: pid}
		case <-t.C:
		}
	}
}

// DialDaemon connects to the daemon of instance dir; the error says "not
// running" when none answers, or names the pid of the process that holds
// the instance without answering (a command's own node, or a daemon that
// hangs).
func DialDaemon(ctx context.Context, dir string) (*daemon.Client, error) {
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if errors.Is(err, daemon.ErrNotRunning) {
		if pid, running := daemon.Probe(dir); running {
			return nil, fmt.Errorf("no daemon answers, but pid %d holds %s (a command's own node, or a daemon that does not answer on its socket)", pid, dir)
		}
		return nil, errors.New("not running")
	}
	return c, err
}

// StopDaemon asks the daemon of instance dir to stop and waits until its
// process has exited (or ctx ends); it returns the daemon's pid.
func StopDaemon(ctx context.Context, dir string) (int, error) {
	c, err := DialDaemon(ctx, dir)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	pid, err := c.Stop(ctx)
	if err != nil {
		return 0, err
	}
	if err := WaitExit(ctx, pid); err != nil {
		return 0, err
	}
	return pid, nil
}

// WaitExit waits until process pid has exited (or is a zombie), or ctx
// ends (then the error says the daemon has not exited).
func WaitExit(ctx context.Context, pid int) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) || IsZombie(pid) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the daemon (pid %d) released the instance but has not exited", pid)
		case <-t.C:
		}
	}
}

// IsZombie reports whether process pid has exited but not been reaped
// (Linux /proc; false where it cannot tell).
func IsZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
