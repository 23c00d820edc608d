package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/servald/servald/internal/safefs"
)

// otherUID is the uid used to show another user's files and connections.
const otherUID = 65534

func needRoot(t *testing.T, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("%s needs root (to act as uid %d); not root, skipped", what, otherUID)
	}
}

// TestPidFileSymlinkRefused: a link planted as servald.pid is refused,
// naming it, and its target is neither truncated nor written.
func TestPidFileSymlinkRefused(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "precious")
	const content = "someone else's file\n"
	if err := os.WriteFile(target, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, PidPath(dir)); err != nil {
		t.Fatal(err)
	}
	p, err := LockPidFile(dir)
	if err == nil {
		p.Close()
	}
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), PidPath(dir)) || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("LockPidFile: %v; want a refusal naming the link", err)
	}
	n := newNode(t)
	if srv, err := Listen(Config{Dir: dir, Node: n}); err == nil {
		srv.Close()
		t.Fatal("Listen took an instance whose pid file is a link")
	}
	if pid, running := Probe(dir); running {
		t.Errorf("Probe through the link: pid %d running", pid)
	}
	b, _ := os.ReadFile(target)
	if string(b) != content {
		t.Fatalf("link target now %q", b)
	}
	if _, err := os.Lstat(SocketPath(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket created in a refused instance: %v", err)
	}
}

func TestPidFileOtherOwnerRefused(t *testing.T) {
	needRoot(t, "a pid file owned by another user")
	dir := t.TempDir()
	const content = "12345\n"
	os.WriteFile(PidPath(dir), []byte(content), 0o644)
	if err := os.Chown(PidPath(dir), otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	p, err := LockPidFile(dir)
	if err == nil {
		p.Close()
	}
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), "owned by uid 65534") {
		t.Fatalf("LockPidFile: %v", err)
	}
	if b, _ := os.ReadFile(PidPath(dir)); string(b) != content {
		t.Fatalf("pid file now %q", b)
	}
}

// TestUnsafeInstanceDirRefused: a directory others may write to is not
// used: nothing is created in it.
func TestUnsafeInstanceDirRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "inst")
	os.Mkdir(dir, 0o700)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	p, err := LockPidFile(dir)
	if err == nil {
		p.Close()
	}
	if !errors.Is(err, safefs.ErrUnsafe) || !strings.Contains(err.Error(), "chmod 700 "+dir) {
		t.Fatalf("LockPidFile: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("created in a refused directory: %v", entries)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const peerSocketEnv = "SERVALD_TEST_PEER_SOCKET"

// TestPeerCredChild is run by TestPeerOfAnotherUIDRefused as a child
// process (under another uid): it asks the daemon for its status and
// prints what happened.
func TestPeerCredChild(t *testing.T) {
	path := os.Getenv(peerSocketEnv)
	if path == "" {
		t.Skip("helper of TestPeerOfAnotherUIDRefused, run as a child process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	var re *RemoteError
	switch {
	case errors.As(err, &re):
		fmt.Printf("PEER-RESULT refused: %v\n", err)
	case err != nil:
		fmt.Printf("PEER-RESULT error: %v\n", err)
	default:
		fmt.Printf("PEER-RESULT served %s\n", c.SID())
		c.Close()
	}
}

// TestPeerOfAnotherUIDRefused: with the socket's mode opened to everyone
// (0666, its directories searchable), a process of another uid can
// connect, and the daemon refuses it after SO_PEERCRED, logging the uid;
// a root process is served.
func TestPeerOfAnotherUIDRefused(t *testing.T) {
	needRoot(t, "connecting as another uid")
	base, err := os.MkdirTemp("", "servald-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	exe := copyTestBinary(t, base)
	dir := filepath.Join(base, "inst")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{base, dir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	logs := &syncBuffer{}
	srv := serveWith(t, Config{Dir: dir, Node: newNode(t), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err := os.Chmod(srv.SocketPath(), 0o666); err != nil {
		t.Fatal(err)
	}

	run := func(cred *syscall.Credential) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, "-test.run=^TestPeerCredChild$", "-test.v")
		cmd.Env = append(os.Environ(), peerSocketEnv+"="+srv.SocketPath())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.CombinedOutput()
		for _, l := range strings.Split(string(out), "\n") {
			if r, ok := strings.CutPrefix(l, "PEER-RESULT "); ok {
				return r
			}
		}
		t.Fatalf("child (cred %+v) printed no result (%v):\n%s", cred, err, out)
		return ""
	}
	got := run(&syscall.Credential{Uid: otherUID, Gid: otherUID})
	if !strings.HasPrefix(got, "refused: ") || !strings.Contains(got, "permission denied") {
		t.Errorf("uid %d: %s; want refused with permission denied", otherUID, got)
	}
	if l := logs.String(); !strings.Contains(l, "peer runs as another user") || !strings.Contains(l, fmt.Sprintf("uid=%d", otherUID)) {
		t.Errorf("no refusal logged with the uid; log:\n%s", l)
	}
	if got := run(nil); !strings.HasPrefix(got, "served ") {
		t.Errorf("root: %s; want served", got)
	}
}

// serveWith runs a daemon server with cfg until the test ends.
func serveWith(t testing.TB, cfg Config) *Server {
	t.Helper()
	srv, err := Listen(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		srv.Close()
	})
	return srv
}

// copyTestBinary copies this test binary into dir, executable by all, so
// that a process of another uid can run it.
func copyTestBinary(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(dir, "daemon.test")
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}
