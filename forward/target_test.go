package forward

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string // substring of the error; "" for success
	}{
		{"22", "127.0.0.1:22", ""},
		{"1", "127.0.0.1:1", ""},
		{"65535", "127.0.0.1:65535", ""},
		{"0022", "127.0.0.1:22", ""},
		{":8080", "127.0.0.1:8080", ""},
		{"localhost:22", "localhost:22", ""},
		{"example.com.:443", "example.com.:443", ""},
		{"my_host-1.lan:80", "my_host-1.lan:80", ""},
		{"10.1.2.3:5000", "10.1.2.3:5000", ""},
		{"0.0.0.0:80", "0.0.0.0:80", ""},
		{"[::1]:22", "[::1]:22", ""},
		{"[fe80::1%eth0]:22", "[fe80::1%eth0]:22", ""},
		{"[1.2.3.4]:22", "1.2.3.4:22", ""},

		{"70000", "", "forward: TCP port 70000 out of range 1-65535"},
		{"65536", "", "TCP port 65536 out of range 1-65535"},
		{"0", "", "TCP port 0 out of range 1-65535"},
		{"000", "", "TCP port 000 out of range"},
		{"host:0", "", "TCP port 0 out of range"},
		{"99999999999999999999999", "", "out of range 1-65535"},
		{"", "", "missing TCP port"},
		{"host:", "", "missing TCP port"},
		{"ssh", "", `bad TCP port "ssh"`},
		{"host:ssh", "", `bad TCP port "ssh"`},
		{"-22", "", `bad TCP port "-22"`},
		{"+22", "", `bad TCP port "+22"`},
		{" 22", "", `bad TCP port " 22"`},
		{"22 ", "", `bad TCP port "22 "`},
		{"0x16", "", `bad TCP port "0x16"`},
		{"٢٢", "", "bad TCP port"}, // non-ASCII digits
		{"::1:22", "", "want PORT or HOST:PORT"},
		{"[::1]", "", "want PORT or HOST:PORT"},
		{"[::1:22", "", "want PORT or HOST:PORT"},
		{"a:b:c", "", "want PORT or HOST:PORT"},
		{"bad host:22", "", `bad host "bad host"`},
		{"-lead.example:22", "", "bad host"},
		{"a..b:22", "", "bad host"},
		{"a/b:22", "", "bad host"},
		{".:22", "", "bad host"},
		{strings.Repeat("a", 64) + ".com:22", "", "bad host"},
		{strings.Repeat("a.", 127) + "ab:22", "", "bad host"},
	}
	for _, tt := range tests {
		got, err := ParseTarget(tt.in)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("ParseTarget(%q) error %v, want %q", tt.in, err, tt.want)
		case tt.wantErr == "" && got != tt.want:
			t.Errorf("ParseTarget(%q) = %q, want %q", tt.in, got, tt.want)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("ParseTarget(%q) = %q, %v; want error containing %q", tt.in, got, err, tt.wantErr)
		case tt.wantErr != "" && !strings.HasPrefix(err.Error(), "forward: "):
			t.Errorf("ParseTarget(%q) error %q lacks the package prefix", tt.in, err)
		}
	}
}

// FuzzParseTarget checks that ParseTarget never panics, and that what it
// accepts is a host:port it accepts again unchanged.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"22", "host:22", "[::1]:22", ":1", "70000", "a..b:1", "[fe80::1%eth0]:9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			return
		}
		again, err := ParseTarget(got)
		if err != nil || again != got {
			t.Fatalf("ParseTarget(%q) = %q, which parses as %q, %v", s, got, again, err)
		}
	})
}
