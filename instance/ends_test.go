package instance

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/forward"
)

// TestEndFlagsRefused: each mistake is a *UsageError that names the flags
// to change.
func TestEndFlagsRefused(t *testing.T) {
	tests := []struct {
		name    string
		f       EndFlags
		connect bool
		allow   bool
		want    string
	}{
		{"open proxy", EndFlags{SocksExit: true}, false, false, "add --to="},
		{"--to without --socks", EndFlags{To: []string{"10.0.0.0/8"}}, false, false, "--to needs --socks"},
		{"bad --to", EndFlags{SocksExit: true, To: []string{"10.0.0.0/99"}}, false, false, "--to:"},
		{"listen --socks and --forward", EndFlags{SocksExit: true, Forward: "22", To: []string{"*"}}, false, false, "exclusive"},
		{"listen --socks --once", EndFlags{SocksExit: true, Once: true}, false, true, "--once"},
		{"bad listen --forward", EndFlags{Forward: "unix:"}, false, false, "--forward"},
		{"connect --socks and --forward", EndFlags{Socks: "1080", Forward: "22"}, true, false, "exclusive"},
		{"connect --socks --once", EndFlags{Socks: "1080", Once: true}, true, false, "--once"},
		{"bad --socks", EndFlags{Socks: "99999"}, true, false, "--socks"},
		{"--socks-auth without --socks", EndFlags{SocksAuth: "f"}, true, false, "--socks-auth needs --socks"},
		{"bad connect --forward", EndFlags{Forward: "x:y:z"}, true, false, "--forward"},
		{"negative --deadline", EndFlags{Forward: "udp:53", Deadline: -time.Second, UDPIdle: time.Minute}, true, false, "--deadline"},
		{"huge --deadline", EndFlags{Forward: "udp:53", Deadline: 2 * time.Hour, UDPIdle: time.Minute}, false, true, "--deadline"},
		{"zero --udp-idle", EndFlags{Forward: "udp:53"}, true, false, "--udp-idle"},
		{"udp --once", EndFlags{Forward: "udp:53", UDPIdle: time.Minute, Once: true}, false, true, "--once"},
		{"udp and connect --socks", EndFlags{Forward: "udp:53", UDPIdle: time.Minute, Socks: "1080"}, true, false, "--socks"},
		{"udp and listen --socks", EndFlags{Forward: "udp:53", UDPIdle: time.Minute, SocksExit: true}, false, true, "--socks"},
		{"udp and --to", EndFlags{Forward: "udp:53", UDPIdle: time.Minute, To: []string{"*"}}, false, true, "--to"},
		{"--deadline without udp", EndFlags{Forward: "53", UDPSet: true}, true, false, "--forward=udp:"},
		{"bad udp target", EndFlags{Forward: "udp:x:y:z", UDPIdle: time.Minute}, false, true, "--forward"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			if tt.connect {
				_, err = tt.f.ConnectEnd()
			} else {
				_, err = tt.f.ListenEnd(tt.allow)
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want a usage error containing %q", err, tt.want)
			}
		})
	}
}

