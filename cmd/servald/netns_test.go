package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
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
