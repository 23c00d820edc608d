package instance

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// fakeAccess is a Mesh whose routing table the test sets.
type fakeAccess struct {
	id *identity.Identity

	mu      sync.Mutex
	routes  []mesh.Route  // guarded by mu
	changed chan struct{} // guarded by mu
}

func newFakeAccess(t *testing.T) *fakeAccess {
	t.Helper()
	id, err := identity.Generate(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &fakeAccess{id: id, changed: make(chan struct{})}
}

func (f *fakeAccess) setRoutes(sids ...identity.SID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes = nil
	for _, s := range sids {
		f.routes = append(f.routes, mesh.Route{SID: s, NextHop: s, Hops: 1, Metric: 256})
	}
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeAccess) Identity() *identity.Identity { return f.id }
func (f *fakeAccess) UDPAddr() net.Addr            { return &net.UDPAddr{} }
func (f *fakeAccess) Bind(uint16) (msp.Transport, error) {
	return nil, errors.New("fake: no ports")
}
func (f *fakeAccess) WaitReachable(context.Context, identity.SID) error { return nil }
func (f *fakeAccess) Routes() ([]mesh.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]mesh.Route(nil), f.routes...), nil
}
func (f *fakeAccess) Neighbours() ([]mesh.Neighbour, error) { return nil, nil }
func (f *fakeAccess) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}
func (f *fakeAccess) Advertise(string, uint16, *slog.Logger) (io.Closer, error) {
	return nil, errors.New("fake: no discovery")
}
func (f *fakeAccess) Close() error { return nil }

