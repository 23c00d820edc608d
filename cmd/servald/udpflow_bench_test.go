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
	"encoding/binary"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/bench/udprelay"
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

// oneWaySink receives datagrams that carry their sequence number and
// sending time (Unix ns) in their first 16 bytes, and keeps each one's
// one-way latency (the sender is this process: one clock).
type oneWaySink struct {
	pc      *net.UDPConn
	mu      sync.Mutex
	latency map[uint64]time.Duration // guarded by mu; by sequence number
	dups    int                      // guarded by mu
}

func newOneWaySink(b *testing.B) *oneWaySink {
	b.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	s := &oneWaySink{pc: pc, latency: map[uint64]time.Duration{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, err := pc.Read(buf)
			if err != nil {
				return
			}
			if n < 16 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			lat := time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(buf[8:]))))
			s.mu.Lock()
			if _, ok := s.latency[seq]; ok {
				s.dups++
			}
			s.latency[seq] = lat
			s.mu.Unlock()
		}
	}()
	b.Cleanup(func() { pc.Close(); <-done })
	return s
}

// BenchmarkUDPFlowLossy: 2,000 datagrams of 200 bytes, one a millisecond,
// through msp connect/listen --forward=udp: whose mesh link runs through a
// udprelay with 10% loss and 10 ms each way (MTU 1500), to a sink in the
// test that measures each one's one-way latency; with --deadline=100ms,
// 30ms (shorter than a per-hop retransmission takes) and, to compare, 0
// (none: per-hop retransmission delivers everything, however late).
// Metrics: arrived-% (of those sent), p50-ms, p99-ms and max-ms (one-way
// latency of those that arrived), over-bound (arrivals later than the
// deadline + 10 ms, 110 ms for none: with a deadline there should be none,
// but the UDP sockets at both ends, and a process a loaded machine
// deschedules, add delay outside the budget's view).
func BenchmarkUDPFlowLossy(b *testing.B) {
	for _, deadline := range []string{"100ms", "30ms", "0"} {
		b.Run("deadline="+deadline, func(b *testing.B) { benchLossyFlow(b, deadline) })
	}
}

func benchLossyFlow(b *testing.B, deadlineFlag string) {
	const count, delay = 2000, 10 * time.Millisecond
	bound, _ := time.ParseDuration(deadlineFlag)
	if bound == 0 {
		bound = 100 * time.Millisecond // none: compared with the default run's
	}
	sink := newOneWaySink(b)
	l := startListen(b, nil, nil, "--deadline="+deadlineFlag, "--forward=udp:"+sink.pc.LocalAddr().String(), "5404")
	relay, err := udprelay.New(l.udp, udprelay.Symmetric(udprelay.Link{Loss: 0.1, Delay: delay, MTU: 1500}, 1))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { relay.Close() })
	port := freeUDPPort(b)
	c := start(b, nil, nil, "msp", "connect", "--instance", instance(b), "--udp", "127.0.0.1:0", "--peer", relay.Addr(),
		"--deadline="+deadlineFlag, "--forward=udp:"+strconv.Itoa(port), l.sid, "5404")
	c.waitLine(`forwarding UDP`)
	client, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	p := make([]byte, 200)
	var seq uint64
	for b.Loop() {
		first := seq
		for range count {
			binary.BigEndian.PutUint64(p, seq)
			binary.BigEndian.PutUint64(p[8:], uint64(time.Now().UnixNano()))
			client.Write(p)
			seq++
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Second)
		var lats []time.Duration
		sink.mu.Lock()
		for s, lat := range sink.latency {
			if s >= first {
				lats = append(lats, lat)
			}
		}
		dups := sink.dups
		sink.mu.Unlock()
		slices.Sort(lats)
		if len(lats) == 0 {
			b.Fatal("nothing arrived")
		}
		over := len(lats) - sort.Search(len(lats), func(i int) bool { return lats[i] > bound+delay })
		pct := func(q float64) float64 { return lats[int(q*float64(len(lats)-1))].Seconds() * 1e3 }
		b.ReportMetric(100*float64(len(lats))/count, "arrived-%")
		b.ReportMetric(pct(0.5), "p50-ms")
		b.ReportMetric(pct(0.99), "p99-ms")
		b.ReportMetric(pct(1), "max-ms")
		b.ReportMetric(float64(over), "over-bound")
		b.Logf("--deadline=%s: %d of %d arrived (%d duplicates), one-way p50 %.1f ms, p99 %.1f ms, max %.1f ms; %d later than %v",
			deadlineFlag, len(lats), count, dups, pct(0.5), pct(0.99), pct(1), over, bound+delay)
	}
}
