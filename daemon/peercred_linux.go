package daemon

import (
	"fmt"
	"net"
	"syscall"
)

// peerCred returns the uid and pid of the process that connected c
// (SO_PEERCRED: as of its connect).
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	var cred *syscall.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", cerr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
