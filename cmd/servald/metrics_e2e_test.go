package main

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/daemon"
)

// scrape fetches url with the real curl (-f: an HTTP error is a failure)
// and returns its samples, "name{labels}" to value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	out, code, stderr := curl("-f", url)
	if code != 0 {
		t.Fatalf("curl -f %s: exit %d: %s", url, code, stderr)
	}
	samples := map[string]float64{}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			t.Fatalf("%s: bad sample line %q", url, line)
		}
		samples[line[:i]] = v
	}
	return samples
}

// httpStatus is the HTTP status curl gets for url.
func httpStatus(t *testing.T, url string) string {
	t.Helper()
	out, code, stderr := curl("-o", "/dev/null", "-w", "%{http_code}", url)
	if code != 0 {
		t.Fatalf("curl %s: exit %d: %s", url, code, stderr)
	}
	return string(out)
}

// TestMetrics: two daemons peered on loopback serve /metrics (one on a
// bare PORT: loopback by default), a tunnel runs through them, and curl
// reads one neighbour, the link's RTT and MTU, one route, and frame and
// delivery counters that grow with the tunnel's traffic between two
// scrapes; /debug/pprof/ answers only where --pprof was given.
func TestMetrics(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (apt-get install curl): TestMetrics scrapes with it")
	}
	portA, portB := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	a := startDaemon(t, instance(t), "--metrics", portA, "--pprof")
	b := startDaemon(t, instance(t), "--peer", a.udp, "--metrics", "127.0.0.1:"+portB)
	urlA, urlB := "http://127.0.0.1:"+portA, "http://127.0.0.1:"+portB
	if want := "servald: metrics on " + urlA + "/metrics, profiles on " + urlA + "/debug/pprof/"; a.notice != want {
		t.Errorf("A printed %q, want %q", a.notice, want)
	}
	if want := "servald: metrics on " + urlB + "/metrics"; b.notice != want {
		t.Errorf("B printed %q, want %q", b.notice, want)
	}

	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	lis := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--forward", echoPort, "5000")
	lis.waitLine(`listening as ` + a.sid + ` on MDP port 5000`)
	tcp := freePort(t)
	c := start(t, nil, nil, "msp", "connect", "--instance", b.inst, "--forward", strconv.Itoa(tcp), a.sid, "5000")
	c.waitLine("forwarding TCP")
	tunnel := fmt.Sprintf("127.0.0.1:%d", tcp)
	dialRetry(t, tunnel).Close()
	if err := echoOnce(tunnel, 64<<10); err != nil {
		t.Fatal(err)
	}

	before := map[string]map[string]float64{"A": scrape(t, urlA+"/metrics"), "B": scrape(t, urlB+"/metrics")}
	if err := echoOnce(tunnel, 1<<20); err != nil {
		t.Fatal(err)
	}
	after := map[string]map[string]float64{"A": scrape(t, urlA+"/metrics"), "B": scrape(t, urlB+"/metrics")}
	peerOf := map[string]string{"A": b.sid, "B": a.sid}
	for _, node := range []string{"A", "B"} {
		s0, s1 := before[node], after[node]
		link := `{neighbour="` + peerOf[node][:16] + `"}`
		for name, ok := range map[string]bool{
			"servald_neighbours":                           s1["servald_neighbours"] == 1,
			"servald_routes":                               s1["servald_routes"] == 1,
			"servald_link_rtt_seconds" + link:              s1["servald_link_rtt_seconds"+link] > 0 && s1["servald_link_rtt_seconds"+link] < 1,
			"servald_link_mtu_bytes" + link:                s1["servald_link_mtu_bytes"+link] >= 1200,
			`servald_mesh_drops_total{reason="malformed"}`: hasKey(s1, `servald_mesh_drops_total{reason="malformed"}`),
			"go_goroutines":                                s1["go_goroutines"] > 0,
			"process_resident_memory_bytes":                s1["process_resident_memory_bytes"] > 0,
		} {
			if !ok {
				t.Errorf("%s: %s = %v (present %v)", node, name, s1[name], hasKey(s1, name))
			}
		}
		// 1 MiB each way in frames of at most the link's MTU: at least
		// 1 MiB/MTU datagrams more, read, written and delivered, at
		// both ends.
		least := float64(1<<20) / max(s1["servald_link_mtu_bytes"+link], 1)
		for _, name := range []string{"servald_mesh_frames_received_total", "servald_mesh_frames_sent_total", "servald_mesh_delivered_total"} {
			if d := s1[name] - s0[name]; d < least {
				t.Errorf("%s: %s grew by %v (%v to %v) over a 1 MiB echo, want at least %.0f", node, name, d, s0[name], s1[name], least)
			}
		}
	}
	for _, node := range []string{"A", "B"} {
		link := `{neighbour="` + peerOf[node][:16] + `"}`
		for _, name := range []string{"servald_link_sent_bytes_total" + link, "servald_link_received_bytes_total" + link} {
			if d := after[node][name] - before[node][name]; d < 1<<20 {
				t.Errorf("%s: %s grew by %v over a 1 MiB echo", node, name, d)
			}
		}
	}
	// The sessions the tunnel processes report to their daemons (every
	// daemon.ReportEvery): at least 1 MiB + 64 KiB echoed through each.
	for node, url := range map[string]string{"A": urlA, "B": urlB} {
		eventually(t, 10*time.Second, func() string {
			s := scrape(t, url+"/metrics")
			got := sumPrefix(s, "servald_session_received_bytes_total{")
			if s["servald_sessions"] < 1 || got < 1<<20+64<<10 {
				return fmt.Sprintf("%s: servald_sessions %v, session bytes received %v", node, s["servald_sessions"], got)
			}
			return ""
		})
	}
	linkA := `{neighbour="` + b.sid[:16] + `"}`
	t.Logf("A over a 1 MiB echo: frames in %v to %v, out %v to %v, delivered %v to %v; link RTT %v s, MTU %v",
		before["A"]["servald_mesh_frames_received_total"], after["A"]["servald_mesh_frames_received_total"],
		before["A"]["servald_mesh_frames_sent_total"], after["A"]["servald_mesh_frames_sent_total"],
		before["A"]["servald_mesh_delivered_total"], after["A"]["servald_mesh_delivered_total"],
		after["A"]["servald_link_rtt_seconds"+linkA], after["A"]["servald_link_mtu_bytes"+linkA])

	for url, want := range map[string]string{urlA + "/debug/pprof/": "200", urlA + "/debug/pprof/goroutine?debug=1": "200", urlB + "/debug/pprof/": "404", urlA + "/": "404"} {
		if got := httpStatus(t, url); got != want {
			t.Errorf("%s: HTTP %s, want %s", url, got, want)
		}
	}

	// The port goes with the daemon.
	if code, _, errOut := runOnce(t, nil, "stop", "--instance", a.inst); code != 0 {
		t.Fatalf("stop: exit %d: %s", code, errOut)
	}
	if c, err := net.Dial("tcp", "127.0.0.1:"+portA); err == nil {
		c.Close()
		t.Errorf("127.0.0.1:%s still accepts after stop", portA)
	}
}

