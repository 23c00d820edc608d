package main

import (
	"fmt"
	"io"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// statsLineRe reads a --stats line: the rates sent and received.
var statsLineRe = regexp.MustCompile(`(?m)^servald: stats: sent ([0-9.]+ [KMGT]?i?B)/s, received ([0-9.]+ [KMGT]?i?B)/s, rtt (?:-|[0-9.]+ ms), loss (?:-|[0-9.]+%), retransmitted [0-9.]+ [KMGT]?i?B, streams \d+, sessions \d+$`)

// statsSummaryRe reads the -v summary line: bytes sent and received.
var statsSummaryRe = regexp.MustCompile(`(?m)^servald: summary: sent [^(]+\((\d+) bytes\), received [^(]+\((\d+) bytes\) in \S+, mean .*, peak streams (\d+), sessions (\d+)$`)

// statsBytes reads a size of a stats line ("1.5 MiB") back.
func statsBytes(t *testing.T, s string) float64 {
	t.Helper()
	num, unit, _ := strings.Cut(s, " ")
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		t.Fatalf("size %q: %v", s, err)
	}
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if u == unit {
			return f
		}
		f *= 1024
	}
	t.Fatalf("size %q: unknown unit", s)
	return 0
}

// pacedReader gives n zero bytes, chunk by chunk, a chunk every gap:
// a transfer that lasts n/chunk*gap however fast the tunnel is.
type pacedReader struct {
	left, chunk int
	gap         time.Duration
	cur         int
}

func (r *pacedReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.cur == 0 {
		time.Sleep(r.gap)
		r.cur = min(r.chunk, r.left)
	}
	n := min(len(p), r.cur)
	clear(p[:n])
	r.cur -= n
	r.left -= n
	return n, nil
}

// countWriter counts what is written to it.
type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// checkStats checks what a tunnel end printed with --stats=1s -v after
// moving total bytes one way: at least 2 stats lines with bytes moving
// that way (sending: sent, else received) and at least 10 times fewer the
// other way (only smux's window updates and FINs go back), and a summary
// whose total that way is what moved plus smux's framing (an 8-byte
// header per frame of up to 32 KiB, a few control frames), one session
// and a peak of one stream.
func checkStats(t *testing.T, who, stderr string, total int, sending bool) {
	t.Helper()
	way, back := 1, 2
	if !sending {
		way, back = 2, 1
	}
	moving := 0
	for _, m := range statsLineRe.FindAllStringSubmatch(stderr, -1) {
		if w, b := statsBytes(t, m[way]), statsBytes(t, m[back]); w > 0 && w >= 10*b {
			moving++
		}
	}
	if moving < 2 {
		t.Errorf("%s: %d stats lines show the transfer, want at least 2; stderr:\n%s", who, moving, stderr)
	}
	m := statsSummaryRe.FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("%s: no summary line; stderr:\n%s", who, stderr)
	}
	got, _ := strconv.Atoi(m[way])
	if hi := total + total/32768*8 + 4096; got < total || got > hi {
		t.Errorf("%s: summary counts %d bytes, want %d to %d (%d moved, smux framing); line %q", who, got, total, hi, total, m[0])
	}
	if m[3] != "1" || m[4] != "1" {
		t.Errorf("%s: summary %q: want peak streams 1, sessions 1", who, m[0])
	}
}

