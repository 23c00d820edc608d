package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runOnce runs servald to completion and returns its exit code, stdout and
// stderr.
func runOnce(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	var out bytes.Buffer
	p := start(t, stdin, &out, args...)
	code := p.wait(30 * time.Second)
	return code, out.String(), p.stderr.String()
}

// refusalCase is a command line that must exit with code, print nothing
// on stdout and one line on stderr mentioning want; with after set, not
// before that long (a bounded wait) nor much later.
type refusalCase struct {
	name  string
	args  []string
	code  int
	want  string
	after time.Duration
}

// checkRefusals runs each case in a subtest.
func checkRefusals(t *testing.T, cases []refusalCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Now()
			code, out, errOut := runOnce(t, nil, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			oneLine(t, errOut, tc.want)
			if d := time.Since(t0); tc.after > 0 && (d < tc.after || d > tc.after+7*time.Second) {
				t.Errorf("gave up after %v, want after %v", d, tc.after)
			}
		})
	}
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	sid := strings.Repeat("A", 64)
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"malformed SID", []string{"msp", "connect", "--instance", inst, "12345", "5000"}, "malformed SID"},
		{"SID with bad hex", []string{"msp", "connect", "--instance", inst, strings.Repeat("G", 64), "5000"}, "not hex"},
		{"MDP port too big", []string{"msp", "connect", "--instance", inst, sid, "70000"}, "out of range"},
		{"MDP port zero", []string{"msp", "listen", "--instance", inst, "0"}, "out of range"},
		{"MDP port not a number", []string{"msp", "listen", "--instance", inst, "ssh"}, "not a number"},
		{"TCP port too big", []string{"msp", "listen", "--instance", inst, "--forward", "99999", "5000"}, "out of range"},
		{"TCP port garbage", []string{"msp", "connect", "--instance", inst, "--forward", "x:y:z", sid, "5000"}, "--forward"},
		{"bad --allow", []string{"msp", "listen", "--instance", inst, "--allow", "nope", "5000"}, "--allow"},
		{"missing argument", []string{"msp", "connect", "--instance", inst, sid}, "accepts 2 arg"},
		{"unknown flag", []string{"msp", "listen", "--instance", inst, "--bogus", "5000"}, "unknown flag"},
		{"discovery port", []string{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "11"}, "MDP port 11 is the node's service discovery port"},
		{"SID prefix too short", []string{"msp", "connect", "--instance", inst, "ABCDEF1", "5000"}, "at least 8"},
		{"SID prefix not hex", []string{"msp", "connect", "--instance", inst, "ABCDEF1X", "5000"}, "not hex"},
		{"--allow prefix too short", []string{"msp", "listen", "--instance", inst, "--allow", "ABCD", "5000"}, "at least 16"},
		{"--allow 12-digit prefix", []string{"msp", "listen", "--instance", inst, "--allow", "ABCDEF012345", "5000"}, "at least 16 (64 bits)"},
		{"--service with a SID", []string{"msp", "connect", "--instance", inst, "--service", "ssh", sid, "5000"}, "with --service, give no SID"},
		{"bad --service name", []string{"msp", "connect", "--instance", inst, "--service", "a b"}, "--service"},
		{"bad --peer", []string{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "--peer", "nohost", "5000"}, "--peer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := runOnce(t, nil, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2 (a usage mistake)", code)
			}
			if out != "" {
				t.Errorf("stdout = %q, want nothing", out)
			}
			oneLine(t, errOut, tc.want)
		})
	}
}

func TestTCPPortInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	code, _, errOut := runOnce(t, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--forward", port, strings.Repeat("A", 64), "5000")
	if code == 0 {
		t.Fatal("exit 0")
	}
	oneLine(t, errOut, "in use")
}

func TestUDPPortInUse(t *testing.T) {
	t.Parallel()
	busy, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, errOut := runOnce(t, nil, "msp", "listen", "--instance", instance(t), "--udp", busy.LocalAddr().String(), "5000")
	if code == 0 {
		t.Fatal("exit 0")
	}
	oneLine(t, errOut, "in use")
}

