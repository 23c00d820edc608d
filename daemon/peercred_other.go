//go:build !linux && !darwin && !freebsd

package daemon

// fdPeerCred cannot tell who connected on this system: the socket's mode
// 0600 is the only guard.
func fdPeerCred(fd int) (uid, pid int, err error) { return 0, 0, errNoPeerCred }
