package msp

// What msp asks of a Transport: the peer's address, the source check,
// the classes of its write errors; and SessionStats filled from arq's.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp/internal/arq"
)

// The transports' write errors, however wrapped, are told apart by their
// NoRoute and TooLarge methods; other errors are neither. (The daemon's
// errors: daemon's TestRemoteErrorClasses; daemon imports msp.)
func TestWriteErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		name              string
		err               error
		noRoute, tooLarge bool
	}{
		{"mesh no route", fmt.Errorf("mesh: write: %w", mesh.ErrNoRoute), true, false},
		{"mesh too large", fmt.Errorf("mesh: write: %w", mesh.ErrTooLarge), false, true},
		{"port in use", mesh.ErrPortInUse, false, false},
		{"closed", net.ErrClosed, false, false},
		{"nil", nil, false, false},
	} {
		if got := noRoute(tc.err); got != tc.noRoute {
			t.Errorf("%s: noRoute = %v, want %v", tc.name, got, tc.noRoute)
		}
		if got := tooLarge(tc.err); got != tc.tooLarge {
			t.Errorf("%s: tooLarge = %v, want %v", tc.name, got, tc.tooLarge)
		}
	}
	if !errors.Is(fmt.Errorf("w: %w", mesh.ErrNoRoute), mesh.ErrNoRoute) || errors.Is(mesh.ErrNoRoute, mesh.ErrTooLarge) {
		t.Error("mesh's errors no longer compare with errors.Is")
	}
}

// An MDP port addresses a peer by (SID, port) and knows which node sent a
// datagram; a stream transport reaches one node only and does not.
func TestTransportAddressing(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		a, b, _ := memNodes(t, memnet.LinkConfig{})
		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		var tr Transport = pc
		if got, want := tr.PeerAddr(b.SID(), 5000), (mesh.Addr{SID: b.SID(), Port: 5000}); got != want {
			t.Errorf("mesh PeerAddr = %v, want %v", got, want)
		}
		from := mesh.Addr{SID: b.SID(), Port: 40000}
		if !tr.FromNode(from, b.SID()) || tr.FromNode(from, a.SID()) {
			t.Errorf("mesh FromNode(%v): true for %s only expected", from, b.SID().Short())
		}
		if singleNode(tr) {
			t.Error("an MDP port says it reaches a single node")
		}

		c1, c2 := net.Pipe()
		defer c2.Close()
		st := NewStreamTransport(c1)
		defer st.Close()
		if !singleNode(st) {
			t.Error("a stream transport does not say it reaches a single node")
		}
		if !st.FromNode(st.PeerAddr(a.SID(), 1), b.SID()) {
			t.Error("a stream transport rejects a sender it cannot know")
		}
		if got := st.PeerAddr(b.SID(), 5000).String(); got != c1.RemoteAddr().String() {
			t.Errorf("stream PeerAddr = %s, want the connection's far end %s", got, c1.RemoteAddr())
		}
	})
}

// faultyTransport is an MDP port whose first writes fail with werr (all of
// them with failAll), and whose source check can be turned off.
type faultyTransport struct {
	*mesh.PacketConn
	werr       error
	failFirst  int64
	failAll    bool
	notFrom    bool // FromNode says every datagram came from another node
	writes     atomic.Int64
	fromChecks atomic.Int64
}

func (f *faultyTransport) WriteTo(p []byte, addr net.Addr) (int, error) {
	if n := f.writes.Add(1); f.failAll || n <= f.failFirst {
		return 0, f.werr
	}
	return f.PacketConn.WriteTo(p, addr)
}

func (f *faultyTransport) FromNode(addr net.Addr, sid identity.SID) bool {
	f.fromChecks.Add(1)
	return !f.notFrom && f.PacketConn.FromNode(addr, sid)
}

// A dial goes on sending its INIT while the transport has no route, and
// gives up at once on any other write error.
func TestDialWriteErrors(t *testing.T) {
	a, b, _ := memNodes(t, memnet.LinkConfig{})
	l, err := listenMesh(b, 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	d := Dialer{Identity: a.Identity()}

	t.Run("no route", func(t *testing.T) {
		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		tr := &faultyTransport{PacketConn: pc, werr: fmt.Errorf("test: %w", mesh.ErrNoRoute), failFirst: 3}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := d.Dial(ctx, tr, b.SID(), 5000)
		if err != nil {
			t.Fatalf("dial through 3 no-route errors: %v", err)
		}
		s.Close()
		if n := tr.writes.Load(); n < 4 {
			t.Errorf("%d writes, want the 3 failed INITs and more", n)
		}
	})
	t.Run("other error", func(t *testing.T) {
		pc, err := a.Bind(0)
		if err != nil {
			t.Fatal(err)
		}
		broken := errors.New("broken transport")
		tr := &faultyTransport{PacketConn: pc, werr: broken, failAll: true}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		_, err = d.Dial(ctx, tr, b.SID(), 5000)
		if !errors.Is(err, broken) {
			t.Fatalf("dial = %v, want the write error", err)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("the dial gave up after %v", el)
		}
		if n := tr.writes.Load(); n != 1 {
			t.Errorf("%d writes, want 1", n)
		}
	})
}

// A listener drops an INIT that its transport says came from another node
// than the one who signed it.
func TestListenerSourceCheck(t *testing.T) {
	onVirtualTime(t, func(t *testing.T) {
		a, b, _ := memNodes(t, memnet.LinkConfig{})
		lpc, err := b.Bind(5000)
		if err != nil {
			t.Fatal(err)
		}
		tr := &faultyTransport{PacketConn: lpc, notFrom: true}
		l := Listen(tr, b.Identity(), 5000, Config{})
		defer l.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		_, err = dialMesh(ctx, a, b.SID(), 5000, Config{})
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("dial = %v, want a timeout", err)
		}
		l.mu.Lock()
		ep := l.eps[0]
		l.mu.Unlock()
		if tr.fromChecks.Load() == 0 || ep.stats.badInit.Load() == 0 {
			t.Errorf("%d source checks, %d INITs dropped; want both > 0", tr.fromChecks.Load(), ep.stats.badInit.Load())
		}
	})
}

// SessionStats carries every counter of arq's, by the same name.
func TestSessionStatsFromArq(t *testing.T) {
	var a arq.Stats
	av := reflect.ValueOf(&a).Elem()
	for i := range av.NumField() {
		f := av.Field(i)
		switch f.Kind() {
		case reflect.Uint64:
			f.SetUint(uint64(i + 1))
		case reflect.Int, reflect.Int64: // time.Duration is an int64
			f.SetInt(int64(i + 1))
		default:
			t.Fatalf("arq.Stats.%s: kind %v not handled here", av.Type().Field(i).Name, f.Kind())
		}
	}
	s := sessionStats(a)
	sv := reflect.ValueOf(s)
	if sv.NumField() != av.NumField() {
		t.Errorf("SessionStats has %d fields, arq.Stats %d", sv.NumField(), av.NumField())
	}
	for i := range av.NumField() {
		name := av.Type().Field(i).Name
		got := sv.FieldByName(name)
		if !got.IsValid() {
			t.Errorf("SessionStats has no %s", name)
			continue
		}
		if !reflect.DeepEqual(got.Interface(), av.Field(i).Interface()) {
			t.Errorf("SessionStats.%s = %v, want %v", name, got.Interface(), av.Field(i).Interface())
		}
	}
}
