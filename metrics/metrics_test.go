package metrics

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A *mesh.Node is a Source.
var _ Source = (*mesh.Node)(nil)

// fakeSource is a Source whose answers the test sets.
type fakeSource struct {
	stats  mesh.Stats
	nbrs   []mesh.Neighbour
	routes []mesh.Route
}

func (f *fakeSource) Stats() mesh.Stats            { return f.stats }
func (f *fakeSource) Neighbours() []mesh.Neighbour { return f.nbrs }
func (f *fakeSource) Routes() []mesh.Route         { return f.routes }

// fakeSessions is a fakeSource that holds sessions.
type fakeSessions struct {
	fakeSource
	sessions []msp.SessionInfo
}

func (f *fakeSessions) Sessions() []msp.SessionInfo { return f.sessions }

// sid returns a SID whose hex begins with prefix (hex digits) and ends
// with last.
func sid(t *testing.T, prefix string, last byte) identity.SID {
	t.Helper()
	var s identity.SID
	for i := 0; i+1 < len(prefix); i += 2 {
		var b byte
		for _, c := range prefix[i : i+2] {
			b = b<<4 | byte(strings.IndexRune("0123456789ABCDEF", c))
		}
		s[i/2] = b
	}
	s[31] = last
	return s
}

func twoNeighbours(t *testing.T) *fakeSource {
	a, b := sid(t, "AAAA", 1), sid(t, "BBBB", 2)
	return &fakeSource{
		stats: mesh.Stats{FramesIn: 10, FramesOut: 12, Retransmits: 3, Malformed: 4, NoRoute: 5, Replayed: 6},
		nbrs: []mesh.Neighbour{
			{SID: a, MTU: 1400, SRTT: 1500 * time.Microsecond, Loss: 0.25, Delivery: 0.5, Cost: 300},
			{SID: b, MTU: 1200, SRTT: 2 * time.Millisecond, Delivery: 1, Cost: 256},
		},
		routes: []mesh.Route{{SID: a, NextHop: a, Hops: 1}, {SID: b, NextHop: b, Hops: 1}, {SID: sid(t, "CC", 3), NextHop: b, Hops: 2}},
	}
}

// TestCollector: the node's families, with their values and labels, as
// the exposition format shows them.
func TestCollector(t *testing.T) {
	src := twoNeighbours(t)
	want := `
# HELP servald_link_mtu_bytes Largest frame known to pass the link.
# TYPE servald_link_mtu_bytes gauge
servald_link_mtu_bytes{neighbour="AAAA000000000000"} 1400
servald_link_mtu_bytes{neighbour="BBBB000000000000"} 1200
# HELP servald_link_rtt_seconds Smoothed per-hop round trip to the neighbour.
# TYPE servald_link_rtt_seconds gauge
servald_link_rtt_seconds{neighbour="AAAA000000000000"} 0.0015
servald_link_rtt_seconds{neighbour="BBBB000000000000"} 0.002
# HELP servald_link_loss_ratio Recent fraction of frames sent to the neighbour that needed resending.
# TYPE servald_link_loss_ratio gauge
servald_link_loss_ratio{neighbour="AAAA000000000000"} 0.25
servald_link_loss_ratio{neighbour="BBBB000000000000"} 0
# HELP servald_mesh_frames_received_total UDP datagrams the node read.
# TYPE servald_mesh_frames_received_total counter
servald_mesh_frames_received_total 10
# HELP servald_mesh_retransmits_total Per-hop resends of DATA frames.
# TYPE servald_mesh_retransmits_total counter
servald_mesh_retransmits_total 3
# HELP servald_neighbours Nodes heard directly.
# TYPE servald_neighbours gauge
servald_neighbours 2
# HELP servald_routes Nodes reachable, neighbours included.
# TYPE servald_routes gauge
servald_routes 3
`
	names := []string{"servald_link_mtu_bytes", "servald_link_rtt_seconds", "servald_link_loss_ratio", "servald_mesh_frames_received_total", "servald_mesh_retransmits_total", "servald_neighbours", "servald_routes"}
	if err := testutil.CollectAndCompare(newCollector(src), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// One drops family, a series per reason; the reasons set are read.
	if n := testutil.CollectAndCount(newCollector(src), "servald_mesh_drops_total"); n != len(dropReasons) {
		t.Errorf("%d drop series, want %d", n, len(dropReasons))
	}
	drops := `
# HELP servald_mesh_drops_total Frames, datagrams and routing entries the node dropped or ignored, by reason.
# TYPE servald_mesh_drops_total counter
`
	for _, d := range dropReasons {
		v := map[string]string{"malformed": "4", "no_route": "5", "replayed": "6"}[d.reason]
		if v == "" {
			v = "0"
		}
		drops += `servald_mesh_drops_total{reason="` + d.reason + `"} ` + v + "\n"
	}
	if err := testutil.CollectAndCompare(newCollector(src), strings.NewReader(drops), "servald_mesh_drops_total"); err != nil {
		t.Error(err)
	}
	// No session families without sessions.
	if n := testutil.CollectAndCount(newCollector(src), "servald_sessions"); n != 0 {
		t.Errorf("%d servald_sessions series from a source without sessions", n)
	}
}

// TestPedantic: what the collector sends matches what it describes, and
// the families pass the Prometheus linter.
func TestPedantic(t *testing.T) {
	for name, src := range map[string]Source{
		"node":     twoNeighbours(t),
		"sessions": &fakeSessions{fakeSource: *twoNeighbours(t), sessions: []msp.SessionInfo{{Peer: sid(t, "AAAA", 1), LocalPort: 5000, Streams: 2}}},
		"empty":    &fakeSource{},
	} {
		reg := prometheus.NewPedanticRegistry()
		if err := reg.Register(newCollector(src)); err != nil {
			t.Fatalf("%s: register: %v", name, err)
		}
		if _, err := reg.Gather(); err != nil {
			t.Errorf("%s: gather: %v", name, err)
		}
		problems, err := testutil.CollectAndLint(newCollector(src))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: lint: %s: %s", name, p.Metric, p.Text)
		}
	}
}