// sidWith returns a SID starting with the hex digits h.
func sidWith(t *testing.T, h string) identity.SID {
	t.Helper()
	s, err := identity.ParseSID(h + strings.Repeat("0", 64-len(h)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestParseSIDArg(t *testing.T) {
	full := strings.Repeat("AB", 32)
	for _, tc := range []struct {
		in     string
		prefix string
		bad    string
	}{
		{in: full},
		{in: strings.ToLower(full)},
		{in: "abcdef01", prefix: "ABCDEF01"},
		{in: full[:63], prefix: full[:63]},
		{in: "abcdef0", bad: "at least 8"},
		{in: "abcdefgh", bad: "not hex"},
		{in: strings.Repeat("G", 64), bad: "not hex"},
		{in: full + "A", bad: "64 hex digits"},
	} {
		a, err := ParseSIDArg(tc.in)
		if tc.bad != "" {
			var ue *UsageError
			if err == nil || !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("ParseSIDArg(%q) = %v, want a usage error mentioning %q", tc.in, err, tc.bad)
			}
			continue
		}
		if err != nil || a.Prefix() != tc.prefix || (tc.prefix == "" && a.SID().String() != strings.ToUpper(tc.in)) {
			t.Errorf("ParseSIDArg(%q) = %+v, %v", tc.in, a, err)
		}
	}
}

func TestResolveShortSID(t *testing.T) {
	ctx := context.Background()
	x1, x2, y := sidWith(t, "ABCDEF0011"), sidWith(t, "ABCDEF0022"), sidWith(t, "12345678")
	f := newFakeAccess(t)
	f.setRoutes(x1, x2, y)
	arg := func(s string) SIDArg {
		t.Helper()
		a, err := ParseSIDArg(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	if got, err := arg("12345678").Resolve(ctx, f, time.Minute); err != nil || got != y {
		t.Errorf("unique prefix: %v, %v", got, err)
	}
	if got, err := arg(f.id.SID().String()[:9]).Resolve(ctx, f, time.Minute); err != nil || got != f.id.SID() {
		t.Errorf("prefix of this node: %v, %v", got, err)
	}
	// Ambiguous: a usage error naming both, at once (no waiting).
	t0 := time.Now()
	_, err := arg("abcdef00").Resolve(ctx, f, time.Minute)
	var ue *UsageError
	if !errors.As(err, &ue) || !errors.Is(err, identity.ErrAmbiguousSID) || !strings.Contains(err.Error(), x1.String()) || !strings.Contains(err.Error(), x2.String()) {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("ambiguous prefix took %v", d)
	}
	// Unknown: after the wait, an error (exit 1) listing what is known.
	_, err = arg("99999999").Resolve(ctx, f, 300*time.Millisecond)
	if errors.As(err, &ue) || !errors.Is(err, identity.ErrUnknownSID) {
		t.Errorf("unknown prefix: %v, want ErrUnknownSID, not a usage error", err)
	}
	for _, s := range []identity.SID{x1, x2, y} {
		if err != nil && !strings.Contains(err.Error(), s.String()) {
			t.Errorf("unknown-prefix error does not list %s: %v", s, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), f.id.SID().String()) {
		t.Errorf("unknown-prefix error lists this node: %v", err)
	}
	// A node that the mesh learns while we wait is found by a prefix of
	// 16 digits or more; one of fewer (which a ground key could match)
	// is matched only against the nodes known at once.
	late := sidWith(t, "FEEDFACE")
	go func() {
		time.Sleep(100 * time.Millisecond)
		f.setRoutes(x1, x2, y, late)
	}()
	if _, err := arg("feedface").Resolve(ctx, f, time.Minute); !errors.Is(err, identity.ErrUnknownSID) || !strings.Contains(err.Error(), "fewer than 16 digits") {
		t.Errorf("8-digit prefix of a node not known yet: %v, want ErrUnknownSID at once", err)
	}
	if got, err := arg("feedface00000000").Resolve(ctx, f, time.Minute); err != nil || got != late {
		t.Errorf("16-digit prefix of a node learnt while waiting: %v, %v", got, err)
	}
	// Cancelled (a signal): the cancellation, not a resolution error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := arg("77777777").Resolve(cctx, f, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
	// A full SID needs no table at all.
	if got, err := arg(sidWith(t, "55").String()).Resolve(ctx, f, 0); err != nil || got != sidWith(t, "55") {
		t.Errorf("full SID: %v, %v", got, err)
	}
}

// TestResolveOnMesh resolves short SIDs against the routing table of an
// embedded node on memnet.
func TestResolveOnMesh(t *testing.T) {
	a, b := memPair(t, nil, nil)
	m := Embed(a)
	ctx := context.Background()
	for _, n := range []*identity.Identity{a.Identity(), b.Identity()} {
		arg, err := ParseSIDArg(strings.ToLower(n.SID().String()[:10]))
		if err != nil || !arg.IsShort() {
			t.Fatalf("ParseSIDArg: %+v, %v", arg, err)
		}
		if got, err := arg.Resolve(ctx, m, 5*time.Second); err != nil || got != n.SID() {
			t.Errorf("Resolve(%s) = %v, %v; want %s", arg.Prefix(), got, err, n.SID())
		}
	}
	unknown := "0123456789ABCDEF"
	if strings.HasPrefix(a.SID().String(), unknown) || strings.HasPrefix(b.SID().String(), unknown) {
		unknown = "FEDCBA9876543210"
	}
	arg, _ := ParseSIDArg(unknown)
	_, err := arg.Resolve(ctx, m, 200*time.Millisecond)
	var ue *UsageError
	if !errors.Is(err, identity.ErrUnknownSID) || errors.As(err, &ue) || !strings.Contains(err.Error(), "after waiting 200ms") || !strings.Contains(err.Error(), b.SID().String()) {
		t.Errorf("unknown prefix: %v", err)
	}
}

// TestTargetFind: a service is looked up at every Find (and found where it
// is now); a short SID is resolved once.
func TestTargetFind(t *testing.T) {
	a, b := memPair(t, nil, nil)
	m := Embed(a)
	ctx := context.Background()
	svc := Target{Service: "ssh"}
	if _, _, err := svc.Find(ctx, m, 300*time.Millisecond); !errors.Is(err, discovery.ErrNoService) {
		t.Fatalf("service nobody offers: %v", err)
	}
	ad, err := Embed(b).Advertise("ssh", 5000, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ad.Close()
	if sid, port, err := svc.Find(ctx, m, 5*time.Second); err != nil || sid != b.SID() || port != 5000 {
		t.Fatalf("service: %s %d, %v; want %s 5000", sid.Short(), port, err, b.SID().Short())
	}
	arg, err := ParseSIDArg(b.SID().String()[:8])
	if err != nil {
		t.Fatal(err)
	}
	tgt := Target{SID: arg, Port: 7}
	if sid, port, err := tgt.Find(ctx, m, 5*time.Second); err != nil || sid != b.SID() || port != 7 {
		t.Fatalf("short SID: %s %d, %v", sid.Short(), port, err)
	}
	if tgt.SID.IsShort() || tgt.SID.SID() != b.SID() {
		t.Errorf("the short SID did not stay resolved: %+v", tgt.SID)
	}
}

// TestTargetServiceChoice: with two nodes offering a service, Find takes
// the nearest and says that there are others; it keeps that node across
// Finds (redials) while it offers the service, says so when it moves to
// another, and --service-sid pins the choice.
func TestTargetServiceChoice(t *testing.T) {
	a, b := memPair(t, nil, nil)
	m := Embed(a)
	ctx := context.Background()
	adA, err := m.Advertise("ssh", 22, nil)
	if err != nil {
		t.Fatal(err)
	}
	adB, err := Embed(b).Advertise("ssh", 5000, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer adB.Close()
	var said []string
	svc := Target{Service: "ssh", Say: func(s string) { said = append(said, s) }}
	if sid, port, err := svc.Find(ctx, m, 5*time.Second); err != nil || sid != a.SID() || port != 22 {
		t.Fatalf("nearest: %s %d, %v", sid.Short(), port, err)
	}
	if len(said) != 1 || !strings.Contains(said[0], "the nearest of 2 that offer it") || !strings.Contains(said[0], b.SID().String()) {
		t.Fatalf("the choice was announced as %q", said)
	}
	if sid, _, err := svc.Find(ctx, m, 5*time.Second); err != nil || sid != a.SID() || len(said) != 1 {
		t.Fatalf("redial: %s, %v; said %q (want the same node, quietly)", sid.Short(), err, said)
	}
	adA.Close() // a stops offering it: the next redial moves, and says so
	if sid, port, err := svc.Find(ctx, m, 5*time.Second); err != nil || sid != b.SID() || port != 5000 {
		t.Fatalf("after a withdrew: %s %d, %v", sid.Short(), port, err)
	}
	if len(said) != 2 || !strings.Contains(said[1], a.SID().String()+" no longer answers") {
		t.Fatalf("the move was announced as %q", said)
	}
	pinned := Target{Service: "ssh", ServiceSID: a.SID().String()[:16]}
	if _, _, err := pinned.Find(ctx, m, 500*time.Millisecond); !errors.Is(err, discovery.ErrNoService) {
		t.Fatalf("pinned to a node that no longer offers it: %v", err)
	}
	pinned.ServiceSID = b.SID().String()[:16]
	if sid, _, err := pinned.Find(ctx, m, 5*time.Second); err != nil || sid != b.SID() {
		t.Fatalf("pinned to b: %s, %v", sid.Short(), err)
	}
}
