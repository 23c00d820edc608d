package daemon

import "syscall"

// fdPeerCred returns the uid and pid of the process that connected the
// Unix socket fd (SO_PEERCRED: as of its connect).
func fdPeerCred(fd int) (uid, pid int, err error) {
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return 0, 0, err
	}
	return int(cred.Uid), int(cred.Pid), nil
}
