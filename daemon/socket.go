package daemon

// The control socket is never visible under its name with a wider mode
// than 0600: it is bound in a fresh private directory (0700) beside its
// final place, given mode 0600 there, where nobody else can reach it or
// put a symbolic link, and then renamed into place. The rename replaces a
// dead daemon's socket atomically.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
)

// errNoPeerCred is peerCred's answer on a system that cannot tell who is
// connected.
var errNoPeerCred = errors.New("daemon: peer credentials not supported on this system")

// listenPrivate listens on a Unix socket at path that has mode 0600 from
// the moment path names it. It returns the socket file's info, for
// removeSocket. The listener does not remove the file on Close.
func listenPrivate(path string) (*net.UnixListener, fs.FileInfo, error) {
	tmp, err := privateDir(filepath.Dir(path))
	if err != nil {
		return nil, nil, err
	}
	defer os.Remove(tmp)
	// "s" in a directory of 10 characters: the bound path is exactly as
	// long as path, so the sun_path limit checked on path holds for it.
	bound := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("daemon: listen: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, fs.FileInfo, error) {
		ln.Close()
		os.Remove(bound)
		return nil, nil, err
	}
	// Nobody else can enter tmp, so this chmod acts on our socket.
	if err := os.Chmod(bound, 0o600); err != nil {
		return fail(fmt.Errorf("daemon: socket mode: %w", err))
	}
	fi, err := os.Lstat(bound)
	if err != nil {
		return fail(fmt.Errorf("daemon: socket: %w", err))
	}
	if err := os.Rename(bound, path); err != nil {
		return fail(fmt.Errorf("daemon: socket: %w", err))
	}
	return ln, fi, nil
}

// privateDir creates a new directory of mode 0700 named ".s" and 8 hex
// digits in dir.
func privateDir(dir string) (string, error) {
	for range 100 {
		var b [4]byte
		rand.Read(b[:])
		p := filepath.Join(dir, ".s"+hex.EncodeToString(b[:]))
		err := os.Mkdir(p, 0o700)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("daemon: socket directory: %w", err)
		}
	}
	return "", errors.New("daemon: socket directory: no free name")
}

// peerCred returns the uid and pid (0 where unknown) of the process that
// connected c; errNoPeerCred where the system cannot tell.
func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { uid, pid, cerr = fdPeerCred(int(fd)) }); err != nil {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", err)
	}
	if cerr != nil && !errors.Is(cerr, errNoPeerCred) {
		return 0, 0, fmt.Errorf("daemon: peer credentials: %w", cerr)
	}
	return uid, pid, cerr
}

// removeSocket removes path if it is still the socket fi describes (not a
// newer daemon's, nor anything put there since).
func removeSocket(path string, fi fs.FileInfo) {
	if cur, err := os.Lstat(path); err == nil && os.SameFile(cur, fi) {
		os.Remove(path)
	}
}
