package main

// A real UDP client through UDP flows: iperf3 -u through two servald
// processes on loopback,
//
//	iperf3 -c ─UDP─► connect --forward=udp:P ─(mesh, msp datagrams)─► listen --forward=udp:S ─UDP─► iperf3 -s -p S
//	iperf3 -c ─TCP (control)─► a relay in the test ─TCP─► iperf3 -s
//
// beside iperf3 straight to the server in the same run. iperf3's control
// connection (TCP, same port number) goes through a plain relay in the
// test: only the datagrams are what is measured.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/servald/servald/forward"
)

// needIperf3 skips where iperf3 is missing.
func needIperf3(tb testing.TB) string {
	tb.Helper()
	path, err := exec.LookPath("iperf3")
	if err != nil {
		tb.Skip("iperf3 is not installed (apt-get install iperf3): this benchmark drives it")
	}
	return path
}

// iperf3Server runs iperf3 -s on 127.0.0.1 until the benchmark ends and
// returns its port.
func iperf3Server(b *testing.B, bin string) int {
	b.Helper()
	port := freePort(b)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(port))
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cancel(); cmd.Wait() })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			b.Fatal("iperf3 -s did not start")
		}
	}
}

// tcpRelay relays TCP connections from a new port on 127.0.0.1 to target
// until the benchmark ends, and returns the port.
func tcpRelay(b *testing.B, target string) int {
	b.Helper()
	ln := tcpService(b, func(c net.Conn) {
		if t, err := net.Dial("tcp", target); err == nil {
			forward.Join(context.Background(), c, t)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// iperf3Result is what iperf3 -u -J reports at the end.
type iperf3Result struct {
	End struct {
		Sum struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			JitterMs      float64 `json:"jitter_ms"`
			LostPackets   int     `json:"lost_packets"`
			Packets       int     `json:"packets"`
			LostPercent   float64 `json:"lost_percent"`
		} `json:"sum"`
	} `json:"end"`
	Error string `json:"error"`
}

// runIperf3 runs iperf3 -u -b 50M for 5 s against port and reports its
// figures.
func runIperf3(b *testing.B, bin string, port int) {
	b.Helper()
	for b.Loop() {
		out, err := exec.Command(bin, "-u", "-b", "50M", "-l", "1400", "-t", "5", "-J",
			"-c", "127.0.0.1", "-p", strconv.Itoa(port)).Output()
		var r iperf3Result
		if jerr := json.Unmarshal(out, &r); jerr != nil || r.Error != "" || err != nil {
			b.Fatalf("iperf3: %v %v %s", err, jerr, r.Error)
		}
		s := r.End.Sum
		b.ReportMetric(s.BitsPerSecond/1e6, "Mbit/s")
		b.ReportMetric(s.LostPercent, "loss%")
		b.ReportMetric(s.JitterMs, "jitter-ms")
		b.Logf("iperf3 -u -b 50M -l 1400 -t 5: %.1f Mbit/s received, %d of %d datagrams lost (%.2f%%), jitter %.3f ms",
			s.BitsPerSecond/1e6, s.LostPackets, s.Packets, s.LostPercent, s.JitterMs)
	}
}

// BenchmarkUDPFlowIperf3: iperf3 -u -b 50M straight to the server (raw)
// and through msp connect/listen --forward=udp: (servald), each reporting
// iperf3's loss and jitter.
func BenchmarkUDPFlowIperf3(b *testing.B) {
	bin := needIperf3(b)
	server := iperf3Server(b, bin)
	b.Run("raw", func(b *testing.B) { runIperf3(b, bin, server) })
	b.Run("servald", func(b *testing.B) {
		l := startListen(b, nil, nil, "-v", "--forward=udp:"+strconv.Itoa(server), "5401")
		// iperf3 -c sends its datagrams to the port of its control
		// connection: the relay's TCP port is also msp connect's UDP one.
		port := tcpRelay(b, "127.0.0.1:"+strconv.Itoa(server))
		c := start(b, nil, nil, connectArgs(b, l, "-v", "--forward=udp:"+strconv.Itoa(port), l.sid, "5401")...)
		c.waitLine(`forwarding UDP`)
		runIperf3(b, bin, port)
		// Where datagrams were lost: each side's counters.
		for _, p := range []*proc{c, l.proc} {
			p.cmd.Process.Signal(os.Interrupt)
			b.Logf("%s", p.waitLine(`UDP flows .*`)[0])
		}
	})
}