func hasKey(m map[string]float64, k string) bool {
	_, ok := m[k]
	return ok
}

// TestMetricsRefusals: --metrics mistakes are usage errors (exit 2); a
// port in use stops the daemon from starting (exit 1, one line), whether
// it detaches or not.
func TestMetricsRefusals(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	inst := instance(t)
	start := []string{"start", "--instance", inst, "--udp", "127.0.0.1:0"}
	with := func(args ...string) []string { return append(start[:len(start):len(start)], args...) }
	checkRefusals(t, []refusalCase{
		{name: "pprof without metrics", args: with("--pprof"), code: 2, want: "--pprof needs --metrics"},
		{name: "bad address", args: with("--metrics", "nine"), code: 2, want: "--metrics: metrics: address \"nine\": want [HOST:]PORT"},
		{name: "port out of range", args: with("--metrics", "127.0.0.1:70000"), code: 2, want: "want [HOST:]PORT"},
		{name: "port 0 detached", args: with("--metrics", "0"), code: 2, want: "port 0 needs --foreground"},
		{name: "port in use", args: with("--metrics", busy.Addr().String()), code: 1, want: "the daemon failed to start: metrics address " + busy.Addr().String() + " is in use by another program: choose another with --metrics"},
		{name: "port in use, foreground", args: with("--foreground", "--metrics", busy.Addr().String()), code: 1, want: "servald: metrics address " + busy.Addr().String() + " is in use"},
	})
	if pid, running := daemon.Probe(inst); running {
		t.Errorf("a daemon (pid %d) runs after the refused starts", pid)
	}
}

// sumPrefix sums the samples whose name and labels start with prefix.
func sumPrefix(s map[string]float64, prefix string) float64 {
	sum := 0.0
	for k, v := range s {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}
