//go:build darwin || freebsd

package daemon

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peerCred returns the uid of the process that connected c
// (LOCAL_PEERCRED); the pid is not known (0).
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	var cred *unix.Xucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", cerr)
	}
	return int(cred.Uid), 0, nil
}
