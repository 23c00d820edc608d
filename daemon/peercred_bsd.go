//go:build darwin || freebsd

package daemon

import "golang.org/x/sys/unix"

// fdPeerCred returns the uid of the process that connected the Unix
// socket fd (LOCAL_PEERCRED); the pid is not known (0).
func fdPeerCred(fd int) (uid, pid int, err error) {
	cred, err := unix.GetsockoptXucred(fd, unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	if err != nil {
		return 0, 0, err
	}
	return int(cred.Uid), 0, nil
}
