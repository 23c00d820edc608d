package daemon

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// TestSocketNeverWiderThan0600 runs Listen with umask 0, where a socket
// bound at its final name would be created 0777, and watches the instance
// directory with inotify: the name servald.sock must appear only by a
// rename of a finished socket (never created or chmod'ed in place), and the
// socket is 0600 right after Listen. A dead daemon's socket is replaced.
func TestSocketNeverWiderThan0600(t *testing.T) {
	dir := t.TempDir()
	// A dead daemon's socket.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: SocketPath(dir), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()

	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if _, err := syscall.InotifyAddWatch(fd, dir, syscall.IN_CREATE|syscall.IN_ATTRIB|syscall.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}

	old := syscall.Umask(0)
	srv, err := Listen(Config{Dir: dir, Node: newNode(t)})
	syscall.Umask(old)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(srv.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket right after Listen: %v, want a socket with 0600", fi.Mode())
	}

	var sockEvents []string
	buf := make([]byte, 64<<10)
	n, err := syscall.Read(fd, buf)
	if err != nil && !errors.Is(err, syscall.EAGAIN) {
		t.Fatal(err)
	}
	for b := buf[:max(n, 0)]; len(b) >= syscall.SizeofInotifyEvent; {
		mask := binary.NativeEndian.Uint32(b[4:])
		l := int(binary.NativeEndian.Uint32(b[12:]))
		name := strings.TrimRight(string(b[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+l]), "\x00")
		b = b[syscall.SizeofInotifyEvent+l:]
		if name != SocketName {
			continue
		}
		switch {
		case mask&syscall.IN_CREATE != 0:
			sockEvents = append(sockEvents, "create")
		case mask&syscall.IN_ATTRIB != 0:
			sockEvents = append(sockEvents, "attrib")
		case mask&syscall.IN_MOVED_TO != 0:
			sockEvents = append(sockEvents, "moved_to")
		}
	}
	if !slices.Equal(sockEvents, []string{"moved_to"}) {
		t.Errorf("%s events %v; want only [moved_to]: the name must never be a socket with another mode", SocketName, sockEvents)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{PidName, SocketName}) {
		t.Errorf("instance directory holds %v; want only the pid file and the socket", names)
	}

	// Close removes our socket, but not a file put in its place since.
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(srv.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}
	srv2, err := Listen(Config{Dir: dir, Node: newNode(t)})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(srv2.SocketPath())
	os.WriteFile(srv2.SocketPath(), []byte("not ours"), 0o600)
	srv2.Close()
	if b, err := os.ReadFile(srv2.SocketPath()); err != nil || string(b) != "not ours" {
		t.Errorf("Close removed a file that is not its socket: %q, %v", b, err)
	}
}
