package instance

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
)

// fastEnd notices a lost peer quickly.
var fastEnd = msp.Config{KeepAlive: 50 * time.Millisecond, IdleTimeout: 500 * time.Millisecond}

// TestRedialer: the first stream dials; later streams share the session;
// once the listener is gone and the session ended, the next stream dials
// again, which gives up after the timeout ("unreachable after"), and a
// later one, with the listener back, gets a new session.
func TestRedialer(t *testing.T) {
	a, b := memPair(t, nil, nil)
	m := Embed(a)
	lis := echoOn(t, b, 7)
	var finds, dials atomic.Int32
	find := func(context.Context) (identity.SID, uint16, error) {
		finds.Add(1)
		return b.SID(), 7, nil
	}
	dial := func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error) {
		dials.Add(1)
		return DialSession(ctx, m, sid, port, fastEnd)
	}
	const timeout = 700 * time.Millisecond
	rd := NewRedialer(timeout, find, dial)
	defer rd.Close()
	ctx := context.Background()

	first, err := rd.Session(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sid, port := rd.Target(); sid != b.SID() || port != 7 {
		t.Errorf("Target = %s %d, want %s 7", sid.Short(), port, b.SID().Short())
	}
	for i := range 3 {
		st, err := rd.OpenStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		echo(t, st, "on the first session")
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 3 streams on a live session, want 1", n)
	}

	lis.Close()
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end after its listener closed")
	}
	start := time.Now()
	_, err = rd.OpenStream(ctx)
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), b.SID().String()+" unreachable after "+timeout.String()) || !errors.Is(err, msp.ErrNoAnswer) {
		t.Fatalf("stream with no listener: %v; want %q wrapping msp.ErrNoAnswer", err, "SID unreachable after "+timeout.String())
	}
	if took < timeout || took > timeout+5*time.Second {
		t.Errorf("gave up after %v, want about %v", took, timeout)
	}
	if n := dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}

	lis = echoOn(t, b, 7)
	defer lis.Close()
	st, err := rd.OpenStream(ctx)
	if err != nil {
		t.Fatalf("stream after the listener came back: %v", err)
	}
	echo(t, st, "on a new session")
	s, err := rd.Session(ctx)
	if err != nil || s == first {
		t.Fatalf("Session = %p, %v; want a new one (first %p)", s, err, first)
	}
	if f, d := finds.Load(), dials.Load(); f != 3 || d != 3 {
		t.Errorf("%d finds and %d dials, want 3 of each (the target is found again at each dial)", f, d)
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rd.Shutdown(sctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

// zeroSID is how an unset SID prints.
var zeroSID = strings.Repeat("0", 64)

// TestRedialerErrors: a failing find is returned as it is when ctx ends
// first, and named by the timeout when the timeout ends it; a new
// Redialer has no session to close.
func TestRedialerErrors(t *testing.T) {
	stuck := func(ctx context.Context) (identity.SID, uint16, error) {
		<-ctx.Done()
		return identity.SID{}, 0, ctx.Err()
	}
	never := func(context.Context, identity.SID, uint16) (*msp.Session, error) {
		t.Fatal("dial called after find failed")
		return nil, nil
	}
	rd := NewRedialer(100*time.Millisecond, stuck, never)
	if err := rd.Close(); err != nil {
		t.Errorf("Close before any dial: %v", err)
	}
	if err := rd.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before any dial: %v", err)
	}
	_, err := rd.Session(context.Background())
	if err == nil || !strings.Contains(err.Error(), "not found within 100ms") || !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), zeroSID) {
		t.Errorf("find timed out: %v", err)
	}
	// A find that gives up with its own error at the timeout: that error,
	// naming no (all-zero) SID.
	unknown := func(ctx context.Context) (identity.SID, uint16, error) {
		<-ctx.Done()
		return identity.SID{}, 0, identity.ErrUnknownSID
	}
	if _, err := NewRedialer(50*time.Millisecond, unknown, never).Session(context.Background()); !errors.Is(err, identity.ErrUnknownSID) || strings.Contains(err.Error(), zeroSID) {
		t.Errorf("unknown SID at the timeout: %v", err)
	}
	// Found, but the dial timed out: "SID unreachable after".
	sid := sidWith(t, "ABCD")
	found := func(context.Context) (identity.SID, uint16, error) { return sid, 7, nil }
	stuckDial := func(ctx context.Context, _ identity.SID, _ uint16) (*msp.Session, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if _, err := NewRedialer(50*time.Millisecond, found, stuckDial).Session(context.Background()); err == nil || !strings.Contains(err.Error(), sid.String()+" unreachable after 50ms") {
		t.Errorf("dial timed out: %v", err)
	}
	rd = NewRedialer(time.Hour, stuck, never)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rd.OpenStream(ctx); !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "unreachable") {
		t.Errorf("cancelled: %v, want context.Canceled as it is", err)
	}
}

// TestRedialerSharesDial: streams asked for while a dial runs wait for
// that dial, not each for one of its own: five of them, towards a target
// that never answers, all fail within one timeout, after one dial. A
// caller waiting on a dial whose own caller gave up (its ctx ended) dials
// itself.
func TestRedialerSharesDial(t *testing.T) {
	sid := sidWith(t, "ABCD")
	found := func(context.Context) (identity.SID, uint16, error) { return sid, 7, nil }
	var dials atomic.Int32
	stuckDial := func(ctx context.Context, _ identity.SID, _ uint16) (*msp.Session, error) {
		dials.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	const timeout = 300 * time.Millisecond
	rd := NewRedialer(timeout, found, stuckDial)
	t0 := time.Now()
	errs := make(chan error, 5)
	for range 5 {
		go func() {
			_, err := rd.OpenStream(context.Background())
			errs <- err
		}()
	}
	for range 5 {
		if err := <-errs; err == nil || !strings.Contains(err.Error(), "unreachable after") {
			t.Errorf("stream: %v, want unreachable", err)
		}
	}
	if took := time.Since(t0); took > 2*timeout {
		t.Errorf("five streams took %v, want one timeout (%v)", took, timeout)
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d dials, want 1", n)
	}

	// The first caller gives up; the one waiting on its dial dials again.
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := rd.Session(ctx)
		first <- err
	}()
	for dials.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() {
		_, err := rd.Session(context.Background())
		second <- err
	}()
	time.Sleep(20 * time.Millisecond) // the second waits on the first's dial
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Errorf("first: %v, want context.Canceled", err)
	}
	if err := <-second; err == nil || !strings.Contains(err.Error(), "unreachable after") {
		t.Errorf("second: %v, want its own dial's unreachable", err)
	}
	if n := dials.Load(); n != 3 {
		t.Errorf("%d dials, want 3", n)
	}
}
