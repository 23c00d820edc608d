package bench

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/servald/servald/bench/udprelay"
)

const (
	// transferTime is how long each goodput measurement writes.
	transferTime = 4 * time.Second
	// echoRoundsTimed is the timed round trips of one echo measurement.
	echoRoundsTimed = 3000
	// idleStreams is the streams of the idle-memory measurement.
	idleStreams = 1000
)

// relayNice is the nice value of the relays' threads: above the processes
// under test, since the relay stands for the network between machines,
// which does not wait for their CPU. At the same priority, on this 2-core
// machine with 7 processes of a chain under test, the relays sent
// datagrams 2-15 ms late on average, adding that to every link's delay.
const relayNice = -10

// newRelay starts a relay to upstream for the benchmark's lifetime.
func newRelay(b *testing.B, upstream string, l udprelay.Link, seed uint64) *udprelay.Relay {
	b.Helper()
	cfg := udprelay.Symmetric(l, seed)
	cfg.Nice = relayNice
	r, err := udprelay.New(upstream, cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if !r.Prioritized() {
			b.Logf("the relay's threads could not be raised to nice %d (needs root): it competes with the processes under test for CPU and runs late", relayNice)
		}
	})
	b.Cleanup(func() { r.Close() })
	return r
}

// must returns a function that passes a measurement through, or fails the
// benchmark with its error: must(b, "what")(measure()).
func must(b *testing.B, what string) func(float64, error) float64 {
	return func(v float64, err error) float64 {
		b.Helper()
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// BenchmarkRealLossy: one stream through two real servald processes
// (msp connect --forward -> msp listen --forward) whose UDP link runs
// through a udprelay with 10 ms each way, MTU 1500 (1472 bytes of UDP
// payload) and 0/1/5/10/20% loss each way; beside it the kcptun-equivalent
// baseline through a relay with the same settings, in the same run.
// Metrics: servald-MB/s, kcp-MB/s, x-kcp (servald / kcp), and from the
// servald link's relay max-dgram-B (the largest datagram that crossed it:
// path-MTU probing should reach 1472), too-big (probes the MTU
// stopped) and relay-late-us (how late past due, on average, the relay
// sent a datagram: its own delay on top of the link's). Each op is one transfer of each, about 4 s of writing; run
// with -benchtime 1x (or Nx for medians of N).
// msp BenchmarkLossyLink is the same link on memnet (scripts/bench prints
// both).
func BenchmarkRealLossy(b *testing.B) {
	tg := startTarget(b)
	for i, loss := range []float64{0, 0.01, 0.05, 0.10, 0.20} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			link := udprelay.Link{Loss: loss, Delay: 10 * time.Millisecond, MTU: 1500}
			var svRelay *udprelay.Relay
			sv := servaldTunnel(b, tg.addr, func(udp string) string {
				svRelay = newRelay(b, udp, link, uint64(2*i+1))
				return svRelay.Addr()
			})
			kc := kcpTunnel(b, tg.addr, func(udp string) string {
				return newRelay(b, udp, link, uint64(2*i+2)).Addr()
			})
			var s, k []float64
			sd0 := must(b, "drops")(dropsOf(sv.pids...))
			rd0 := must(b, "drops")(dropsOf(os.Getpid()))
			for b.Loop() {
				s = append(s, must(b, "servald")(goodputOf(sv.addr)))
				k = append(k, must(b, "kcp")(goodputOf(kc.addr)))
			}
			b.ReportMetric(must(b, "drops")(dropsOf(sv.pids...))-sd0, "servald-sock-drops")
			b.ReportMetric(must(b, "drops")(dropsOf(os.Getpid()))-rd0, "relay-sock-drops")
			b.Logf("servald MB/s %.3g, kcp MB/s %.3g", s, k)
			b.ReportMetric(median(s), "servald-MB/s")
			b.ReportMetric(median(k), "kcp-MB/s")
			b.ReportMetric(median(s)/median(k), "x-kcp")
			st := svRelay.Stats()
			b.ReportMetric(float64(max(st.Up.MaxOut, st.Down.MaxOut)), "max-dgram-B")
			b.ReportMetric(float64(st.Up.TooBig+st.Down.TooBig), "too-big")
			b.ReportMetric(meanLate(st).Seconds()*1e6, "relay-late-us")
		})
	}
}

