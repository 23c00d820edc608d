package bench

// Processes, the TCP target and the measurements the real-path
// benchmarks share.
//
//	client ─TCP─► tunnel entry ─(UDP, maybe through udprelay)─► tunnel exit ─TCP─► target
//
// The target reads a mode byte first: 'A' sinks and sends one byte back
// per MiB received (a goodput count that needs no half-close, which the
// kcptun baseline does not propagate); 'E' echoes; 'I' holds the
// connection idle until the client closes it.

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

const (
	modeAck  = 'A'
	modeEcho = 'E'
	modeIdle = 'I'
	// ackUnit is the bytes the target acknowledges with one byte.
	ackUnit = 1 << 20
	// echoSize is the size of one ping.
	echoSize = 64
	// echoWarmup round trips precede the timed ones.
	echoWarmup = 200
)

// bins are the binaries the benchmarks run, built once per test binary.
type bins struct {
	servald, peer string
	err           error
}

var (
	binOnce sync.Once
	binDir  string
	built   bins
)

// TestMain removes the binaries and checks for leaked goroutines (the
// relays run in this process; kcp-go is not loaded here).
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// binaries builds servald and benchpeer on first use.
func binaries(b *testing.B) bins {
	b.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "servald-bench-")
		if err != nil {
			built.err = err
			return
		}
		binDir = dir
		built.servald = filepath.Join(dir, "servald")
		built.peer = filepath.Join(dir, "benchpeer")
		for _, bp := range [][2]string{{built.servald, "github.com/servald/servald/cmd/servald"}, {built.peer, "github.com/servald/servald/bench/cmd/benchpeer"}} {
			out, err := exec.Command("go", "build", "-o", bp[0], bp[1]).CombinedOutput()
			if err != nil {
				built.err = fmt.Errorf("building %s: %v\n%s", bp[1], err, out)
				return
			}
		}
	})
	if built.err != nil {
		b.Fatal(built.err)
	}
	return built
}

// proc is a process a benchmark started; it is killed when the benchmark
// ends unless it has exited.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string // stderr and stdout lines, in arrival order per stream
	done  chan struct{}
	mu    sync.Mutex
	out   strings.Builder // everything printed, for failure messages
}