// TestStatsLines: msp connect --stats=1s -v sends 4 MiB from stdin over
// about 3 s to msp listen --stats=1s -v: both embedded, the connecting
// side through a daemon (servald start), and over split transport
// (--split). Both ends print stats lines that show the transfer in the
// right direction and a summary with its total.
func TestStatsLines(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3 s transfer")
	}
	t.Parallel()
	const total, chunk = 4 << 20, 64 << 10
	for _, mode := range []string{"embedded", "daemon", "split"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			var out countWriter
			var l *listener
			var args []string
			switch mode {
			case "embedded":
				l = startListen(t, nil, &out, "--once", "--stats=1s", "-v", "5000")
				args = connectArgs(t, l, "--stats=1s", "-v", l.sid, "5000")
			case "daemon":
				l = startListen(t, nil, &out, "--once", "--stats=1s", "-v", "5000")
				d := startDaemon(t, instance(t), "--peer", l.udp)
				args = []string{"msp", "connect", "--instance", d.inst, "--stats=1s", "-v", l.sid, "5000"}
			case "split":
				sl := startSplitListen(t, nil, &out, "--once", "--stats=1s", "-v", "5000")
				l, args = sl.listener, splitConnectArgs(t, sl, "--stats=1s", "-v", sl.sid, "5000")
			}
			c := start(t, &pacedReader{left: total, chunk: chunk, gap: 50 * time.Millisecond}, io.Discard, args...)
			c.exitsZero(60*time.Second, "msp connect")
			l.exitsZero(20*time.Second, "msp listen")
			if got := out.n.Load(); got != total {
				t.Fatalf("listener wrote %d bytes, want %d", got, total)
			}
			checkStats(t, "msp connect", c.stderr.String(), total, true)
			checkStats(t, "msp listen", l.stderr.String(), total, false)
			t.Logf("msp connect:\n%s\nmsp listen:\n%s", c.stderr, l.stderr)
		})
	}
}

// TestStatsBadInterval: a negative or sub-100ms --stats is a usage error.
func TestStatsBadInterval(t *testing.T) {
	t.Parallel()
	sid := strings.Repeat("A", 64)
	checkRefusals(t, []refusalCase{
		{"connect negative", []string{"msp", "connect", "--instance", instance(t), "--stats=-1s", sid, "5000"}, 2, "--stats -1s", 0},
		{"connect 50ms", []string{"msp", "connect", "--instance", instance(t), "--stats=50ms", sid, "5000"}, 2, "at least 100ms", 0},
		{"listen 99ms", []string{"msp", "listen", "--instance", instance(t), "--stats=99ms", "5000"}, 2, "at least 100ms", 0},
		{"listen not a duration", []string{"msp", "listen", "--instance", instance(t), "--stats=often", "5000"}, 2, "--stats", 0},
	})
}

// TestStatsForwardSummary: msp listen --forward and msp connect --forward
// with -v (no --stats) carry 3 TCP connections open at once, 1 MiB
// echoed on each; stopped by SIGINT, both exit 0 and print a summary of
// at least the 3 MiB each way, a peak of 3 streams and 1 session.
func TestStatsForwardSummary(t *testing.T) {
	t.Parallel()
	echo := echoServer(t)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	l := startListen(t, nil, nil, "--forward", echoPort, "-v", "5000")
	port := strconv.Itoa(freePort(t))
	c := start(t, nil, nil, connectArgs(t, l, "--forward", port, "-v", l.sid, "5000")...)
	c.waitLine("forwarding TCP")
	const size = 1 << 20
	conns := make([]net.Conn, 3)
	for i := range conns {
		conns[i] = dialRetry(t, "127.0.0.1:"+port)
		defer conns[i].Close()
		// One byte there and back: the stream is open at both ends.
		conns[i].SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conns[i].Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conns[i], make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, len(conns))
	for _, cn := range conns {
		go func() {
			go func() {
				cn.Write(make([]byte, size))
				cn.(*net.TCPConn).CloseWrite()
			}()
			n, err := io.Copy(io.Discard, cn)
			if err == nil && n != size {
				err = fmt.Errorf("%d bytes echoed, want %d", n, size)
			}
			errc <- err
		}()
	}
	for range conns {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*proc{c, l.proc} {
		p.cmd.Process.Signal(os.Interrupt)
		p.exitsZero(20*time.Second, strings.Join(p.cmd.Args[1:3], " "))
		m := statsSummaryRe.FindStringSubmatch(p.stderr.String())
		if m == nil {
			t.Fatalf("%s: no summary line; stderr:\n%s", p.cmd.Args[1:3], p.stderr)
		}
		sent, _ := strconv.Atoi(m[1])
		recv, _ := strconv.Atoi(m[2])
		if want := 3 * (size + 1); sent < want || recv < want || m[3] != "3" || m[4] != "1" {
			t.Errorf("%s: summary %q: want at least %d bytes each way, peak streams 3, sessions 1", p.cmd.Args[1:3], m[0], want)
		}
	}
}