// TestEveryStatsField: every field of mesh.Stats is served exactly once,
// as a counter family or a drop reason. A field added to mesh.Stats
// fails here until a row of statsCounters or dropReasons reads it.
func TestEveryStatsField(t *testing.T) {
	var st mesh.Stats
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		v.Field(i).SetUint(uint64(i + 1))
	}
	seen := map[uint64]int{}
	for _, m := range statsCounters {
		seen[m.get(&st)]++
	}
	for _, d := range dropReasons {
		seen[d.get(&st)]++
	}
	for i := range v.NumField() {
		if n := seen[uint64(i+1)]; n != 1 {
			t.Errorf("mesh.Stats.%s is served %d times, want once: add it to statsCounters or dropReasons", v.Type().Field(i).Name, n)
		}
	}
	if rows := len(statsCounters) + len(dropReasons); rows != v.NumField() {
		t.Errorf("%d rows for %d fields", rows, v.NumField())
	}
	reasons := map[string]bool{}
	for _, d := range dropReasons {
		if reasons[d.reason] {
			t.Errorf("drop reason %q twice", d.reason)
		}
		reasons[d.reason] = true
	}
}

// TestSIDLabels: neighbours are labelled by 16 hex digits, all 64 for
// neighbours whose 16 digits are the same (a scrape must not fail on two
// series with one label set).
func TestSIDLabels(t *testing.T) {
	a1, a2, b := sid(t, "0123456789ABCDEF", 1), sid(t, "0123456789ABCDEF", 2), sid(t, "FEDC", 3)
	src := &fakeSource{nbrs: []mesh.Neighbour{{SID: a1}, {SID: a2}, {SID: b}}}
	got := sidLabels(3, func(i int) identity.SID { return src.nbrs[i].SID })
	want := []string{a1.String(), a2.String(), b.String()[:16]}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("labels %q, want %q", got, want)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(newCollector(src))
	if _, err := reg.Gather(); err != nil {
		t.Errorf("gather with shared prefixes: %v", err)
	}
}

