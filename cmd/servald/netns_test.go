package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// netnsLAN builds count network namespaces joined by a bridge (itself in a
// namespace of its own), addressed 10.213.N.x/24, and returns their names.
// Everything is removed when the test ends. It skips without root or ip.
func netnsLAN(t *testing.T, count int) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is not installed")
	}
	tag := fmt.Sprintf("sd%d", os.Getpid()%100000)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	br := tag + "br"
	sh("netns", "add", br)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", br).Run() })
	sh("-n", br, "link", "add", "br0", "type", "bridge")
	sh("-n", br, "link", "set", "br0", "up")
	subnet := 213
	var names []string
	for i := 0; i < count; i++ {
		ns := fmt.Sprintf("%sn%d", tag, i)
		sh("netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		in, out := fmt.Sprintf("%sv%d", tag, i), fmt.Sprintf("%sp%d", tag, i)
		sh("link", "add", in, "type", "veth", "peer", "name", out)
		sh("link", "set", in, "netns", ns)
		sh("link", "set", out, "netns", br)
		sh("-n", br, "link", "set", out, "master", "br0")
		sh("-n", br, "link", "set", out, "up")
		sh("-n", ns, "addr", "add", fmt.Sprintf("10.%d.0.%d/24", subnet, i+1), "brd", "+", "dev", in)
		sh("-n", ns, "link", "set", in, "up")
		sh("-n", ns, "link", "set", "lo", "up")
		names = append(names, ns)
	}
	return names
}

// inNetns runs servald inside namespace ns.
func inNetns(t *testing.T, ns string, stdin *os.File, stdout io.Writer, args ...string) *proc {
	t.Helper()
	all := append([]string{"netns", "exec", ns, servaldBin}, args...)
	cmd := exec.Command("ip", all...)
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

// TestBroadcastLAN: three nodes on one broadcast domain, started with
// --broadcast and no --peer, find each other: a tunnel works between every
// pair (1 -> 0, 2 -> 1, 0 -> 2).
func TestBroadcastLAN(t *testing.T) {
	ns := netnsLAN(t, 3)
	dir := t.TempDir()
	payload := make([]byte, 1<<20)
	rand.Read(payload)
	in := filepath.Join(dir, "in")
	os.WriteFile(in, payload, 0o600)
	for _, pair := range [][2]int{{0, 1}, {1, 2}, {2, 0}} {
		lsn, con := pair[0], pair[1]
		t.Run(fmt.Sprintf("%d-to-%d", con, lsn), func(t *testing.T) {
			var got bytes.Buffer
			devnull, _ := os.Open(os.DevNull)
			defer devnull.Close()
			l := inNetns(t, ns[lsn], devnull, &got, "msp", "listen", "--instance", instance(t), "--broadcast", "5000")
			m := l.waitLine(`listening as ([0-9A-F]{64})`)
			src, _ := os.Open(in)
			defer src.Close()
			c := inNetns(t, ns[con], src, nil, "msp", "connect", "--instance", instance(t), "--broadcast", "--timeout", "15s", m[1], "5000")
			if code := c.wait(60 * time.Second); code != 0 {
				t.Fatalf("connect exited %d: %s", code, c.stderr)
			}
			if code := l.wait(20 * time.Second); code != 0 {
				t.Fatalf("listen exited %d: %s", code, l.stderr)
			}
			if !bytes.Equal(got.Bytes(), payload) {
				t.Fatalf("got %d bytes, want the 1 MiB sent", got.Len())
			}
		})
	}
}

// TestBroadcastLANDaemons: three daemons on one broadcast domain, started
// with --broadcast and no --peer: each lists the two others as neighbours,
// and a TCP tunnel between two of them (named by a short SID) runs through
// the daemons.
func TestBroadcastLANDaemons(t *testing.T) {
	ns := netnsLAN(t, 3)
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	insts := make([]string, 3)
	sids := make([]string, 3)
	for i := range ns {
		insts[i] = instance(t)
		d := inNetns(t, ns[i], devnull, nil, "start", "--foreground", "--instance", insts[i], "--broadcast")
		sids[i] = d.waitLine(startedRe.String())[1]
	}
	for i := range ns {
		eventually(t, 20*time.Second, func() string {
			var out bytes.Buffer
			p := inNetns(t, ns[i], devnull, &out, "id", "peers", "--instance", insts[i])
			if code := p.wait(30 * time.Second); code != 0 {
				return fmt.Sprintf("id peers in node %d: exit %d: %s", i, code, p.stderr)
			}
			for j := range ns {
				if j != i && !strings.Contains(out.String(), sids[j]+" hops=1 ") {
					return fmt.Sprintf("node %d does not list node %d as a neighbour:\n%s", i, j, out.String())
				}
			}
			return ""
		})
	}
	// A TCP tunnel through the daemons of nodes 2 and 0: the echo server
	// listens on node 0's loopback, the test dials node 2's.
	var echo net.Listener
	inNamespace(t, ns[0], func() { echo = echoServer(t) })
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	l := inNetns(t, ns[0], devnull, nil, "msp", "listen", "--instance", insts[0], "--forward", echoPort, "5000")
	l.waitLine("listening as " + sids[0])
	var fwdPort int
	inNamespace(t, ns[2], func() { fwdPort = freePort(t) })
	fwd := fmt.Sprintf("127.0.0.1:%d", fwdPort) // in node 2's namespace
	c := inNetns(t, ns[2], devnull, nil, "msp", "connect", "--instance", insts[2], "--timeout", "15s", "--forward", fwd, sids[0][:12], "5000")
	c.waitLine("forwarding TCP " + fwd + " to " + sids[0])
	inNamespace(t, ns[2], func() { err = echoOnce(fwd, 1<<20) })
	if err != nil {
		t.Fatalf("tunnel from node 2 to node 0 through their daemons: %v", err)
	}
}

// inNamespace runs f on an OS thread inside network namespace ns, so that
// the sockets f creates belong to ns (and stay there).
func inNamespace(t *testing.T, ns string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatalf("setns %s: %v", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(fmt.Sprintf("cannot return to the test's network namespace: %v", err))
		}
	}()
	f()
}