// meanLate is how late past its due time the relay sent a datagram, on
// average over both directions: the harness's own delay, on top of the
// link's.
func meanLate(st udprelay.Stats) time.Duration {
	n := st.Up.Out + st.Down.Out
	if n == 0 {
		return 0
	}
	return (st.Up.Late + st.Down.Late) / time.Duration(n)
}

func goodputOf(addr string) (float64, error) { return goodput(addr, transferTime) }

// BenchmarkRealChain: a 4-hop chain of real daemons (`servald start --foreground` in 5
// instance directories, each --peer'ing the next through its own
// udprelay with 5 ms each way and MTU 1500), one stream from
// `msp connect` at one end to `msp listen` at the other. Each op moves one
// transfer with every link lossless and one at 10% loss each way on every
// link (the relays switch between the two, so both use the same processes
// and routes), back to back. Metrics: lossless-MB/s and lossy-MB/s
// (medians), of-lossless (median lossy / median lossless) and
// min-of-lossless (the lowest ratio of one op's pair), relay-late-us (as
// in BenchmarkRealLossy, over the 4 relays), cores-used (CPU seconds of
// the 5 daemons and the two msp processes per second of the transfers: 2
// is both cores), harness-cores (the same for this process: the relays,
// the TCP client and target) and idle-cores (cores-used over 3 s before,
// no transfer). msp
// BenchmarkChainGoodput is the same chain on memnet (scripts/bench prints
// both). Run with -benchtime 3x.
func BenchmarkRealChain(b *testing.B) {
	tg := startTarget(b)
	clean := udprelay.Link{Delay: 5 * time.Millisecond, MTU: 1500}
	lossy := clean
	lossy.Loss = 0.10
	const nodes = 5
	insts := make([]string, nodes)
	var relays []*udprelay.Relay
	next := ""
	var pids []int
	for i := nodes - 1; i >= 0; i-- {
		insts[i] = filepath.Join(b.TempDir(), fmt.Sprintf("n%d", i))
		args := []string{}
		if next != "" {
			r := newRelay(b, next, clean, uint64(100+i))
			relays = append(relays, r)
			args = append(args, "--peer", r.Addr())
		}
		var pid int
		next, pid = startDaemon(b, insts[i], args...)
		pids = append(pids, pid)
	}
	l := startProc(b, binaries(b).servald, "msp", "listen", "--instance", insts[nodes-1], "--forward", portOf(tg.addr), "5000")
	sid := l.waitLine(b, `listening as ([0-9A-F]{64})`)[1]
	port := freePort(b)
	c := startProc(b, binaries(b).servald, "msp", "connect", "--instance", insts[0], "--forward", strconv.Itoa(port), sid, "5000")
	pids = append(pids, l.pid(), c.pid())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	warm(b, addr)
	set := func(l udprelay.Link) {
		for _, r := range relays {
			if err := r.SetConfig(udprelay.Symmetric(l, 0)); err != nil {
				b.Fatal(err)
			}
		}
	}
	// What the idle chain costs, for scale.
	idle0 := must(b, "cpu")(cpuSeconds(pids...))
	time.Sleep(3 * time.Second)
	idleCores := (must(b, "cpu")(cpuSeconds(pids...)) - idle0) / 3
	var clean0, lossy0, ratios []float64
	sd0 := must(b, "drops")(dropsOf(pids[:nodes]...))
	rd0 := must(b, "drops")(dropsOf(os.Getpid()))
	cpu0 := must(b, "cpu")(cpuSeconds(pids...))
	harness0 := must(b, "cpu")(cpuSeconds(os.Getpid()))
	wall0 := time.Now()
	for b.Loop() {
		set(clean)
		c := must(b, "lossless chain")(goodputOf(addr))
		set(lossy)
		x := must(b, "lossy chain")(goodputOf(addr))
		clean0, lossy0, ratios = append(clean0, c), append(lossy0, x), append(ratios, x/c)
	}
	set(clean)
	b.ReportMetric((must(b, "cpu")(cpuSeconds(pids...))-cpu0)/time.Since(wall0).Seconds(), "cores-used")
	b.ReportMetric((must(b, "cpu")(cpuSeconds(os.Getpid()))-harness0)/time.Since(wall0).Seconds(), "harness-cores")
	b.ReportMetric(idleCores, "idle-cores") // after the loop: b.Loop drops metrics reported before it
	b.ReportMetric(must(b, "drops")(dropsOf(pids[:nodes]...))-sd0, "servald-sock-drops")
	b.ReportMetric(must(b, "drops")(dropsOf(os.Getpid()))-rd0, "relay-sock-drops")
	b.Logf("lossless MB/s %.3g, lossy MB/s %.3g", clean0, lossy0)
	b.ReportMetric(median(clean0), "lossless-MB/s")
	b.ReportMetric(median(lossy0), "lossy-MB/s")
	b.ReportMetric(median(lossy0)/median(clean0), "of-lossless")
	b.ReportMetric(minOf(ratios), "min-of-lossless")
	var lost uint64
	for _, r := range relays {
		st := r.Stats()
		lost += st.Up.Lost + st.Down.Lost
	}
	if lost == 0 {
		b.Fatal("the relays dropped nothing: the lossy chain was not exercised")
	}
	var late udprelay.Stats
	for i, r := range relays {
		st := r.Stats()
		b.Logf("relay %d: up %d sent, late %v mean, %v max; down %d sent, late %v mean, %v max", i,
			st.Up.Out, meanLate(udprelay.Stats{Up: st.Up}), st.Up.MaxLate, st.Down.Out, meanLate(udprelay.Stats{Down: st.Down}), st.Down.MaxLate)
		late.Up.Out += st.Up.Out
		late.Up.Late += st.Up.Late
		late.Down.Out += st.Down.Out
		late.Down.Late += st.Down.Late
	}
	b.ReportMetric(meanLate(late).Seconds()*1e6, "relay-late-us")
}

