package instance

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestMetricsOptions: mistakes are usage errors; the options pass to the
// detached daemon as they were given; the notice names the URL.
func TestMetricsOptions(t *testing.T) {
	for _, tc := range []struct {
		o        MetricsOptions
		detached bool
		err      string // "" for none
	}{
		{MetricsOptions{}, true, ""},
		{MetricsOptions{Addr: "9100"}, true, ""},
		{MetricsOptions{Addr: "0.0.0.0:9100", Pprof: true}, true, ""},
		{MetricsOptions{Addr: "0"}, false, ""},
		{MetricsOptions{Addr: "0"}, true, "port 0 needs --foreground"},
		{MetricsOptions{Addr: ":0"}, true, "port 0 needs --foreground"},
		{MetricsOptions{Pprof: true}, false, "--pprof needs --metrics"},
		{MetricsOptions{Addr: "x:y"}, false, "--metrics: metrics: address"},
	} {
		err := tc.o.Check(tc.detached)
		var ue *UsageError
		if tc.err == "" && err != nil || tc.err != "" && (!errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v detached %v: %v, want %q", tc.o, tc.detached, err, tc.err)
		}
	}
	o := MetricsOptions{Addr: "9100", Pprof: true}
	if got := o.Args(); !reflect.DeepEqual(got, []string{"--metrics", "9100", "--pprof"}) {
		t.Errorf("Args %q", got)
	}
	if got, want := o.Notice(), "servald: metrics on http://127.0.0.1:9100/metrics, profiles on http://127.0.0.1:9100/debug/pprof/\n"; got != want {
		t.Errorf("Notice %q, want %q", got, want)
	}
	if got := (MetricsOptions{}).Notice() + (&Metrics{}).Notice(); got != "" || len((MetricsOptions{}).Args()) != 0 {
		t.Errorf("no metrics: notice %q, args %q", got, (MetricsOptions{}).Args())
	}
}

// TestServeMetrics: a node's metrics on loopback, the port bound named in
// the notice; a port in use is one plain line.
func TestServeMetrics(t *testing.T) {
	a, _ := memPair(t, nil, nil)
	m, err := ServeMetrics(a, MetricsOptions{Addr: "127.0.0.1:0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	n := m.Notice()
	url, ok := strings.CutPrefix(strings.TrimSpace(n), "servald: metrics on ")
	if !ok || strings.Contains(url, ":0/") {
		t.Fatalf("notice %q", n)
	}
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Close = true
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "\nservald_neighbours 1\n") {
		t.Errorf("scrape of a node with one neighbour:\n%s", body)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	if _, err := ServeMetrics(a, MetricsOptions{Addr: addr}, nil); err == nil || err.Error() != "metrics address "+addr+" is in use by another program: choose another with --metrics" {
		t.Errorf("second server on %s: %v", addr, err)
	}
	if err := (&Metrics{}).Close(); err != nil {
		t.Errorf("Close of none: %v", err)
	}
}
