package socks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestParseRuleErrors(t *testing.T) {
	for _, s := range []string{
		"", ":", "host:", "host:0", "host:65536", "host:x", "host:10-5", "host:-5", "host:5-",
		"fe80::1%eth0", "[fe80::1%eth0]:22", "[::1", "[::1]22", "[::1]:", "[1.2.3.4]:80",
		"10.0.0.0/33", "bad host", "-lead.example", "a..b", "*.", "*.*.x", "*x.example",
		"1.2.3.4:80:90", "[::1]:1-2-3",
	} {
		if r, err := ParseRule(s); err == nil {
			t.Errorf("ParseRule(%q) = %+v, want an error", s, r)
		} else if !strings.HasPrefix(err.Error(), "socks: bad rule") {
			t.Errorf("ParseRule(%q): error %q lacks the package prefix", s, err)
		}
	}
}

func TestRules(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		rule       string
		allowAddr  []string // address:port admitted
		refuseAddr []string
		allowName  []string // name:port admitted by name
		refuseName []string
	}{
		{rule: "10.0.0.0/8", allowAddr: []string{"10.1.2.3:1", "10.255.0.0:65535", "[::ffff:10.0.0.1]:80"},
			refuseAddr: []string{"11.0.0.1:80", "[::1]:80"}, refuseName: []string{"ten.example:80"}},
		{rule: "10.1.2.3/8:80", allowAddr: []string{"10.9.9.9:80"}, refuseAddr: []string{"10.9.9.9:81"}},
		{rule: "127.0.0.1:8000-8080", allowAddr: []string{"127.0.0.1:8000", "127.0.0.1:8080"},
			refuseAddr: []string{"127.0.0.1:7999", "127.0.0.1:8081", "127.0.0.2:8000"}},
		{rule: "::1", allowAddr: []string{"[::1]:22", "[::1%lo]:22"}, refuseAddr: []string{"127.0.0.1:22"}},
		{rule: "fd00::/8", allowAddr: []string{"[fd12::1]:5"}, refuseAddr: []string{"[fe80::1]:5"}},
		{rule: "[2001:db8::/32]:443", allowAddr: []string{"[2001:db8:1::1]:443"}, refuseAddr: []string{"[2001:db8::1]:80"}},
		{rule: "[::1]:22", allowAddr: []string{"[::1]:22"}, refuseAddr: []string{"[::1]:23"}},
		{rule: "::ffff:192.0.2.1", allowAddr: []string{"192.0.2.1:1"}},
		{rule: "Example.COM.", allowName: []string{"example.com:1", "EXAMPLE.com.:80"},
			refuseName: []string{"www.example.com:80", "example.org:80"}, refuseAddr: []string{"93.184.216.34:80"}},
		{rule: "*.example.com:443", allowName: []string{"a.example.com:443", "a.b.EXAMPLE.com:443"},
			refuseName: []string{"example.com:443", "a.example.com:80", "badexample.com:443"}},
		{rule: "*", allowAddr: []string{"1.2.3.4:1", "[::]:65535"}, allowName: []string{"any.thing:7"}},
		{rule: "*:53", allowAddr: []string{"1.2.3.4:53"}, refuseAddr: []string{"1.2.3.4:54"},
			allowName: []string{"dns.test:53"}, refuseName: []string{"dns.test:54"}},
	}
	for _, tt := range tests {
		rs, err := ParseRules([]string{tt.rule})
		if err != nil {
			t.Errorf("ParseRules(%q): %v", tt.rule, err)
			continue
		}
		if rs.String() != tt.rule || rs.Empty() {
			t.Errorf("rules %q print as %q, Empty %v", tt.rule, rs, rs.Empty())
		}
		for _, a := range tt.allowAddr {
			if !rs.AllowAddr(ap(a)) {
				t.Errorf("rule %q refuses address %s", tt.rule, a)
			}
		}
		for _, a := range tt.refuseAddr {
			if rs.AllowAddr(ap(a)) {
				t.Errorf("rule %q admits address %s", tt.rule, a)
			}
		}
		for _, n := range tt.allowName {
			if !rs.AllowName(splitNamePort(t, n)) {
				t.Errorf("rule %q refuses name %s", tt.rule, n)
			}
		}
		for _, n := range tt.refuseName {
			if rs.AllowName(splitNamePort(t, n)) {
				t.Errorf("rule %q admits name %s", tt.rule, n)
			}
		}
	}
}