func minOf(v []float64) float64 {
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

var startedRe = `servald: started, SID ([0-9A-F]{64}) pid (\d+) UDP (\S+)`

// startDaemon runs `servald start --foreground` in inst on loopback, as a
// child of the benchmark, and returns its UDP address and pid; it is
// stopped when the benchmark ends. Not detached: a detached daemon opens a
// session of its own, and with the kernel's autogroup scheduling (on by
// default) each session gets an equal share of the CPU, so 5 daemons took
// 5/6 of a busy machine and starved the relays and the tunnel's two ends,
// which share the benchmark's session. As its children they all share
// one group (BenchmarkRealChain, 4 interleaved pairs: 21.6, 19.7, 14.9,
// 16.1 MB/s at 10% loss against 17.4, 19.0, 11.9, 10.9 detached).
func startDaemon(b *testing.B, inst string, extra ...string) (udp string, pid int) {
	b.Helper()
	p := startProc(b, binaries(b).servald, append([]string{"start", "--foreground", "--instance", inst, "--udp", "127.0.0.1:0"}, extra...)...)
	m := p.waitLine(b, startedRe)
	return m[3], p.pid()
}

// BenchmarkRealLoopback: two real servald processes straight on loopback
// (no relay) beside the kcptun-equivalent baseline, raw TCP and two plain
// io.Copy relay processes in series, in the same run.
//
//   - throughput: one stream for about 4 s each; MB/s of each, x-kcp;
//     CPU seconds per GiB moved of both tunnel processes together
//     (utime+stime from /proc/PID/stat), cpu-x-kcp; the largest RSS of
//     either process sampled during the transfer (bulk-RSS-MB).
//   - throughput-mtu1500: the same through a relay with MTU 1500 (no
//     delay, no loss; the relay's CPU is not counted, its lateness is
//     servald-relay-late-us), on new tunnels: bare loopback lets servald
//     use 32 KB datagrams.
//   - echo: 64-byte round trips, p50 of 3000 after 200 warm-up; x-relays
//     (servald / the two io.Copy relays: the floor under any two-process
//     tunnel), x-kcp; smux-tcp-x-relays, the same for smux streams over
//     one plain TCP connection (benchpeer smux-client/smux-server: no
//     crypto, no ARQ), the floor under any tunnel that multiplexes with
//     smux, and x-smux-tcp (servald / that floor); and for each tunnel the CPU microseconds and the
//     context switches (all threads) its two processes spent per round
//     trip (cpu-us/rt, switches/rt), which vary less than the latency on
//     a shared machine and count the wake-ups behind it.
//   - idle: new processes; idle-RSS-MB is the larger of the two processes
//     of an established, idle tunnel; streams-dRSS-MB is how much both
//     processes together grew with 1000 idle streams open through the
//     tunnel (each reaching the target).
func BenchmarkRealLoopback(b *testing.B) {
	tg := startTarget(b)
	sv := servaldTunnel(b, tg.addr, nil)
	kc := kcpTunnel(b, tg.addr, nil)
	b.Run("throughput", func(b *testing.B) { compareBulk(b, sv, kc, tg.addr) })
	b.Run("throughput-mtu1500", func(b *testing.B) {
		// New tunnels whose UDP runs through a relay with MTU 1500 and no
		// delay or loss: on bare loopback servald's path-MTU probing finds
		// 32 KB frames, which no real network carries.
		var rs []*udprelay.Relay
		via := func(udp string) string {
			r := newRelay(b, udp, udprelay.Link{MTU: 1500}, 7)
			rs = append(rs, r)
			return r.Addr()
		}
		compareBulk(b, servaldTunnel(b, tg.addr, via), kcpTunnel(b, tg.addr, via), "")
		b.ReportMetric(meanLate(rs[0].Stats()).Seconds()*1e6, "servald-relay-late-us")
	})
	b.Run("echo", func(b *testing.B) {
		relays := relaysTunnel(b, tg.addr)
		tunnels := []struct {
			name string
			t    tunnel
		}{{"servald", sv}, {"kcp", kc}, {"relays", relays}, {"smux-tcp", smuxTunnel(b, tg.addr)}}
		p50s := make([][]float64, len(tunnels))
		cpus := make([][]float64, len(tunnels))
		switches := make([][]float64, len(tunnels))
		var raw []float64
		for b.Loop() {
			for i, tn := range tunnels {
				p, cpu, cs := echoCost(b, tn.name, tn.t)
				p50s[i], cpus[i], switches[i] = append(p50s[i], p), append(cpus[i], cpu), append(switches[i], cs)
			}
			raw = append(raw, must(b, "raw echo")(echoP50(tg.addr, echoRoundsTimed)))
		}
		for i, tn := range tunnels {
			b.ReportMetric(median(p50s[i]), tn.name+"-p50-us")
			b.ReportMetric(median(cpus[i]), tn.name+"-cpu-us/rt")
			b.ReportMetric(median(switches[i]), tn.name+"-switches/rt")
		}
		s, k, rl, sm := median(p50s[0]), median(p50s[1]), median(p50s[2]), median(p50s[3])
		b.ReportMetric(median(raw), "raw-p50-us")
		b.ReportMetric(s/rl, "x-relays")
		b.ReportMetric(s/k, "x-kcp")
		// The floor of smux itself (no crypto, no ARQ: TCP between the
		// two processes), against the relays and against servald.
		b.ReportMetric(sm/rl, "smux-tcp-x-relays")
		b.ReportMetric(s/sm, "x-smux-tcp")
	})
	b.Run("idle", func(b *testing.B) {
		for b.Loop() {
			for _, tc := range []struct {
				name  string
				start func(*testing.B, string, func(string) string) tunnel
			}{{"servald", servaldTunnel}, {"kcp", kcpTunnel}} {
				idle, grown := idleMemory(b, tg, tc.name, tc.start(b, tg.addr, nil))
				b.ReportMetric(idle, tc.name+"-idle-RSS-MB")
				b.ReportMetric(grown, tc.name+"-streams-dRSS-MB")
			}
		}
	})
}

// compareBulk measures one transfer through sv, one through kc and, if raw
// is not empty, one of raw TCP to it, per op, and reports their medians.
func compareBulk(b *testing.B, sv, kc tunnel, raw string) {
	b.Helper()
	var s, k, r, scpu, kcpu, srss, krss []float64
	for b.Loop() {
		mbs, cpu, rss := bulk(b, "servald", sv)
		s, scpu, srss = append(s, mbs), append(scpu, cpu), append(srss, rss)
		mbs, cpu, rss = bulk(b, "kcp", kc)
		k, kcpu, krss = append(k, mbs), append(kcpu, cpu), append(krss, rss)
		if raw != "" {
			r = append(r, must(b, "raw")(goodputOf(raw)))
		}
	}
	b.ReportMetric(median(s), "servald-MB/s")
	b.ReportMetric(median(k), "kcp-MB/s")
	if raw != "" {
		b.ReportMetric(median(r), "raw-MB/s")
	}
	b.ReportMetric(median(s)/median(k), "x-kcp")
	b.ReportMetric(median(scpu), "servald-cpu-s/GiB")
	b.ReportMetric(median(kcpu), "kcp-cpu-s/GiB")
	b.ReportMetric(median(scpu)/median(kcpu), "cpu-x-kcp")
	b.ReportMetric(median(srss), "servald-bulk-RSS-MB")
	b.ReportMetric(median(krss), "kcp-bulk-RSS-MB")
}

// bulk measures one transfer through t: MB/s, CPU seconds per GiB of
// both processes, and the largest RSS of either seen during it.
func bulk(b *testing.B, name string, t tunnel) (mbs, cpuPerGiB, rss float64) {
	b.Helper()
	cpu0 := must(b, name+" cpu")(cpuSeconds(t.pids...))
	stop := make(chan struct{})
	done := make(chan float64)
	go func() {
		var m float64
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			if r, err := maxRSS(t.pids...); err == nil {
				m = max(m, r)
			}
			select {
			case <-stop:
				done <- m
				return
			case <-tick.C:
			}
		}
	}()
	t0 := time.Now()
	mbs, err := goodputOf(t.addr)
	el := time.Since(t0)
	close(stop)
	rss = <-done
	if err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	cpu1 := must(b, name+" cpu")(cpuSeconds(t.pids...))
	gib := mbs * 1e6 * el.Seconds() / (1 << 30)
	return mbs, (cpu1 - cpu0) / gib, rss
}