func startProc(b *testing.B, bin string, args ...string) *proc {
	b.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "SERVALINSTANCE_PATH=")
	p := &proc{cmd: cmd, lines: make(chan string, 256), done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var readers sync.WaitGroup
	for _, r := range []io.Reader{stdout, stderr} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			sc := bufio.NewScanner(r)
			for sc.Scan() {
				p.mu.Lock()
				p.out.WriteString(sc.Text() + "\n")
				p.mu.Unlock()
				select {
				case p.lines <- sc.Text():
				default:
				}
			}
		}()
	}
	go func() {
		readers.Wait()
		cmd.Wait()
		close(p.done)
	}()
	b.Cleanup(func() {
		p.stdin.Close()                     // benchpeer exits on EOF
		cmd.Process.Signal(syscall.SIGTERM) // servald on a signal
		select {
		case <-p.done:
			return
		case <-time.After(3 * time.Second):
		}
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitLine waits for a line matching re and returns its submatches.
func (p *proc) waitLine(b *testing.B, re string) []string {
	b.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for {
		select {
		case l := <-p.lines:
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			b.Fatalf("%s exited before printing %q:\n%s", p.cmd.Path, re, p.output())
		case <-deadline:
			b.Fatalf("%s printed no %q within 30s:\n%s", p.cmd.Path, re, p.output())
		}
	}
}

// tunnel is a running tunnel: connect to addr to reach the target; pids
// are its processes (entry first).
type tunnel struct {
	addr string
	pids []int
}

// servaldListen runs `msp listen --forward` to target in a fresh instance
// and returns it with its SID and UDP address.
func servaldListen(b *testing.B, target string, extra ...string) (p *proc, sid, udp string) {
	b.Helper()
	_, port, _ := net.SplitHostPort(target)
	args := append([]string{"msp", "listen", "--instance", filepath.Join(b.TempDir(), "l"), "--udp", "127.0.0.1:0"}, extra...)
	p = startProc(b, binaries(b).servald, append(args, "--forward", port, "5000")...)
	m := p.waitLine(b, `listening as ([0-9A-F]{64}) on MDP port \d+ \(UDP ([0-9.:]+)\)`)
	return p, m[1], m[2]
}

// servaldConnect runs `msp connect --forward` through peer to sid.
func servaldConnect(b *testing.B, peer, sid string) (*proc, string) {
	b.Helper()
	port := freePort(b)
	p := startProc(b, binaries(b).servald, "msp", "connect", "--instance", filepath.Join(b.TempDir(), "c"),
		"--udp", "127.0.0.1:0", "--peer", peer, "--forward", strconv.Itoa(port), sid, "5000")
	return p, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// servaldTunnel is two servald processes; via, if not nil, makes the UDP
// link (given the listener's UDP address it returns the address the
// connecting side should send to).
func servaldTunnel(b *testing.B, target string, via func(udp string) string) tunnel {
	b.Helper()
	l, sid, udp := servaldListen(b, target)
	peer := udp
	if via != nil {
		peer = via(udp)
	}
	c, addr := servaldConnect(b, peer, sid)
	warm(b, addr)
	return tunnel{addr: addr, pids: []int{c.pid(), l.pid()}}
}

// kcpTunnel is the kcptun-equivalent baseline: two benchpeer processes.
func kcpTunnel(b *testing.B, target string, via func(udp string) string) tunnel {
	b.Helper()
	s := startProc(b, binaries(b).peer, "kcp-server", "-l", "127.0.0.1:0", "-t", target)
	udp := s.waitLine(b, `^(\S+:\d+)$`)[1]
	if via != nil {
		udp = via(udp)
	}
	c := startProc(b, binaries(b).peer, "kcp-client", "-l", "127.0.0.1:0", "-r", udp)
	addr := c.waitLine(b, `^(\S+:\d+)$`)[1]
	warm(b, addr)
	return tunnel{addr: addr, pids: []int{c.pid(), s.pid()}}
}

// relaysTunnel is two plain TCP relay processes in series.
func relaysTunnel(b *testing.B, target string) tunnel {
	b.Helper()
	s := startProc(b, binaries(b).peer, "tcp-relay", "-t", target)
	a1 := s.waitLine(b, `^(\S+:\d+)$`)[1]
	c := startProc(b, binaries(b).peer, "tcp-relay", "-t", a1)
	a0 := c.waitLine(b, `^(\S+:\d+)$`)[1]
	return tunnel{addr: a0, pids: []int{c.pid(), s.pid()}}
}

// smuxTunnel is smux over one plain TCP connection between two benchpeer
// processes (smuxtcp.go): the floor under any tunnel built on smux.
func smuxTunnel(b *testing.B, target string) tunnel {
	b.Helper()
	s := startProc(b, binaries(b).peer, "smux-server", "-t", target)
	a1 := s.waitLine(b, `^(\S+:\d+)$`)[1]
	c := startProc(b, binaries(b).peer, "smux-client", "-r", a1)
	a0 := c.waitLine(b, `^(\S+:\d+)$`)[1]
	warm(b, a0)
	return tunnel{addr: a0, pids: []int{c.pid(), s.pid()}}
}

// warm makes one echo round trip through addr (retrying the dial until
// the tunnel is up), so that no timed op pays for session setup.
func warm(b *testing.B, addr string) {
	b.Helper()
	c := dialRetry(b, addr, time.Minute)
	defer c.Close()
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		b.Fatal(err)
	}
	if _, err := echoRounds(c, 1); err != nil {
		b.Fatalf("warm-up round trip through %s: %v", addr, err)
	}
}

func freePort(b *testing.B) int {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func dialRetry(b *testing.B, addr string, within time.Duration) net.Conn {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			b.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// target is the TCP server at the far end of every tunnel.
type target struct {
	addr string
	// idle counts the connections in idle mode now open.
	idle atomic.Int64
}

// startTarget runs the target until the benchmark ends.
func startTarget(b *testing.B) *target {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	t := &target{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	b.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				t.serve(c)
			}()
		}
	}()
	return t
}

func (t *target) serve(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeAck:
		buf := make([]byte, 256<<10)
		var got int
		for {
			n, err := c.Read(buf)
			got += n
			for ; got >= ackUnit; got -= ackUnit {
				if _, err := c.Write([]byte{1}); err != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	case modeEcho:
		io.Copy(c, c)
	case modeIdle:
		t.idle.Add(1)
		io.Copy(io.Discard, c)
		t.idle.Add(-1)
	}
}

// payload is incompressible data for throughput runs.
var payload = func() []byte {
	p := make([]byte, ackUnit)
	rand.Read(p)
	return p
}()

// goodput writes to addr for about d, then waits until the target has
// acknowledged every MiB, and returns MB/s (bytes the target received over
// the time from the first write to the last acknowledgement).
func goodput(addr string, d time.Duration) (float64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return goodputOn(c, d)
}

// goodputOn is goodput on a connection to the target.
func goodputOn(c net.Conn, d time.Duration) (float64, error) {
	c.SetDeadline(time.Now().Add(d + 2*time.Minute))
	if _, err := c.Write([]byte{modeAck}); err != nil {
		return 0, err
	}
	t0 := time.Now()
	var sent int
	for time.Since(t0) < d {
		if _, err := c.Write(payload); err != nil {
			return 0, fmt.Errorf("write after %d MiB: %w", sent, err)
		}
		sent++
	}
	acks := make([]byte, sent)
	if _, err := io.ReadFull(c, acks); err != nil {
		return 0, fmt.Errorf("waiting for %d MiB to be acknowledged: %w", sent, err)
	}
	return float64(sent*ackUnit) / 1e6 / time.Since(t0).Seconds(), nil
}

// echoP50 makes rounds timed 64-byte round trips on a new connection to
// addr and returns the median in microseconds.
func echoP50(addr string, rounds int) (float64, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return 0, err
	}
	if _, err := echoRounds(c, echoWarmup); err != nil {
		return 0, err
	}
	d, err := echoRounds(c, rounds)
	if err != nil {
		return 0, err
	}
	return median(d) / 1e3, nil
}

// echoRounds makes n round trips on c, which is in echo mode, and returns
// their durations in nanoseconds.
func echoRounds(c net.Conn, n int) ([]float64, error) {
	ping := make([]byte, echoSize)
	pong := make([]byte, echoSize)
	d := make([]float64, n)
	for i := range n {
		ping[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(ping); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		if _, err := io.ReadFull(c, pong); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		d[i] = float64(time.Since(t0))
		if pong[0] != ping[0] {
			return nil, fmt.Errorf("round trip %d: echo out of step", i)
		}
	}
	return d, nil
}

// median of v (0 for none).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// clockTicks is Linux's USER_HZ, the unit of utime and stime in
// /proc/PID/stat (fixed at 100 by the kernel ABI).
const clockTicks = 100

// cpuSeconds is the user+system CPU time of the processes so far.
func cpuSeconds(pids ...int) (float64, error) {
	files := make([]string, len(pids))
	for i, pid := range pids {
		files[i] = fmt.Sprintf("/proc/%d/stat", pid)
	}
	return sumProc(files, false, parseCPU)
}

// sumProc adds up what parse makes of each of files; with gone, a file
// that no longer exists (a thread that ended since the listing) counts
// nothing.
func sumProc(files []string, gone bool, parse func(string) (float64, error)) (float64, error) {
	var total float64
	for _, f := range files {
		b, err := os.ReadFile(f)
		if gone && errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, err
		}
		v, err := parse(string(b))
		if err != nil {
			return 0, fmt.Errorf("%s: %w", f, err)
		}
		total += v
	}
	return total, nil
}

// parseCPU reads utime+stime (fields 14 and 15) from a /proc/PID/stat
// line, in seconds. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("bad stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14 = f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("bad stat %q", stat)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad stat %q", stat)
	}
	return float64(u+s) / clockTicks, nil
}