// TestSessions: a SessionSource adds the session families, summed per
// peer and local port.
func TestSessions(t *testing.T) {
	a, b := sid(t, "AAAA", 1), sid(t, "BBBB", 2)
	src := &fakeSessions{sessions: []msp.SessionInfo{
		{Peer: a, LocalPort: 5000, Streams: 1, BytesSent: 100, BytesReceived: 7, PacketsLost: 1},
		{Peer: a, LocalPort: 5000, Streams: 2, BytesSent: 50},
		{Peer: b, LocalPort: 6000, BytesRetransmitted: 9},
	}}
	want := `
# HELP servald_sessions MSP sessions open now.
# TYPE servald_sessions gauge
servald_sessions 3
# HELP servald_session_streams Streams open now.
# TYPE servald_session_streams gauge
servald_session_streams{peer="AAAA000000000000",port="5000"} 3
servald_session_streams{peer="BBBB000000000000",port="6000"} 0
# HELP servald_session_sent_bytes_total Stream bytes sent for the first time.
# TYPE servald_session_sent_bytes_total counter
servald_session_sent_bytes_total{peer="AAAA000000000000",port="5000"} 150
servald_session_sent_bytes_total{peer="BBBB000000000000",port="6000"} 0
# HELP servald_session_retransmitted_bytes_total Stream bytes sent again.
# TYPE servald_session_retransmitted_bytes_total counter
servald_session_retransmitted_bytes_total{peer="AAAA000000000000",port="5000"} 0
servald_session_retransmitted_bytes_total{peer="BBBB000000000000",port="6000"} 9
`
	if err := testutil.CollectAndCompare(newCollector(src), strings.NewReader(want), "servald_sessions", "servald_session_streams", "servald_session_sent_bytes_total", "servald_session_retransmitted_bytes_total"); err != nil {
		t.Error(err)
	}
}

// get fetches url and returns the status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true // no idle connection left behind for goleak
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestHandler: a scrape through HTTP shows the node's, the Go runtime's
// and the process's families, twice from one process (private
// registries: no duplicate registration); /debug/pprof/ only with Pprof.
func TestHandler(t *testing.T) {
	for _, pprof := range []bool{false, true} {
		srv := httptest.NewServer(Handler(twoNeighbours(t), Options{Pprof: pprof}))
		code, body := get(t, srv.URL+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		for _, want := range []string{
			"\nservald_neighbours 2\n",
			"\nservald_routes 3\n",
			`servald_link_rtt_seconds{neighbour="AAAA000000000000"} 0.0015`,
			`servald_mesh_drops_total{reason="malformed"} 4`,
			"\nservald_mesh_frames_sent_total 12\n",
			"\ngo_goroutines ",
			"\nprocess_resident_memory_bytes ",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %q", want)
			}
		}
		wantPprof := http.StatusNotFound
		if pprof {
			wantPprof = http.StatusOK
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/cmdline"} {
			if code, _ := get(t, srv.URL+path); code != wantPprof {
				t.Errorf("pprof %v: %s: %d, want %d", pprof, path, code, wantPprof)
			}
		}
		if code, _ := get(t, srv.URL+"/"); code != http.StatusNotFound {
			t.Errorf("/: %d, want 404", code)
		}
		srv.Close()
	}
}

func TestParseAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"9100", "127.0.0.1:9100"},
		{":9100", "127.0.0.1:9100"},
		{"0", "127.0.0.1:0"},
		{"127.0.0.1:0", "127.0.0.1:0"},
		{"localhost:9100", "localhost:9100"},
		{"0.0.0.0:9100", "0.0.0.0:9100"},
		{"[::1]:9100", "[::1]:9100"},
		{"", ""},
		{"x", ""},
		{"65536", ""},
		{"-1", ""},
		{"+80", ""},
		{"host:", ""},
		{"::1:9100", ""},
		{"a:b:c", ""},
	} {
		got, err := ParseAddr(tc.in)
		if tc.want == "" {
			if err == nil || !strings.HasPrefix(err.Error(), "metrics: ") {
				t.Errorf("ParseAddr(%q) = %q, %v; want a metrics: error", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseAddr(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for addr, want := range map[string]bool{"127.0.0.1:1": true, "127.9.9.9:1": true, "[::1]:1": true, "localhost:1": true, "0.0.0.0:1": false, "[::]:1": false, "192.0.2.1:1": false, "example.com:1": false, "bad": false} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v", addr, got)
		}
	}
}

// TestServer: Listen serves until Close (idempotent); a port in use is
// EADDRINUSE.
func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0", twoNeighbours(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/metrics") {
		t.Errorf("URL %q", s.URL())
	}
	if code, body := get(t, s.URL()); code != http.StatusOK || !strings.Contains(body, "servald_neighbours 2") {
		t.Errorf("scrape: %d %q", code, body)
	}
	_, err = Listen(s.Addr().String(), twoNeighbours(t), Options{})
	if !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "metrics: ") {
		t.Errorf("second Listen on %s: %v, want metrics: ... EADDRINUSE", s.Addr(), err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Error("dial after Close succeeded")
	}
}
