package main

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeOneLiner returns the one-line tunnel of README.md's "Run a
// tunnel": the line of the code block after "This one line".
func readmeOneLiner(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "This one line")
	if !ok {
		t.Fatal(`README.md has no "This one line"`)
	}
	_, rest, ok = strings.Cut(rest, "```\n")
	line, _, _ := strings.Cut(rest, "\n")
	if !ok || line == "" {
		t.Fatal("README.md: no code block after \"This one line\"")
	}
	return line
}

// replaceAll replaces each old of pairs by its new in s, failing t when
// an old is not there.
func replaceAll(t *testing.T, s string, pairs ...string) string {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if !strings.Contains(s, pairs[i]) {
			t.Fatalf("the README one-liner %q has no %q", s, pairs[i])
		}
		s = strings.ReplaceAll(s, pairs[i], pairs[i+1])
	}
	return s
}

// freeUDP returns a UDP port on loopback that was free a moment ago.
func freeUDP(t *testing.T) string {
	t.Helper()
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().String()
}

// procsUnder lists the processes whose command line mentions dir.
func procsUnder(dir string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmdline), "\x00")
		if strings.HasSuffix(args[0], "servald") && strings.Contains(string(cmdline), dir) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestReadmeOneLinerCtrlC: the one-liner of README.md's "Run a tunnel"
// (with temporary instance directories, free ports, the built binary
// copied instead of go build, and a local TCP echo server instead of
// port 22), typed into an interactive bash on a pseudo-terminal
// (script(1)), carries an echo; Ctrl-C on the terminal then stops both
// servald processes within 5 s.
func TestReadmeOneLinerCtrlC(t *testing.T) {
	t.Parallel()
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		t.Skip("script(1) from util-linux is not installed")
	}
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	dir := t.TempDir()
	echo := echoServer(t).Addr().(*net.TCPAddr).Port
	local := freePort(t)
	line := replaceAll(t, readmeOneLiner(t),
		"go build -o servald ./cmd/servald", "cp "+servaldBin+" servald",
		"~/servald/node-a", filepath.Join(dir, "node-a"),
		"~/servald/node-b", filepath.Join(dir, "node-b"),
		"127.0.0.1:4110", freeUDP(t),
		"127.0.0.1:4111", freeUDP(t),
		"--forward=22 ", "--forward="+strconv.Itoa(echo)+" ",
		"--forward=2222 ", "--forward="+strconv.Itoa(local)+" ",
	)
	cmd := exec.Command(scriptBin, "-qfec", bash+" --norc --noprofile -i", "/dev/null")
	cmd.Dir = dir
	// HISTFILE: an interactive bash writes its history into HOME on
	// exit, which raced the removal of the test's directory.
	cmd.Env = append(os.Environ(), "SERVALINSTANCE_PATH=", "HOME="+dir, "PS1=$ ", "HISTFILE=/dev/null")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	term := &lockedBuffer{lines: make(chan string, 100)}
	cmd.Stdout, cmd.Stderr = term, term
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range procsUnder(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	io.WriteString(in, line+"\n")

	dialRetry(t, "127.0.0.1:"+strconv.Itoa(local)).Close() // the tunnel is up
	if err := echoWithin("127.0.0.1:"+strconv.Itoa(local), "one-liner\n", 10*time.Second); err != nil {
		t.Fatalf("through the one-liner: %v; terminal: %q", err, term.String())
	}
	if n := len(procsUnder(dir)); n != 2 {
		t.Fatalf("%d servald processes of the one-liner run, want 2 (listen and connect)", n)
	}

	io.WriteString(in, "\x03")
	deadline := time.Now().Add(5 * time.Second)
	for len(procsUnder(dir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("5 s after Ctrl-C, servald processes %v still run; terminal: %q", procsUnder(dir), term.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	io.WriteString(in, "exit\n")
}