func splitNamePort(t *testing.T, s string) (string, uint16) {
	host, port, _ := strings.Cut(s, ":")
	p, err := parsePort(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, p
}

func TestZeroRulesRefuseAll(t *testing.T) {
	var rs Rules
	if !rs.Empty() {
		t.Error("zero Rules not Empty")
	}
	if rs.AllowAddr(netip.MustParseAddrPort("127.0.0.1:80")) || rs.AllowName("localhost", 80) {
		t.Error("zero Rules admit something")
	}
	if rs, err := ParseRules(nil); err != nil || !rs.Empty() {
		t.Errorf("ParseRules(nil) = %v, %v", rs, err)
	}
	if AllowAll().Empty() || !AllowAll().AllowAddr(netip.MustParseAddrPort("192.0.2.1:9")) {
		t.Error("AllowAll does not admit everything")
	}
}

func FuzzParseRule(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8", "[::1]:22", "::1", "host.example:1-2", "*.x.y:443", "*", "1.2.3.4:5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if r.lo == 0 || r.lo > r.hi {
			t.Fatalf("ParseRule(%q): port range %d-%d", s, r.lo, r.hi)
		}
		if n := btoi(r.any) + btoi(r.prefix.IsValid()) + btoi(r.name != ""); n != 1 {
			t.Fatalf("ParseRule(%q) = %+v: not exactly one kind", s, r)
		}
		again, err := ParseRule(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRule(%q) reparsed as %+v, %v", s, again, err)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestParseAuth(t *testing.T) {
	a, err := ParseAuth(strings.NewReader("# comment\n\n   \n  # indented comment\nalice:pa:ss\r\nbob: spaced \n"))
	if err != nil {
		t.Fatal(err)
	}
	if a.Len() != 2 {
		t.Errorf("%d users, want 2", a.Len())
	}
	for _, c := range []struct {
		user, pass string
		ok         bool
	}{
		{"alice", "pa:ss", true}, {"bob", " spaced ", true},
		{"alice", "pa:ss\r", false}, {"bob", "spaced", false}, {"carol", "", false}, {"", "", false},
	} {
		if got := a.Check(c.user, c.pass); got != c.ok {
			t.Errorf("Check(%q, %q) = %v, want %v", c.user, c.pass, got, c.ok)
		}
	}
	for in, want := range map[string]string{
		"":                              "no user",
		"# only\n":                      "no user",
		"alice\n":                       "line 1: want user:password",
		"a:b\n:pw\n":                    "line 2: user and password",
		"a:\n":                          "line 1: user and password",
		"a:b\na:c\n":                    `line 2: user "a" given twice`,
		strings.Repeat("u", 256) + ":p": "1-255 bytes",
	} {
		if _, err := ParseAuth(strings.NewReader(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseAuth(%.20q) = %v, want an error containing %q", in, err, want)
		}
	}
}

func TestLoadAuth(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth")
	if err := os.WriteFile(path, []byte("u:p\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := LoadAuth(path); err != nil || !a.Check("u", "p") {
		t.Errorf("LoadAuth = %v, %v", a, err)
	}
	if _, err := LoadAuth(path + ".missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadAuth of a missing file: %v", err)
	}
}

func FuzzParseAuth(f *testing.F) {
	f.Add("# c\nalice:pw\nbob:a:b\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAuth(strings.NewReader(s))
		if err != nil {
			return
		}
		if a.Len() == 0 {
			t.Fatal("ParseAuth accepted a file without users")
		}
		for line := range strings.SplitSeq(s, "\n") {
			line = strings.TrimSuffix(line, "\r")
			if tr := strings.TrimSpace(line); tr == "" || tr[0] == '#' {
				continue
			}
			user, pass, _ := strings.Cut(line, ":")
			if !a.Check(user, pass) {
				t.Fatalf("user %q from line %q does not pass", user, line)
			}
		}
	})
}

func TestStatusOf(t *testing.T) {
	opErr := func(err error) error {
		return fmt.Errorf("wrapped: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", err)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	_, dialTimeout := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:1")
	tests := []struct {
		err  error
		want Status
	}{
		{nil, Succeeded},
		{opErr(syscall.ECONNREFUSED), ConnectionRefused},
		{opErr(syscall.EHOSTUNREACH), HostUnreachable},
		{opErr(syscall.ENETUNREACH), NetworkUnreachable},
		{opErr(syscall.ETIMEDOUT), TTLExpired},
		{context.DeadlineExceeded, TTLExpired},
		{dialTimeout, TTLExpired},
		{&net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}, HostUnreachable},
		{&net.DNSError{Err: "timeout", Name: "x", IsTimeout: true}, HostUnreachable},
		{opErr(syscall.EACCES), GeneralFailure},
		{errors.New("odd"), GeneralFailure},
	}
	for _, tt := range tests {
		if got := StatusOf(tt.err); got != tt.want {
			t.Errorf("StatusOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