// rssMB is the resident set of a process in MB (VmRSS).
func rssMB(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseRSS(string(b))
}

func parseRSS(status string) (float64, error) {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				kb, err := strconv.ParseUint(f[0], 10, 64)
				if err == nil {
					return float64(kb) * 1024 / 1e6, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS in %q", status)
}

// maxRSS is the largest RSS among pids, in MB.
func maxRSS(pids ...int) (float64, error) {
	var m float64
	for _, pid := range pids {
		r, err := rssMB(pid)
		if err != nil {
			return 0, err
		}
		m = max(m, r)
	}
	return m, nil
}

// ctxSwitches is the context switches, voluntary and not, of every
// running thread of the processes pids (/proc/PID/task/*/status).
func ctxSwitches(pids ...int) (float64, error) {
	var files []string
	for _, pid := range pids {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
		if err != nil {
			return 0, err
		}
		if len(tasks) == 0 {
			return 0, fmt.Errorf("pid %d: no threads", pid)
		}
		files = append(files, tasks...)
	}
	return sumProc(files, true, parseSwitches)
}

// parseSwitches sums voluntary_ctxt_switches and
// nonvoluntary_ctxt_switches of a /proc status file.
func parseSwitches(status string) (float64, error) {
	var total float64
	found := 0
	for _, l := range strings.Split(status, "\n") {
		k, v, ok := strings.Cut(l, ":")
		if !ok || (k != "voluntary_ctxt_switches" && k != "nonvoluntary_ctxt_switches") {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", k, err)
		}
		total += float64(n)
		found++
	}
	if found != 2 {
		return 0, fmt.Errorf("no context switch counts in %q", status)
	}
	return total, nil
}

// echoCost is echoP50 through t, with what t's processes spent per round
// trip of it (warm-up included): CPU microseconds and context switches.
// On a shared machine these are steadier than the latency, and they count
// the thread wake-ups that goroutine hand-offs cost.
func echoCost(b *testing.B, name string, t tunnel) (p50, cpuUS, switches float64) {
	b.Helper()
	cpu0 := must(b, name+" cpu")(cpuSeconds(t.pids...))
	cs0 := must(b, name+" switches")(ctxSwitches(t.pids...))
	p50 = must(b, name+" echo")(echoP50(t.addr, echoRoundsTimed))
	rounds := float64(echoWarmup + echoRoundsTimed)
	cpuUS = (must(b, name+" cpu")(cpuSeconds(t.pids...)) - cpu0) * 1e6 / rounds
	switches = (must(b, name+" switches")(ctxSwitches(t.pids...)) - cs0) / rounds
	return p50, cpuUS, switches
}
