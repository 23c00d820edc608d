package instance

// One node per instance: a node embedded in a command takes the instance
// lock (the daemon's pid file) as the daemon does, so that a second node
// with the same SID, which would silently break the first, is refused.
// The lock is taken before the UDP port is bound, so a port in use is
// never held by a node of the instance: another program or another
// instance holds it.

import (
	"errors"
	"fmt"

	"github.com/servald/servald/daemon"
)

// NodeRunningError means a node of the instance (a daemon, or a command's
// own node) already runs.
type NodeRunningError struct {
	Dir string
	PID int // 0 when unknown
}

func (e *NodeRunningError) Error() string {
	pid := ""
	if e.PID != 0 {
		pid = fmt.Sprintf(" (pid %d)", e.PID)
	}
	return fmt.Sprintf("a node of instance %s already runs%s: stop it, or run `servald start` once and let every tunnel share it", e.Dir, pid)
}

// LockInstance takes the instance lock of dir for a node: a
// *NodeRunningError when another node of the instance holds it.
func LockInstance(dir string) (*daemon.PidFile, error) {
	lock, err := daemon.LockPidFile(dir)
	var re *daemon.RunningError
	if errors.As(err, &re) {
		return nil, &NodeRunningError{Dir: dir, PID: re.PID}
	}
	if err != nil {
		return nil, describeUnsafe(err, "instance directory")
	}
	return lock, nil
}
