package main

// End-to-end tests of the SOCKS5 exit (msp listen --socks) and its local
// server (msp connect --socks) with real processes on loopback, driven by
// curl and by a raw SOCKS5 client that reads the reply code.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// needCurl skips the test where curl is missing (.ci/run installs it).
func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed (apt-get install curl): the SOCKS tests drive it")
	}
}

// webFiles serves /file (16 MiB) and /small (1 MiB) of random bytes on
// 127.0.0.1 and returns the server's port and the files; serveOn serves
// them on another listener too.
func webFiles(t *testing.T) (port string, files map[string][]byte, serveOn func(net.Listener)) {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	files = map[string][]byte{"/file": make([]byte, 16<<20), "/small": make([]byte, 1<<20)}
	for _, b := range files {
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	})
	serveOn = func(ln net.Listener) {
		web := httptest.NewUnstartedServer(h)
		web.Listener.Close()
		web.Listener = ln
		web.Start()
		t.Cleanup(web.Close)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(ln)
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	return port, files, serveOn
}

// curl runs curl with args and returns what it wrote, its exit code (-1
// if it did not run) and its stderr.
func curl(args ...string) (out []byte, code int, stderr string) {
	var o, e bytes.Buffer
	cmd := exec.Command("curl", append([]string{"-sS", "--max-time", "120"}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		return nil, -1, err.Error()
	}
	return o.Bytes(), code, e.String()
}

// fetch gets url with curl through the SOCKS5 proxy (socks5h: names are
// resolved by the proxy; USER:PASS@ for RFC 1929) and checks that it is
// want, byte for byte.
func fetch(proxy, url string, want []byte) error {
	out, code, stderr := curl("-x", "socks5h://"+proxy, url)
	switch {
	case code != 0:
		return fmt.Errorf("curl %s exited %d: %s", url, code, stderr)
	case sha256.Sum256(out) != sha256.Sum256(want):
		return fmt.Errorf("curl %s: %d bytes, differ from the %d served", url, len(out), len(want))
	}
	return nil
}

// startSocksConnect runs msp connect --socks on a free port with args
// (which name the exit) and returns the SOCKS5 address once its session is
// up.
func startSocksConnect(t *testing.T, args []string) (*proc, string) {
	t.Helper()
	proxy := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	p := start(t, nil, nil, append(args[:len(args):len(args)], "--socks", proxy)...)
	p.waitLine(`SOCKS5 server on TCP ` + proxy + ` to [0-9A-F]{64} port \d+`)
	return p, proxy
}

// socksDial runs a SOCKS5 CONNECT to host:port through proxy, with RFC 1929
// username/password when user is not empty, and returns the reply code;
// authFailed is set when the server refused the password.
func socksDial(proxy, host string, port int, user, pass string) (rep byte, authFailed bool, err error) {
	c, err := net.DialTimeout("tcp", proxy, 10*time.Second)
	if err != nil {
		return 0, false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	method := byte(0)
	if user != "" {
		method = 2
	}
	buf := make([]byte, 2)
	if _, err := c.Write([]byte{5, 1, method}); err != nil {
		return 0, false, err
	}
	if _, err := io.ReadFull(c, buf); err != nil || buf[1] != method {
		return 0, false, fmt.Errorf("greeting: %v %v", buf, err)
	}
	if user != "" {
		msg := append(append([]byte{1, byte(len(user))}, user...), byte(len(pass)))
		if _, err := c.Write(append(msg, pass...)); err != nil {
			return 0, false, err
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			return 0, false, err
		}
		if buf[1] != 0 {
			return 0, true, nil
		}
	}
	req := append([]byte{5, 1, 0, 3, byte(len(host))}, host...)
	if _, err := c.Write(binary.BigEndian.AppendUint16(req, uint16(port))); err != nil {
		return 0, false, err
	}
	reply := make([]byte, 10) // VER REP RSV ATYP=1 IPv4 PORT: the exit answers IPv4 on loopback, 0.0.0.0:0 on failure
	if _, err := io.ReadFull(c, reply[:2]); err != nil {
		return 0, false, fmt.Errorf("reply: %w", err)
	}
	return reply[1], false, nil
}

// TestSocks: curl fetches through msp connect --socks and msp listen
// --socks --to=127.0.0.1 (the 16 MiB file skipped under -short; 32 fetches
// at once); a destination outside --to gets 0x02 (curl exit 97) and a line
// on the exit's stderr; a closed port 0x05; --socks-auth (to the exit found
// by --service=socks) refuses a wrong password and lets the right one in.
func TestSocks(t *testing.T) {
	t.Parallel()
	needCurl(t)
	httpPort, files, serveOn := webFiles(t)
	l := startListen(t, nil, nil, "--socks", "--to=127.0.0.1", "--to=::1", "--service=socks", "5000")
	l.waitLine(regexp.QuoteMeta("connect with: servald msp connect --udp :0 --peer " + l.udp + " --socks=1080 " + l.sid + " 5000"))
	_, proxy := startSocksConnect(t, connectArgs(t, l, l.sid, "5000"))
	base := "http://localhost:" + httpPort // a name: resolved at the exit, as socks5h

	if !testing.Short() {
		t0 := time.Now()
		if err := fetch(proxy, base+"/file", files["/file"]); err != nil {
			t.Fatal(err)
		}
		t.Logf("16 MiB in %v", time.Since(t0).Round(time.Millisecond))
	}
	// Addresses as well as names: IPv4, and IPv6 where loopback has it.
	if err := fetch(proxy, "http://127.0.0.1:"+httpPort+"/small", files["/small"]); err != nil {
		t.Error(err)
	}
	if ln6, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Logf("no IPv6 loopback (%v): IPv6 destination not tried", err)
	} else {
		serveOn(ln6)
		if err := fetch(proxy, "http://"+ln6.Addr().String()+"/small", files["/small"]); err != nil {
			t.Error(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Go(func() { errs <- fetch(proxy, base+"/small", files["/small"]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}

	// 127.0.0.2 is outside --to=127.0.0.1: refused before any dial.
	_, code, stderr := curl("--socks5-hostname", proxy, "http://127.0.0.2:"+httpPort+"/small")
	if code != 97 || !strings.Contains(stderr, "(2)") && !strings.Contains(stderr, "not allowed") {
		t.Errorf("curl to a destination outside --to: exit %d, %q; want 97 naming reply 2 (not allowed by ruleset)", code, stderr)
	}
	if rep, _, err := socksDial(proxy, "127.0.0.2", 80, "", ""); err != nil || rep != 0x02 {
		t.Errorf("destination outside --to: reply %#x, %v; want 0x02", rep, err)
	}
	l.waitLine(`destination refused by the rules.* dest=127\.0\.0\.2:` + httpPort)
	l.waitLine(`destination refused by the rules.* dest=127\.0\.0\.2:80`)
	if rep, _, err := socksDial(proxy, "127.0.0.1", freePort(t), "", ""); err != nil || rep != 0x05 {
		t.Errorf("closed port: reply %#x, %v; want 0x05 (connection refused)", rep, err)
	}

	auth := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(auth, []byte("# users\nalice:s3cret:x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, authProxy := startSocksConnect(t, connectArgs(t, l, "--service=socks", "--socks-auth", auth))
	if _, failed, err := socksDial(authProxy, "localhost", 80, "alice", "wrong"); err != nil || !failed {
		t.Errorf("wrong password: refused %v, %v; want refused", failed, err)
	}
	if _, code, stderr := curl("--socks5-hostname", authProxy, base+"/small"); code != 97 {
		t.Errorf("no password: curl exit %d (%s), want 97", code, stderr)
	}
	if err := fetch("alice:s3cret:x@"+authProxy, base+"/small", files["/small"]); err != nil {
		t.Error(err)
	}
}

// TestSocksOverSplit: one fetch through msp connect --split --socks and
// msp listen --split --socks --to=127.0.0.1.
func TestSocksOverSplit(t *testing.T) {
	t.Parallel()
	needCurl(t)
	httpPort, files, _ := webFiles(t)
	l := startSplitListen(t, nil, nil, "--socks", "--to=127.0.0.1", "5000")
	l.waitLine(regexp.QuoteMeta("servald msp connect --split=" + l.split + " --socks=1080 " + l.sid + " 5000"))
	_, proxy := startSocksConnect(t, splitConnectArgs(t, l, l.sid, "5000"))
	if err := fetch(proxy, "http://localhost:"+httpPort+"/small", files["/small"]); err != nil {
		t.Fatal(err)
	}
}

// TestSocksRefusals: an exit with neither --allow nor --to, and flags that
// do not go together, exit 2 with one line naming what to change.
func TestSocksRefusals(t *testing.T) {
	t.Parallel()
	inst := instance(t)
	sid := strings.Repeat("A", 64)
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("keep me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	listen := []string{"msp", "listen", "--instance", inst, "--udp", "127.0.0.1:0"}
	connect := []string{"msp", "connect", "--instance", inst, "--udp", "127.0.0.1:0"}
	with := func(base []string, args ...string) []string { return append(base[:len(base):len(base)], args...) }
	checkRefusals(t, []refusalCase{
		{name: "open proxy", args: with(listen, "--socks", "5000"), code: 2, want: "add --to="},
		{name: "listen --socks and --forward", args: with(listen, "--socks", "--to=127.0.0.1", "--forward=22", "5000"), code: 2, want: "--socks and --forward are exclusive"},
		{name: "connect --socks and --forward", args: with(connect, "--socks=1080", "--forward=2222", sid, "5000"), code: 2, want: "--socks and --forward are exclusive"},
		{name: "--to without --socks", args: with(listen, "--to=127.0.0.1", "5000"), code: 2, want: "--to needs --socks"},
		{name: "bad --to", args: with(listen, "--socks", "--to=127.0.0.1:0", "5000"), code: 2, want: "--to"},
		{name: "--socks-auth without --socks", args: with(connect, "--socks-auth", file, sid, "5000"), code: 2, want: "--socks-auth needs --socks"},
		{name: "bad --socks-auth file", args: with(connect, "--socks=1080", "--socks-auth", file, sid, "5000"), code: 1, want: "--socks-auth"},
		{name: "unix path is a file", args: with(connect, "--forward=unix:"+file, sid, "5000"), code: 1, want: "not a socket"},
	})
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me\n" {
		t.Errorf("the file at the unix path: %q, %v; want it untouched", b, err)
	}
}

// TestUnixForward: an HTTP request over Unix-socket forwards on both
// sides: a Go client dials msp connect --forward=unix:PATH (0600), msp
// listen --forward=unix:PATH dials a Go HTTP server on a Unix socket; the
// connector's socket is gone once it exits.
func TestUnixForward(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srvPath, cliPath := filepath.Join(dir, "server.sock"), filepath.Join(dir, "client.sock")
	srvLn, err := net.Listen("unix", srvPath)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello "+r.URL.Path)
	})}
	go srv.Serve(srvLn)
	t.Cleanup(func() { srv.Close() })

	l := startListen(t, nil, nil, "--forward=unix:"+srvPath, "5000")
	l.waitLine(regexp.QuoteMeta("servald msp connect --forward=unix:server.sock " + l.sid))
	c := start(t, nil, nil, connectArgs(t, l, "--forward=unix:"+cliPath, l.sid, "5000")...)
	c.waitLine(`forwarding Unix socket ` + cliPath + ` to ` + l.sid + ` port 5000`)
	fi, err := os.Lstat(cliPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: mode %v, want a socket with 0600", cliPath, fi.Mode())
	}

	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", cliPath)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Get("http://servald/over/unix")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(body) != "hello /over/unix" {
		t.Errorf("body %q, %v", body, err)
	}
	tr.CloseIdleConnections()

	c.cmd.Process.Signal(os.Interrupt)
	c.exitsZero(10*time.Second, "connect --forward=unix:PATH")
	if _, err := os.Lstat(cliPath); !os.IsNotExist(err) {
		t.Errorf("%s still there after connect exited: %v", cliPath, err)
	}
}
