package socks

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
)

var sampleAddrs = []Addr{
	{IP: netip.MustParseAddr("127.0.0.1"), Port: 80},
	{IP: netip.MustParseAddr("::1"), Port: 443},
	{IP: netip.MustParseAddr("2001:db8::1"), Port: 65535},
	{IP: netip.MustParseAddr("::ffff:10.1.2.3"), Port: 8080},
	{Name: "localhost", Port: 22},
	{Name: strings.Repeat("a", 255), Port: 1},
}

func TestAddrRoundTrip(t *testing.T) {
	for _, a := range sampleAddrs {
		b := a.Append([]byte{0xee})
		got, n, err := ParseAddr(b[1:])
		if err != nil || n != len(b)-1 || got != a {
			t.Errorf("ParseAddr(Append(%v)) = %v, %d, %v", a, got, n, err)
		}
		for cut := range len(b) - 1 {
			if _, _, err := ParseAddr(b[1 : 1+cut]); !errors.Is(err, ErrShort) {
				t.Errorf("ParseAddr of %d of %d bytes of %v: %v, want ErrShort", cut, len(b)-1, a, err)
			}
		}
	}
	// A zone is not sent.
	zoned := Addr{IP: netip.MustParseAddr("fe80::1%eth0"), Port: 9}
	if got, _, _ := ParseAddr(zoned.Append(nil)); got.IP != netip.MustParseAddr("fe80::1") {
		t.Errorf("zoned address came back as %v", got.IP)
	}
}

func TestAddrErrors(t *testing.T) {
	if _, _, err := ParseAddr([]byte{2, 0, 0, 0, 0, 0, 0}); !errors.Is(err, ErrAddrType) {
		t.Errorf("address type 2: %v, want ErrAddrType", err)
	}
	if _, _, err := ParseAddr([]byte{atypDomain, 0, 0, 80}); err == nil {
		t.Error("empty name accepted")
	}
}

func TestRequestReplyRoundTrip(t *testing.T) {
	for _, a := range sampleAddrs {
		b := Request{Dest: a}.Append(nil)
		req, n, err := ParseRequest(b)
		if err != nil || n != len(b) || req.Dest != a {
			t.Errorf("ParseRequest(%x) = %v, %d, %v", b, req, n, err)
		}
		// ReadRequest stops at the end of the request.
		r := bytes.NewReader(append(b, "payload"...))
		if req, err := ReadRequest(r); err != nil || req.Dest != a || r.Len() != len("payload") {
			t.Errorf("ReadRequest = %v, %v with %d bytes left", req, err, r.Len())
		}

		rep := Reply{Status: ConnectionRefused, Bound: a}
		b = rep.Append(nil)
		got, n, err := ParseReply(b)
		if err != nil || n != len(b) || got != rep {
			t.Errorf("ParseReply(%x) = %v, %d, %v", b, got, n, err)
		}
		r = bytes.NewReader(append(b, 0))
		if got, err := ReadReply(r); err != nil || got != rep || r.Len() != 1 {
			t.Errorf("ReadReply = %v, %v with %d bytes left", got, err, r.Len())
		}
	}
	// An empty bound address is sent as 0.0.0.0:0.
	if got := (Reply{Status: NotAllowed}).Append(nil); !bytes.Equal(got, []byte{Version, 2, atypIPv4, 0, 0, 0, 0, 0, 0}) {
		t.Errorf("reply without an address: %x", got)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		in   []byte
		want string
	}{
		{nil, "EOF"},
		{[]byte{Version, atypIPv4, 1}, "unexpected EOF"},
		{[]byte{2, atypIPv4, 1, 2, 3, 4, 0, 80}, "unknown header version 2"},
		{[]byte{2}, "unknown header version 2"},
		{[]byte{Version, 9, 0}, "address type not supported"},
	}
	for _, tt := range tests {
		if _, err := ReadRequest(bytes.NewReader(tt.in)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ReadRequest(%x) = %v, want %q", tt.in, err, tt.want)
		}
	}
	if _, err := ReadReply(bytes.NewReader([]byte{3, 0, 1})); err == nil || !strings.Contains(err.Error(), "version 3") {
		t.Errorf("ReadReply of version 3: %v", err)
	}
}

func TestStatusString(t *testing.T) {
	if NotAllowed.String() != "not allowed by ruleset" || Status(0x42).String() != "status 0x42" {
		t.Errorf("%v, %v", NotAllowed, Status(0x42))
	}
}

func FuzzParseAddr(f *testing.F) {
	for _, a := range sampleAddrs {
		f.Add(a.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, n, err := ParseAddr(b)
		if err != nil {
			return
		}
		if n > len(b) || !bytes.Equal(a.Append(nil), b[:n]) {
			t.Fatalf("ParseAddr(%x) = %v, %d does not re-encode to its input", b, a, n)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	for _, a := range sampleAddrs {
		f.Add(Request{Dest: a}.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, n, err := ParseRequest(b)
		rreq, rerr := ReadRequest(bytes.NewReader(b))
		if (err == nil) != (rerr == nil) || err == nil && rreq != req {
			t.Fatalf("ParseRequest = %v, %v but ReadRequest = %v, %v", req, err, rreq, rerr)
		}
		if err == nil && !bytes.Equal(req.Append(nil), b[:n]) {
			t.Fatalf("ParseRequest(%x) = %v, %d does not re-encode to its input", b, req, n)
		}
	})
}

func FuzzParseReply(f *testing.F) {
	for i, a := range sampleAddrs {
		f.Add(Reply{Status: Status(i), Bound: a}.Append(nil))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rep, n, err := ParseReply(b)
		rrep, rerr := ReadReply(bytes.NewReader(b))
		if (err == nil) != (rerr == nil) || err == nil && rrep != rep {
			t.Fatalf("ParseReply = %v, %v but ReadReply = %v, %v", rep, err, rrep, rerr)
		}
		if err == nil && !bytes.Equal(rep.Append(nil), b[:n]) {
			t.Fatalf("ParseReply(%x) = %v, %d does not re-encode to its input", b, rep, n)
		}
	})
}

// rw is a client talking to serverHandshake: what it sends, then EOF; what
// the server answers is collected.
type rw struct {
	in  io.Reader
	out bytes.Buffer
}

func (c *rw) Read(p []byte) (int, error)  { return c.in.Read(p) }
func (c *rw) Write(p []byte) (int, error) { return c.out.Write(p) }

// FuzzServerHandshake feeds arbitrary client bytes to the SOCKS5 server
// side (greeting, RFC 1929, request), with and without authentication.
func FuzzServerHandshake(f *testing.F) {
	auth, err := ParseAuth(strings.NewReader("user:pass\n"))
	if err != nil {
		f.Fatal(err)
	}
	for _, a := range sampleAddrs {
		f.Add(a.Append([]byte{5, 1, 0, 5, 1, 0}))
		f.Add(a.Append([]byte{5, 2, 0, 2, 1, 4, 'u', 's', 'e', 'r', 4, 'p', 'a', 's', 's', 5, 1, 0}))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, au := range []*Auth{nil, auth} {
			conn := &rw{in: bytes.NewReader(b)}
			dest, err := serverHandshake(conn, au)
			if err != nil {
				continue
			}
			if !dest.IP.IsValid() && (dest.Name == "" || len(dest.Name) > 255) {
				t.Fatalf("handshake accepted destination %+v", dest)
			}
			if out := conn.out.Bytes(); len(out) < 2 || out[0] != 5 || out[1] == methodNone {
				t.Fatalf("handshake succeeded after answering %x", out)
			}
		}
	})
}
