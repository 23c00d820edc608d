package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// servaldBin is the binary built once for the end-to-end tests.
var servaldBin string

func TestMain(m *testing.M) {
	runRelayIfAsked()
	dir, err := os.MkdirTemp("", "servald-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	servaldBin = filepath.Join(dir, "servald")
	build := exec.Command("go", "build", "-buildvcs=auto", "-o", servaldBin, ".") // auto: the revision for "servald version" where git is at hand
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building servald:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	if code == 0 {
		// Goroutines the in-process tests started must be gone too.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// proc is a running servald process.
type proc struct {
	t      testing.TB
	cmd    *exec.Cmd
	stderr *lockedBuffer
	done   chan struct{}
	err    error
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
	// lines receives each complete stderr line.
	lines chan string
	part  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Write(p)
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		select {
		case l.lines <- string(l.part[:i]):
		default:
		}
		l.part = l.part[i+1:]
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// instance returns a fresh instance directory.
func instance(t testing.TB) string {
	return filepath.Join(t.TempDir(), "inst")
}

// start runs servald with args; stdin and stdout may be nil.
func start(t testing.TB, stdin io.Reader, stdout io.Writer, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(servaldBin, args...)
	cmd.Env = append(os.Environ(), "SERVALINSTANCE_PATH=")
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	p := &proc{t: t, cmd: cmd, stderr: &lockedBuffer{lines: make(chan string, 100)}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitLine waits for a stderr line matching re and returns its submatches.
func (p *proc) waitLine(re string) []string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case l := <-p.stderr.lines:
			if m := rx.FindStringSubmatch(l); m != nil {
				return m
			}
		case <-p.done:
			// Drain what is left.
			for {
				select {
				case l := <-p.stderr.lines:
					if m := rx.FindStringSubmatch(l); m != nil {
						return m
					}
				default:
					p.t.Fatalf("servald exited (%v) before printing %q; stderr:\n%s", p.err, re, p.stderr)
				}
			}
		case <-deadline:
			p.t.Fatalf("no line %q within 20s; stderr:\n%s", re, p.stderr)
		}
	}
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(d time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		p.t.Fatalf("servald did not exit within %v; stderr:\n%s", d, p.stderr)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	p.t.Fatalf("wait: %v", p.err)
	return -1
}

// exitsZero waits up to d for the process, which the test calls what, to
// exit 0.
func (p *proc) exitsZero(d time.Duration, what string) {
	p.t.Helper()
	if code := p.wait(d); code != 0 {
		p.t.Fatalf("%s exited %d: %s", what, code, p.stderr)
	}
}

// listener is a running `msp listen` with what it printed.
type listener struct {
	*proc
	sid, udp string
}

// startListen runs `servald msp listen` in a fresh instance on loopback.
func startListen(t testing.TB, stdin io.Reader, stdout io.Writer, args ...string) *listener {
	t.Helper()
	all := append([]string{"msp", "listen", "--instance", instance(t), "--udp", "127.0.0.1:0"}, args...)
	p := start(t, stdin, stdout, all...)
	m := p.waitLine(`listening as ([0-9A-F]{64}) on MDP port \d+ \(UDP ([0-9.:]+)\)`)
	return &listener{proc: p, sid: m[1], udp: m[2]}
}

// connectArgs are the arguments of `msp connect` to a listener.
func connectArgs(t testing.TB, l *listener, extra ...string) []string {
	return append([]string{"msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", l.udp}, extra...)
}

// freePort returns a TCP port on loopback that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tcpService runs a TCP server on loopback that calls handle for each
// connection (and closes it after); it stops when the test ends.
func tcpService(t testing.TB, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

// echoServer runs a TCP echo server that half-closes after echoing.
func echoServer(t testing.TB) net.Listener {
	t.Helper()
	return tcpService(t, func(c net.Conn) {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	})
}

// dialRetry dials addr until it answers (the tunnel's TCP port comes up
// once the session is established).
func dialRetry(t testing.TB, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// oneLine checks that stderr holds exactly one line and that it mentions want.
func oneLine(t testing.TB, stderr, want string) {
	t.Helper()
	s := strings.TrimSpace(stderr)
	if s == "" || strings.Contains(s, "\n") || !strings.Contains(strings.ToLower(s), strings.ToLower(want)) {
		t.Errorf("stderr = %q, want one line mentioning %q", stderr, want)
	}
}

var _ = bufio.NewReader