// idleMemory returns the larger RSS of t's two processes while idle, and
// how much both grew together with idleStreams idle streams through t.
func idleMemory(b *testing.B, tg *target, name string, t tunnel) (idle, grown float64) {
	b.Helper()
	time.Sleep(time.Second) // let start-up garbage be collected and the session settle
	var before float64
	for _, pid := range t.pids {
		r := must(b, name+" rss")(rssMB(pid))
		idle = max(idle, r)
		before += r
	}
	base := tg.idle.Load()
	conns := make([]net.Conn, 0, idleStreams)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range idleStreams {
		c, err := net.DialTimeout("tcp", t.addr, 10*time.Second)
		if err != nil {
			b.Fatalf("%s: stream %d: %v", name, len(conns), err)
		}
		conns = append(conns, c)
		if _, err := c.Write([]byte{modeIdle}); err != nil {
			b.Fatalf("%s: stream %d: %v", name, len(conns), err)
		}
	}
	deadline := time.Now().Add(time.Minute)
	for tg.idle.Load()-base < idleStreams {
		if time.Now().After(deadline) {
			b.Fatalf("%s: %d of %d idle streams reached the target in a minute", name, tg.idle.Load()-base, idleStreams)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second)
	var after float64
	for _, pid := range t.pids {
		after += must(b, name+" rss")(rssMB(pid))
	}
	return idle, after - before
}

// TestProcParsers checks the /proc readers on this process and on lines
// whose command name holds spaces and parentheses.
func TestProcParsers(t *testing.T) {
	cpu, err := parseCPU("1234 (a b) c) S 1 1 1 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 0 0")
	if err != nil || cpu != 3 {
		t.Errorf("parseCPU = %v, %v; want 3 s (250+50 ticks)", cpu, err)
	}
	if _, err := parseCPU("garbage"); err == nil {
		t.Error("parseCPU accepted garbage")
	}
	rss, err := parseRSS("Name:\tx\nVmRSS:\t   2048 kB\nThreads: 1\n")
	if err != nil || rss != 2048*1024/1e6 {
		t.Errorf("parseRSS = %v, %v", rss, err)
	}
	if _, err := parseRSS("VmRSS: lots"); err == nil {
		t.Error("parseRSS accepted garbage")
	}
	pid := syscall.Getpid()
	if _, err := cpuSeconds(pid); err != nil {
		t.Error(err)
	}
	if r, err := rssMB(pid); err != nil || r <= 0 {
		t.Errorf("rssMB(self) = %v, %v", r, err)
	}
	sw, err := parseSwitches("Name:\tx\nvoluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t 3\n")
	if err != nil || sw != 15 {
		t.Errorf("parseSwitches = %v, %v; want 15", sw, err)
	}
	for _, bad := range []string{"voluntary_ctxt_switches:\t12\n", "voluntary_ctxt_switches: x\nnonvoluntary_ctxt_switches: 1\n"} {
		if _, err := parseSwitches(bad); err == nil {
			t.Errorf("parseSwitches accepted %q", bad)
		}
	}
	if n, err := ctxSwitches(pid); err != nil || n <= 0 {
		t.Errorf("ctxSwitches(self) = %v, %v", n, err)
	}
}