func TestUnreachableSID(t *testing.T) {
	t.Parallel()
	t.Run("no neighbours", func(t *testing.T) {
		t0 := time.Now()
		code, _, errOut := runOnce(t, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--timeout", "1s", strings.Repeat("A", 64), "5000")
		if code == 0 {
			t.Fatal("exit 0")
		}
		oneLine(t, errOut, "--peer")
		if d := time.Since(t0); d > 10*time.Second {
			t.Errorf("took %v with --timeout 1s", d)
		}
	})
	t.Run("peer down", func(t *testing.T) {
		// A UDP socket that never answers stands for a peer that is down.
		silent, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		peer := silent.LocalAddr().String()
		code, _, errOut := runOnce(t, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", peer, "--timeout", "1s", strings.Repeat("A", 64), "5000")
		if code != 1 || strings.Contains(errOut, "add --peer") {
			t.Errorf("exit %d, %q: want no advice to add the --peer that was given", code, errOut)
		}
		oneLine(t, errOut, "the peer "+peer+" does not answer")
		code, _, errOut = runOnce(t, nil, "id", "peers", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", peer, "--wait", "1s")
		if code != 0 || strings.Contains(errOut, "add --peer") {
			t.Errorf("id peers: exit %d, %q", code, errOut)
		}
		oneLine(t, errOut, "the peer "+peer+" does not answer")
	})
	t.Run("neighbour but unknown SID", func(t *testing.T) {
		l := startListen(t, nil, nil, "--forward", "9", "5000")
		code, _, errOut := runOnce(t, nil, connectArgs(t, l, "--timeout", "1s", strings.Repeat("B", 64), "5000")...)
		if code == 0 {
			t.Fatal("exit 0")
		}
		oneLine(t, errOut, "unreachable")
	})
	t.Run("nothing listening on the port", func(t *testing.T) {
		// A direct neighbour refuses at once, as over --split: no wait
		// for --timeout.
		l := startListen(t, nil, nil, "--forward", "9", "5000")
		t0 := time.Now()
		code, _, errOut := runOnce(t, nil, connectArgs(t, l, "--timeout", "10s", l.sid, "5001")...)
		if code == 0 {
			t.Fatal("exit 0")
		}
		oneLine(t, errOut, "MDP port 5001: msp: "+l.sid+" refused the connection (no listener: \"nothing listens on that port\")")
		if d := time.Since(t0); d > 5*time.Second {
			t.Errorf("refused after %v, want at once (--timeout 10s)", d)
		}
	})
}

func TestAllowRefusal(t *testing.T) {
	t.Parallel()
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := svc.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	other := strings.Repeat("C", 64)
	l := startListen(t, nil, nil, "--allow", other, "--forward", strconv.Itoa(svc.Addr().(*net.TCPAddr).Port), "5000")
	code, out, errOut := runOnce(t, strings.NewReader("secret"), connectArgs(t, l, l.sid, "5000")...)
	if code == 0 {
		t.Fatal("refused connect exited 0")
	}
	if out != "" {
		t.Errorf("stdout = %q", out)
	}
	oneLine(t, errOut, "refused")
	select {
	case <-accepted:
		t.Fatal("a refused SID reached the forward target")
	case <-time.After(300 * time.Millisecond):
	}
}

func TestForwardTargetDown(t *testing.T) {
	t.Parallel()
	dead := freePort(t) // nothing listens here
	l := startListen(t, nil, nil, "--forward", strconv.Itoa(dead), "5000")
	port := freePort(t)
	start(t, nil, nil, connectArgs(t, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	targetDown(t, l.proc, port)
}

// targetDown checks that connections to the local TCP port of a tunnel
// whose listener l forwards to a port where nothing listens are closed
// without data, and that l keeps serving after each.
func targetDown(t *testing.T, l *proc, port int) {
	t.Helper()
	for i := 0; i < 2; i++ { // the listener keeps serving after a failure
		c := dialRetry(t, fmt.Sprintf("127.0.0.1:%d", port))
		c.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := c.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d: not closed when the target refused", i)
		}
		if n != 0 {
			t.Fatalf("connection %d: got data", i)
		}
		c.Close()
	}
	select {
	case <-l.done:
		t.Fatalf("listener exited: %s", l.stderr)
	default:
	}
}

func TestDamagedKeyring(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	if code, _, errOut := runOnce(t, nil, "id", "self", "--instance", inst); code != 0 {
		t.Fatalf("id self: %d %s", code, errOut)
	}
	path := filepath.Join(inst, "keyring")
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("keyring %v mode %v", err, st.Mode())
	}
	damaged := []byte("ed25519 00112233 nonsense\n")
	os.WriteFile(path, damaged, 0o600)
	for _, args := range [][]string{
		{"id", "self", "--instance", inst},
		{"keyring", "list", "--instance", inst},
		{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0", "5000"},
	} {
		code, _, errOut := runOnce(t, nil, args...)
		if code == 0 {
			t.Fatalf("%v: exit 0 with a damaged keyring", args)
		}
		oneLine(t, errOut, "damaged")
		if b, _ := os.ReadFile(path); !bytes.Equal(b, damaged) {
			t.Fatalf("%v changed the damaged keyring", args)
		}
	}
}

// TestKeyring: `keyring list` before any keyring says how to create one;
// afterwards it lists the node's SID. `keyring add` is gone: nothing could
// select the identities it made.
func TestKeyring(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	code, list, errOut := runOnce(t, nil, "keyring", "list", "--instance", inst)
	if code != 1 || list != "" {
		t.Errorf("keyring list with no keyring: exit %d, stdout %q", code, list)
	}
	oneLine(t, errOut, "no keyring in "+inst+" yet: `servald id self` creates one")
	_, self, _ := runOnce(t, nil, "id", "self", "--instance", inst)
	code, list, _ = runOnce(t, nil, "keyring", "list", "--instance", inst)
	if code != 0 || list != self || len(strings.TrimSpace(self)) != 64 {
		t.Fatalf("self %q list %q", self, list)
	}
	code, _, errOut = runOnce(t, nil, "keyring", "add", "--instance", inst)
	if code != 2 {
		t.Errorf("keyring add: exit %d", code)
	}
	oneLine(t, errOut, `unknown command "add"`)
}
