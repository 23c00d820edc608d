package forward

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// UnixPrefix marks a Unix socket in the argument of --forward: "unix:PATH".
const UnixPrefix = "unix:"

// Endpoint is where a forward listens or what it dials: a TCP address or a
// Unix stream socket.
type Endpoint struct {
	// Network is "tcp" or "unix".
	Network string
	// Addr is "host:port" for tcp and the socket's path for unix.
	Addr string
}

// ParseEndpoint parses the argument of --forward: "unix:PATH" names a Unix
// socket (PATH must not be empty), anything else is "[HOST:]PORT" as
// ParseTarget reads it.
func ParseEndpoint(s string) (Endpoint, error) {
	if path, ok := strings.CutPrefix(s, UnixPrefix); ok {
		if path == "" {
			return Endpoint{}, fmt.Errorf("forward: empty path in %q: want unix:PATH", s)
		}
		return Endpoint{Network: "unix", Addr: path}, nil
	}
	t, err := ParseTarget(s)
	if err != nil {
		return Endpoint{}, err
	}
	return Endpoint{Network: "tcp", Addr: t}, nil
}

// String returns the endpoint as ParseEndpoint reads it.
func (e Endpoint) String() string {
	if e.Network == "unix" {
		return UnixPrefix + e.Addr
	}
	return e.Addr
}

// Listen listens on the endpoint: net.Listen for tcp, ListenUnix for unix.
// A TCP address taken by another socket is an error that says so in words
// (errors.Is syscall.EADDRINUSE).
func (e Endpoint) Listen(ctx context.Context) (net.Listener, error) {
	if e.Network == "unix" {
		return ListenUnix(ctx, e.Addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, e.Network, e.Addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("forward: TCP port %s is in use: %w", e.Addr, syscall.EADDRINUSE)
	}
	if err != nil {
		return nil, fmt.Errorf("forward: %w", err)
	}
	return ln, nil
}

// ServeStreamsTo is ServeStreams with a target that may be a Unix socket:
// each stream is joined with a new connection to target, dialled with
// dial(ctx, target.Network, target.Addr).
func ServeStreamsTo(ctx context.Context, accept func(context.Context) (net.Conn, error), target Endpoint, once bool,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) error {
	f := &Forwarder{IdleTimeout: DefaultIdleTimeout, Once: once, Dial: dial, Logger: log}
	return f.ServeStreams(ctx, accept, target)
}

// UnixListener is a Unix stream socket listener whose socket file has mode
// 0600 from the moment it appears at its path and is removed by Close.
type UnixListener struct {
	*net.UnixListener
	path      string
	info      os.FileInfo // the socket file, to remove only our own
	closeOnce sync.Once
	closeErr  error
}

// staleProbeTimeout bounds the dial ListenUnix makes to tell a stale socket
// from one in use.
const staleProbeTimeout = time.Second

// ListenUnix listens on a Unix stream socket at path, mode 0600.
//
// A socket file at path that nobody accepts on (a connection to it is
// refused: left by a process that died) is replaced; any other file there,
// or a socket in use, is an error and is left alone.
//
// The socket is bound inside a new directory of mode 0700 next to path,
// set to 0600 there, and then hard-linked to path, which fails rather than
// replace a file that appeared in the meantime: there is no moment at which
// path exists with a wider mode, and the process umask is not touched. The
// path of that temporary socket is about 20 bytes longer than path and must
// fit the system's limit (107 bytes on Linux).
func ListenUnix(ctx context.Context, path string) (*UnixListener, error) {
	if err := checkStale(ctx, path); err != nil {
		return nil, err
	}
	var suffix [6]byte
	_, _ = rand.Read(suffix[:])
	tmpDir := filepath.Join(filepath.Dir(path), ".servald-"+hex.EncodeToString(suffix[:]))
	if err := os.Mkdir(tmpDir, 0o700); err != nil {
		return nil, fmt.Errorf("forward: listen unix %s: %w", path, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "s")

	lc := net.ListenConfig{}
	l, err := lc.Listen(ctx, "unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("forward: listen unix %s: %w", path, err)
	}
	ul := l.(*net.UnixListener)
	ul.SetUnlinkOnClose(false) // we remove path ourselves, and only if it is still ours
	fail := func(err error) (*UnixListener, error) {
		_ = ul.Close()
		return nil, fmt.Errorf("forward: listen unix %s: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("%s appeared while we listened: %w", path, err))
		}
		return fail(err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return &UnixListener{UnixListener: ul, path: path, info: info}, nil
}

// checkStale returns nil if path does not exist or is a stale socket, which
// it then removes.
func checkStale(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("forward: listen unix %s: %w", path, err)
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("forward: listen unix %s: the path exists and is not a socket (%s); remove it or choose another path", path, fi.Mode().Type())
	}
	dctx, cancel := context.WithTimeout(ctx, staleProbeTimeout)
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(dctx, "unix", path)
	if err == nil {
		_ = c.Close()
		return fmt.Errorf("forward: listen unix %s: a socket at that path is in use", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("forward: listen unix %s: cannot tell whether the socket there is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("forward: listen unix %s: remove stale socket: %w", path, err)
	}
	return nil
}

// Path returns the socket's path.
func (l *UnixListener) Path() string { return l.path }

// Close stops listening and removes the socket file, unless another file has
// taken its place. It is idempotent; calls after the first return
// net.ErrClosed.
func (l *UnixListener) Close() error {
	err := net.ErrClosed
	l.closeOnce.Do(func() {
		err = l.UnixListener.Close()
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.info) {
			if rerr := os.Remove(l.path); rerr != nil && err == nil {
				err = fmt.Errorf("forward: remove %s: %w", l.path, rerr)
			}
		}
	})
	return err
}
