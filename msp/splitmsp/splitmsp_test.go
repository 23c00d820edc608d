package splitmsp

import (
	"context"
	"io"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
	"github.com/servald/servald/splitter"
)

// TestSplitSessionsNoLeaks opens and closes 1000 MSP sessions over split
// transport in this process (what msp listen --split and msp connect
// --split run), one stream each, and checks that goroutines and file
// descriptors return to where they were while the listener keeps running:
// nothing stays behind per session.
func TestSplitSessionsNoLeaks(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 200
	}
	server, _ := identity.Generate(nil)
	client, _ := identity.Generate(nil)
	cfg := splitter.DefaultConfig()
	cfg.Conns = 2
	srv, ln := serveEcho(t, server, cfg, msp.Config{})
	d := &Dialer{Addr: ln.Addr().String(), Config: cfg, Identity: client}
	session := func(i int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := d.Dial(ctx, server.SID(), 5000, msp.Config{})
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		st.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := st.Write([]byte("ping")); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
		st.(interface{ CloseWrite() error }).CloseWrite()
		if b, err := io.ReadAll(st); err != nil || string(b) != "ping" {
			t.Fatalf("session %d: echo %q, %v", i, b, err)
		}
		st.Close()
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("session %d: shutdown: %v", i, err)
		}
	}
	session(-1) // warm-up: the goroutines that live as long as the listener
	baseG, baseFD := baseline(t)
	for i := range n {
		session(i)
	}
	g2, fd2 := settleCounts(t, baseG, baseFD)
	t.Logf("%d sessions: goroutines %d (baseline %d), fds %d (baseline %d)", n, g2, baseG, fd2, baseFD)
	if g2 > baseG || fd2 > baseFD {
		buf := make([]byte, 1<<20)
		t.Fatalf("after %d sessions: %d goroutines (baseline %d), %d fds (baseline %d)\n%s",
			n, g2, baseG, fd2, baseFD, buf[:runtime.Stack(buf, true)])
	}
	st := srv.Stats()
	for deadline := time.Now().Add(5 * time.Second); st.SessionsLive != 0 && time.Now().Before(deadline); st = srv.Stats() {
		time.Sleep(10 * time.Millisecond) // the last session's teardown forgets it just after its goroutines end
	}
	if st.SessionsAccepted != uint64(n+1) || st.SessionsLive != 0 {
		t.Errorf("split listener: %d sessions accepted (want %d), %d live (want 0)", st.SessionsAccepted, n+1, st.SessionsLive)
	}
	if sessions, cs := d.Stats(); sessions != n+1 || cs.ConnsOpened < uint64(n+1) {
		t.Errorf("dialer counted %d sessions and %d connections, want %d and at least as many", sessions, cs.ConnsOpened, n+1)
	}
}

// baseline returns the lowest goroutine and fd counts seen over 500 ms
// (what the warm-up session left is on its way out).
func baseline(t *testing.T) (g, fd int) {
	t.Helper()
	g, fd = 1<<30, 1<<30
	for range 25 {
		ng, nfd := settleCounts(t, 0, 0)
		g, fd = min(g, ng), min(fd, nfd)
	}
	return g, fd
}

// settleCounts waits up to 10 s for this process's goroutines and fds to fall to
// g and fd, and returns the last counts.
func settleCounts(t *testing.T, g, fd int) (int, int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ng := runtime.NumGoroutine()
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("cannot count fds: %v", err)
		}
		if (ng <= g && len(ents) <= fd) || time.Now().After(deadline) || g == 0 {
			return ng, len(ents)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
