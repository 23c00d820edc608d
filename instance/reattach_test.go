package instance

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// stoppableDaemon serves node n as the daemon of dir until the returned
// stop is called (it waits until the daemon has stopped) or the test ends.
func stoppableDaemon(t *testing.T, dir string, n *mesh.Node) (stop func()) {
	t.Helper()
	srv, err := daemon.Listen(daemon.Config{Dir: dir, Node: n})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		srv.Serve(ctx)
		srv.Close()
		close(served)
	}()
	done := false
	stop = func() {
		if !done {
			done = true
			cancel()
			<-served
		}
	}
	t.Cleanup(stop)
	return stop
}

// nextLine waits for the next line said, and checks it is want.
func nextLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l := <-lines:
		if l != want {
			t.Fatalf("said %q, want %q", l, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("nothing said; want %q", want)
	}
}

// TestReattach: a listener attached to the daemon says when it stops,
// re-attaches to the next daemon of the instance on the same MDP port and
// says so; the far end's session ends at once when the daemon stops
// (the listener's goodbye); meanwhile Bind is refused at once and
// DaemonGone says why. The service is advertised again, and reported in
// the new daemon's status.
func TestReattach(t *testing.T) {
	dir := t.TempDir()
	id, err := Identity(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, b := memPair(t, id, nil)
	stop := stoppableDaemon(t, dir, a)
	m, err := Open(dir, NodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	lines := make(chan string, 10)
	l, err := ListenService(m, 5000, msp.Config{}, Shown{Service: "echo", Target: "echo"}, func(s string) { lines <- s })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go echoListener(l.Listener)

	dial := func() *msp.Session {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := DialSession(ctx, Embed(b), id.SID(), 5000, msp.Config{})
		if err != nil {
			t.Fatal(err)
		}
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		echo(t, st, "hello")
		return s
	}
	s := dial()
	defer s.Close()

	stop()
	nextLine(t, lines, "the daemon is stopping (servald stop); waiting for it to come back (servald start)")
	select {
	case <-s.Done():
	case <-time.After(2 * time.Second):
		t.Error("the far end's session still runs 2 s after the daemon stopped")
	}
	if _, err := m.Bind(0); err == nil || !strings.Contains(err.Error(), "not running: refused until it is back (servald start)") {
		t.Errorf("Bind while the daemon is away: %v", err)
	}
	if err := DaemonGone(m); !errors.Is(err, daemon.ErrDaemonStopping) {
		t.Errorf("DaemonGone: %v, want ErrDaemonStopping", err)
	}

	srv := serveDaemon(t, dir, a)
	nextLine(t, lines, fmt.Sprintf("re-attached to the daemon (pid %d)", os.Getpid()))
	if err := DaemonGone(m); err != nil {
		t.Errorf("DaemonGone once back: %v", err)
	}
	s2 := dial()
	s2.Close()
	// The service is advertised again.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tgt := &Target{Service: "echo"}
	if sid, port, err := tgt.Find(ctx, Embed(b), 5*time.Second); err != nil || sid != id.SID() || port != 5000 {
		t.Errorf("service after re-attaching: %s %d, %v", sid.Short(), port, err)
	}
	select {
	case l := <-lines:
		t.Errorf("said %q more", l)
	default:
	}
	// The new daemon's status shows the listener, as the first one did.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		snap := srv.Snapshot()
		if len(snap.Tunnels) == 1 && snap.Tunnels[0].Role == daemon.RoleService && snap.Tunnels[0].Port == 5000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new daemon's tunnels: %+v", snap.Tunnels)
		}
	}
}
