package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// testSessions returns n session summaries, session i having moved i KiB.
func testSessions(n int) []msp.SessionInfo {
	out := make([]msp.SessionInfo, n)
	for i := range out {
		var sid identity.SID
		sid[0], sid[31] = byte(i), 0xaa
		out[i] = msp.SessionInfo{Peer: sid, Remote: fmt.Sprintf("%s:%d", sid, 5000+i), LocalPort: 7,
			Streams: i % 3, BytesSent: uint64(i) << 10, BytesReceived: 5, SRTTus: 1500, Cwnd: 64 << 10}
	}
	return out
}

func TestReportRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 5, maxReportSessions, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			in := Report{Role: RoleService, Service: "ssh", Target: "127.0.0.1:22", Connections: 3, Sessions: testSessions(n)}
			b, err := appendReport(nil, in)
			if err != nil {
				t.Fatal(err)
			}
			typ, body, k, err := parseFrame(b, maxDataFrame)
			if err != nil || k != len(b) || typ != frameReport {
				t.Fatalf("frame: type %q, %d of %d bytes, %v", typ, k, len(b), err)
			}
			if len(body) > maxReport {
				t.Fatalf("report body of %d bytes, limit %d", len(body), maxReport)
			}
			got, err := parseReport(body)
			if err != nil {
				t.Fatal(err)
			}
			if len(got.Sessions)+got.MoreSessions != n {
				t.Fatalf("%d sessions listed and %d left out, want %d in all", len(got.Sessions), got.MoreSessions, n)
			}
			if n > maxReportSessions && len(got.Sessions) == 0 {
				t.Fatal("no session listed")
			}
			// Busiest first: the listed ones are the n that moved most.
			for i, s := range got.Sessions {
				if want := uint64(n-1-i) << 10; s.BytesSent != want {
					t.Fatalf("session %d sent %d, want %d (busiest first)", i, s.BytesSent, want)
				}
				if s != in.Sessions[n-1-i] {
					t.Fatalf("session %d decoded as %+v, want %+v", i, s, in.Sessions[n-1-i])
				}
			}
			got.Sessions, got.MoreSessions, in.Sessions = nil, 0, nil
			if !reflect.DeepEqual(got, in) {
				t.Fatalf("decoded %+v, want %+v", got, in)
			}
		})
	}
}

func TestParseReportRefuses(t *testing.T) {
	ok := Report{Role: RoleListen, Target: "stdio", Sessions: testSessions(1)}
	for _, c := range []struct {
		name string
		edit func(*Report)
	}{
		{"role", func(r *Report) { r.Role = "relay" }},
		{"service", func(r *Report) { r.Service = "no spaces please" }},
		{"target control", func(r *Report) { r.Target = "evil\x1b[2J" }},
		{"target long", func(r *Report) { r.Target = strings.Repeat("x", maxReportText+1) }},
		{"connections", func(r *Report) { r.Connections = -1 }},
		{"sessions", func(r *Report) { r.Sessions = testSessions(maxReportSessions + 1) }},
		{"remote", func(r *Report) { r.Sessions[0].Remote = "a\nb" }},
		{"streams", func(r *Report) { r.Sessions[0].Streams = -2 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			r.Sessions = testSessions(1)
			c.edit(&r)
			body, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := parseReport(body); err == nil {
				t.Fatalf("accepted %s", body)
			}
		})
	}
	body, _ := json.Marshal(ok)
	if _, err := parseReport(body); err != nil {
		t.Fatalf("refused a good report: %v", err)
	}
	for _, b := range []string{"", "{", "[]", `{"role":"listen","connections":"3"}`} {
		if _, err := parseReport([]byte(b)); err == nil {
			t.Errorf("accepted %q", b)
		}
	}
}