// TestListenEnd: the target or exit the flags give, and the flag a
// connect line suggests for it.
func TestListenEnd(t *testing.T) {
	tests := []struct {
		name    string
		f       EndFlags
		allow   bool
		stdio   bool
		connect string
	}{
		{"stdio", EndFlags{}, false, true, ""},
		{"tcp", EndFlags{Forward: "22"}, false, false, "--forward=10022 "},
		{"tcp high port", EndFlags{Forward: "60000"}, false, false, "--forward=50000 "},
		{"unix", EndFlags{Forward: "unix:/run/docker.sock"}, false, false, "--forward=unix:docker.sock "},
		{"socks with --to", EndFlags{SocksExit: true, To: []string{"10.0.0.0/8:443"}}, false, false, "--socks=1080 "},
		{"socks with --allow only", EndFlags{SocksExit: true}, true, false, "--socks=1080 "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.f.ListenEnd(tt.allow)
			if err != nil {
				t.Fatal(err)
			}
			if e.Stdio() != tt.stdio || e.ConnectFlag() != tt.connect {
				t.Errorf("Stdio %v, ConnectFlag %q; want %v, %q", e.Stdio(), e.ConnectFlag(), tt.stdio, tt.connect)
			}
		})
	}
	// --to admits what it names, nothing else; --allow alone admits all.
	e, _ := EndFlags{SocksExit: true, To: []string{"10.0.0.0/8:443"}}.ListenEnd(false)
	in, out := netip.MustParseAddrPort("10.1.2.3:443"), netip.MustParseAddrPort("192.0.2.1:443")
	if !e.Exit.Rules.AllowAddr(in) || e.Exit.Rules.AllowAddr(out) {
		t.Errorf("rules %v: %v allowed %v, %v allowed %v", e.Exit.Rules, in, e.Exit.Rules.AllowAddr(in), out, e.Exit.Rules.AllowAddr(out))
	}
	e, _ = EndFlags{SocksExit: true}.ListenEnd(true)
	if !e.Exit.Rules.AllowAddr(out) {
		t.Errorf("--socks with --allow only: rules %v refuse %v", e.Exit.Rules, out)
	}
}

// TestConnectEnd: where connect listens, and the --socks-auth file.
func TestConnectEnd(t *testing.T) {
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth")
	if err := os.WriteFile(auth, []byte("alice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := EndFlags{Socks: "1080", SocksAuth: auth}.ConnectEnd()
	if err != nil {
		t.Fatal(err)
	}
	if e.Addr != (forward.Endpoint{Network: "tcp", Addr: "127.0.0.1:1080"}) || e.Socks == nil || e.Socks.Auth == nil || !e.Socks.Auth.Check("alice", "secret") {
		t.Errorf("ConnectEnd = %+v", e)
	}
	if _, err := (EndFlags{Socks: "1080", SocksAuth: filepath.Join(dir, "missing")}).ConnectEnd(); !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "--socks-auth: ") {
		t.Errorf("missing auth file: %v", err)
	}
	e, err = EndFlags{Forward: "unix:" + filepath.Join(dir, "s")}.ConnectEnd()
	if err != nil || e.Addr.Network != "unix" || e.Socks != nil {
		t.Errorf("unix: %+v, %v", e, err)
	}
	if e, err := (EndFlags{}).ConnectEnd(); err != nil || e.Addr.Addr != "" {
		t.Errorf("stdio: %+v, %v", e, err)
	}
}

// TestEndsServe: a SOCKS client through ConnectEnd.Serve and
// ListenEnd.Serve, the streams between them loopback TCP connections,
// reaches an HTTP server the exit's --to allows.
func TestEndsServe(t *testing.T) {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi "+r.URL.Path) }))
	defer web.Close()
	listen, err := EndFlags{SocksExit: true, To: []string{"127.0.0.1"}}.ListenEnd(false)
	if err != nil {
		t.Fatal(err)
	}
	connect, err := EndFlags{Socks: "1080"}.ConnectEnd()
	if err != nil {
		t.Fatal(err)
	}
	connect.Addr.Addr = "127.0.0.1:0"                // --socks takes no port 0
	streams, err := net.Listen("tcp", "127.0.0.1:0") // stands for MSP
	if err != nil {
		t.Fatal(err)
	}
	ln, err := connect.Addr.Listen(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if d := connect.Describe(ln); d != "SOCKS5 server on TCP "+ln.Addr().String() {
		t.Errorf("Describe = %q", d)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { listen.Serve(ctx, func(context.Context) (net.Conn, error) { return streams.Accept() }) })
	wg.Go(func() {
		connect.Serve(ctx, ln, func(ctx context.Context) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", streams.Addr().String())
		})
	})
	defer func() { cancel(); streams.Close(); wg.Wait() }()

	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "socks5h", Host: ln.Addr().String()})}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(web.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hi /x" {
		t.Errorf("body %q", body)
	}
}
