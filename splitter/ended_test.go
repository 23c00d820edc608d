package splitter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// lockedLog is a log buffer safe for concurrent writes.
type lockedLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestJoinAfterEndQuiet: a join for a session that has just ended (a lane
// racing a short transfer's end) is refused without a warning; a join for
// a session that never existed still warns.
func TestJoinAfterEndQuiet(t *testing.T) {
	var log lockedLog
	cfg := testConfig()
	cfg.Conns = 1
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ln := listen(t, cfg)
	c, s := pair(t, ln, ln.Addr().String(), cfg)
	id, token := c.SessionID(), c.token
	c.Close()
	s.Close()
	deadline := time.Now().Add(10 * time.Second)
	for ln.Stats().SessionsLive > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	h := wire.Hello{Version: wire.Version, Kind: wire.KindJoin, Params: cfg.params(), Session: id, Token: token}
	if r := rawHello(t, ln.Addr().String(), h); r.Status != wire.StatusRefused || r.Code != wire.RefuseUnknownSession {
		t.Fatalf("join after the end: %+v", r)
	}
	if strings.Contains(log.String(), "WARN") {
		t.Errorf("a join racing its session's end warned:\n%s", log.String())
	}
	h.Session ^= 1
	if r := rawHello(t, ln.Addr().String(), h); r.Status != wire.StatusRefused || r.Code != wire.RefuseUnknownSession {
		t.Fatalf("join of an unknown session: %+v", r)
	}
	deadline = time.Now().Add(5 * time.Second)
	for !strings.Contains(log.String(), "unknown session") && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !strings.Contains(log.String(), "level=WARN") {
		t.Errorf("a join for a session that never existed did not warn:\n%s", log.String())
	}
}

// TestProbe: Probe reports agreement as nil and a mismatch as a
// *NegotiationError, opens no session, and the listener does not warn.
func TestProbe(t *testing.T) {
	var log lockedLog
	cfg := testConfig()
	cfg.Logger = slog.New(slog.NewTextHandler(&log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ln := listen(t, cfg)
	ctx := context.Background()
	if err := Probe(ctx, ln.Addr().String(), cfg); err != nil {
		t.Errorf("Probe with the same parameters: %v", err)
	}
	other := cfg
	other.DataShards, other.ParityShards = 8, 2
	var ne *NegotiationError
	if err := Probe(ctx, ln.Addr().String(), other); !errors.As(err, &ne) || ne.Param != "fec" {
		t.Errorf("Probe with another FEC: %v", err)
	}
	if st := ln.Stats(); st.SessionsAccepted != 0 || st.SessionsLive != 0 {
		t.Errorf("a probe opened a session: %+v", st)
	}
	if strings.Contains(log.String(), "unknown session") {
		t.Errorf("the listener warned about a probe:\n%s", log.String())
	}
}