// tunnelsOf polls srv's snapshot until ok accepts its tunnels.
func tunnelsOf(t *testing.T, srv *Server, ok func([]Report) bool) []Report {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts := srv.Snapshot().Tunnels
		if ok(ts) {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnels %+v", ts)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReportKeptUntilClose: the daemon shows a bound port's latest report,
// with the port and the process filled in, through Snapshot and over the
// socket, and forgets it when the port closes.
func TestReportKeptUntilClose(t *testing.T) {
	a, _ := pair(t)
	srv, dir := serve(t, a)
	c := dial(t, SocketPath(dir))
	p := bind(t, c, 0)
	bind(t, c, 0) // bound, never reports: not listed
	if !p.reports {
		t.Fatal("the bind reply did not say that the daemon takes reports")
	}
	if (&Port{}).SetReporter(time.Second, func() Report { return Report{} }) {
		t.Fatal("SetReporter on a port whose daemon does not take reports returned true")
	}
	calls := make(chan int, 100)
	n := 0
	if !p.SetReporter(20*time.Millisecond, func() Report {
		n++
		select {
		case calls <- n:
		default:
		}
		return Report{Role: RoleConnect, Port: 9999, PID: 1, Target: "127.0.0.1:2222", Connections: n, Sessions: testSessions(2)}
	}) {
		t.Fatal("SetReporter returned false")
	}
	port := p.LocalAddr().(mesh.Addr).Port
	ts := tunnelsOf(t, srv, func(ts []Report) bool { return len(ts) == 1 && ts[0].Connections >= 3 })
	r := ts[0]
	if r.Port != port || r.PID != os.Getpid() || r.Role != RoleConnect || r.Target != "127.0.0.1:2222" || len(r.Sessions) != 2 {
		t.Fatalf("tunnel %+v, want port %d, pid %d, the role, target and 2 sessions reported", r, port, os.Getpid())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Tunnels) != 1 || snap.Tunnels[0].Port != port || snap.Tunnels[0].Sessions[1] != r.Sessions[1] {
		t.Fatalf("snapshot over the socket: tunnels %+v", snap.Tunnels)
	}
	if snap.Node.SID != a.SID() || len(snap.Neighbours) != 1 || snap.Node.PID != os.Getpid() {
		t.Fatalf("snapshot node %+v, %d neighbours", snap.Node, len(snap.Neighbours))
	}
	p.Close()
	tunnelsOf(t, srv, func(ts []Report) bool { return len(ts) == 0 })
}

// TestNeighbourRates: the rate is the counters' growth since the oldest
// sample kept.
func TestNeighbourRates(t *testing.T) {
	var st statusState
	sid := identity.SID{1}
	t0 := time.Now()
	nb := func(in, out uint64) mesh.Neighbour { return mesh.Neighbour{SID: sid, BytesIn: in, BytesOut: out} }
	if in, out := st.ratesLocked(t0, nb(10, 10)); in != 0 || out != 0 {
		t.Fatalf("rates %v, %v without a sample", in, out)
	}
	st.last = map[identity.SID]rateSample{sid: {at: t0, in: 1000, out: 2000}}
	if in, _ := st.ratesLocked(t0.Add(50*time.Millisecond), nb(5000, 2000)); in != 0 {
		t.Fatalf("rate %v over 50 ms, want none (too short)", in)
	}
	in, out := st.ratesLocked(t0.Add(2*time.Second), nb(5000, 2000))
	if in != 2000 || out != 0 {
		t.Fatalf("rates %v, %v, want 2000, 0", in, out)
	}
	st.prev = map[identity.SID]rateSample{sid: {at: t0.Add(-2 * time.Second), in: 0, out: 10}}
	if in, out := st.ratesLocked(t0.Add(2*time.Second), nb(8000, 4010)); in != 2000 || out != 1000 {
		t.Fatalf("rates %v, %v from the older sample, want 2000, 1000", in, out)
	}
	if in, out := st.ratesLocked(t0.Add(2*time.Second), nb(8000, 0)); in != 0 || out != 0 {
		t.Fatalf("rates %v, %v after the counters went back (the neighbour came up again)", in, out)
	}
}

// TestDropCounters: every counter of mesh.Stats that counts something
// dropped or ignored is in the table, once.
func TestDropCounters(t *testing.T) {
	notDrops := map[string]bool{
		"FramesIn": true, "FramesOut": true, "Retransmits": true, "Timeouts": true,
		"FastRetransmits": true, "Delivered": true, "Relayed": true, "RoutesLost": true,
		"ControlBytesOut": true, "AckBytesOut": true, "CookiesSent": true, "Moved": true,
	}
	if got := DropCounters(mesh.Stats{}, false); len(got) != 0 {
		t.Fatalf("drops of zero counters: %v", got)
	}
	typ := reflect.TypeOf(mesh.Stats{})
	drops := 0
	for i := range typ.NumField() {
		f := typ.Field(i)
		if notDrops[f.Name] {
			continue
		}
		drops++
		var st mesh.Stats
		reflect.ValueOf(&st).Elem().Field(i).SetUint(7)
		got := DropCounters(st, false)
		if len(got) != 1 || got[0].Count != 7 {
			t.Errorf("mesh.Stats.%s = 7 gives drops %v: add it to dropCounters (or to notDrops here)", f.Name, got)
		}
	}
	if all := DropCounters(mesh.Stats{}, true); len(all) != drops {
		t.Errorf("%d drop counters, mesh.Stats has %d", len(all), drops)
	}
}

// mustReport encodes r as a REPORT frame.
func mustReport(r Report) []byte {
	b, err := appendReport(nil, r)
	if err != nil {
		panic(err)
	}
	return b
}

// checkReport: a report body the daemon accepts re-encodes into one it
// accepts again, the same.
func checkReport(t *testing.T, body []byte) {
	r, err := parseReport(body)
	if err != nil {
		return
	}
	b, err := appendReport(nil, r)
	if err != nil {
		t.Fatalf("accepted %+v does not encode: %v", r, err)
	}
	r2, err := parseReport(b[frameHeaderLen+1:])
	if err != nil {
		t.Fatalf("accepted %+v, re-encoded refused: %v", r, err)
	}
	if r2.Role != r.Role || r2.Target != r.Target || r2.Service != r.Service || r2.Connections != r.Connections ||
		len(r2.Sessions)+r2.MoreSessions != len(r.Sessions)+r.MoreSessions {
		t.Fatalf("re-encoded %+v, want %+v", r2, r)
	}
}

// FuzzParseReport: the daemon's decoding of REPORT bodies.
func FuzzParseReport(f *testing.F) {
	for _, n := range []int{0, 1, 3, maxReportSessions} {
		r := Report{Role: RoleListen, Service: "web", Target: "127.0.0.1:80", Connections: n, Sessions: testSessions(n)}
		f.Add(mustReport(r)[frameHeaderLen+1:])
	}
	f.Add([]byte(`{"role":"connect","sessions":[{"peer":"00","remote":"\u0000"}]}`))
	f.Fuzz(checkReport)
}

// TestRemoteErrorClasses: the daemon's write errors tell msp what they
// are, through the NoRoute and TooLarge methods msp.Transport's write
// errors have (of the mesh errors they unwrap to), however wrapped.
func TestRemoteErrorClasses(t *testing.T) {
	noRoute := func(err error) bool {
		var e interface{ NoRoute() bool }
		return errors.As(err, &e) && e.NoRoute()
	}
	tooLarge := func(err error) bool {
		var e interface{ TooLarge() bool }
		return errors.As(err, &e) && e.TooLarge()
	}
	for _, tc := range []struct {
		name              string
		err               error
		noRoute, tooLarge bool
	}{
		{"no route", fmt.Errorf("x: %w", &RemoteError{Code: codeNoRoute, Msg: "no route"}), true, false},
		{"too large", &RemoteError{Code: codeTooLarge, Msg: "too large"}, false, true},
		{"other", &RemoteError{Code: codeOther, Msg: "broken"}, false, false},
		{"closed", &RemoteError{Code: codeClosed, Msg: "closed"}, false, false},
	} {
		if got := noRoute(tc.err); got != tc.noRoute {
			t.Errorf("%s: NoRoute = %v, want %v", tc.name, got, tc.noRoute)
		}
		if got := tooLarge(tc.err); got != tc.tooLarge {
			t.Errorf("%s: TooLarge = %v, want %v", tc.name, got, tc.tooLarge)
		}
	}
}
