package daemon

// The instance lock: the pid file, held with an exclusive flock(2) for as
// long as a daemon runs. The kernel drops the lock when the process dies,
// however it dies, so a pid file or socket left by a killed daemon is known
// to be stale and is cleaned up by the next one.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/servald/servald/internal/safefs"
)

// File names in the instance directory.
const (
	// SocketName is the daemon's control socket.
	SocketName = "servald.sock"
	// PidName is the daemon's pid file (and instance lock).
	PidName = "servald.pid"
	// LogName is where a detached daemon's stderr goes.
	LogName = "servald.log"
)

// SocketPath returns the control socket's path in instance directory dir.
func SocketPath(dir string) string { return filepath.Join(dir, SocketName) }

// PidPath returns the pid file's path in instance directory dir.
func PidPath(dir string) string { return filepath.Join(dir, PidName) }

// lockRetry is how long LockPidFile keeps trying while the lock is held:
// long enough to ride over a Probe, which holds it for a moment.
const lockRetry = 300 * time.Millisecond

// RunningError means another daemon holds the instance.
type RunningError struct {
	PID int // the pid in the pid file; 0 if unreadable
}

func (e *RunningError) Error() string {
	if e.PID == 0 {
		return "daemon: already running"
	}
	return fmt.Sprintf("daemon: already running (pid %d)", e.PID)
}

// PidFile is the locked pid file of a running daemon.
type PidFile struct {
	f    *os.File
	path string
}

// LockPidFile takes the instance lock in dir (creating dir 0700 if needed)
// and writes this process's pid. A *RunningError means another process
// holds it. A directory another user owns or may write to, and a pid file
// that is a symbolic link or not ours, are refused (safefs.ErrUnsafe)
// before anything is written.
func LockPidFile(dir string) (*PidFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	if err := safefs.CheckDir(dir); err != nil {
		return nil, fmt.Errorf("daemon: instance directory: %w", err)
	}
	path := PidPath(dir)
	deadline := time.Now().Add(lockRetry)
	for {
		f, err := safefs.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("daemon: pid file: %w", err)
		}
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			if time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, &RunningError{PID: readPid(path)}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("daemon: lock %s: %w", path, err)
		}
		// The file may have been removed by the daemon that held it just
		// before we locked it: then the lock is on a dead inode.
		if !sameFile(f, path) {
			f.Close()
			continue
		}
		err = f.Truncate(0)
		if err == nil {
			_, err = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("daemon: pid file: %w", err)
		}
		return &PidFile{f: f, path: path}, nil
	}
}

// sameFile reports whether path (not following a symbolic link) is f.
func sameFile(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Lstat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

// Close removes the pid file and releases the lock. It is idempotent.
func (p *PidFile) Close() error {
	if p == nil || p.f == nil {
		return nil
	}
	if sameFile(p.f, p.path) {
		os.Remove(p.path)
	}
	err := p.f.Close()
	p.f = nil
	return err
}

// Probe reports whether a daemon holds the instance lock in dir, and its
// pid.
func Probe(dir string) (pid int, running bool) {
	path := PidPath(dir)
	f, err := safefs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return readPid(path), errors.Is(err, syscall.EWOULDBLOCK)
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return 0, false
}

// readPid reads the pid in the pid file at path; 0 if it is unreadable,
// unsafe or holds no pid.
func readPid(path string) int {
	f, err := safefs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, 33))
	if err != nil || len(b) > 32 {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}
