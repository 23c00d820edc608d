package instance

import (
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/servald/servald/identity"
)

func testTickets() []Ticket {
	sid := identity.SID{0x4f, 0x3a, 0x09, 0xb1, 31: 0xff}
	return []Ticket{
		{SID: sid, Port: 5000, Addrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:4110")}},
		{SID: sid, Port: 65535, Service: "ssh", Addrs: []netip.AddrPort{
			netip.MustParseAddrPort("192.0.2.7:4110"), netip.MustParseAddrPort("[2001:db8::1]:4111"), netip.MustParseAddrPort("127.0.0.1:1")}},
		{SID: sid, Port: 1, Service: strings.Repeat("a", 64)},
	}
}

// TestTicketRoundTrip: a ticket reads back as written, in lower case from
// String and in upper case too, and starts with the prefix.
func TestTicketRoundTrip(t *testing.T) {
	for _, tk := range testTickets() {
		s := tk.String()
		if !strings.HasPrefix(s, TicketPrefix) || s != strings.ToLower(s) || strings.Contains(s, "=") {
			t.Fatalf("ticket %q: want %s and lower-case base32 without padding", s, TicketPrefix)
		}
		for _, in := range []string{s, strings.ToUpper(s), " " + s + "\n"} {
			got, err := ParseTicket(in)
			if err != nil {
				t.Fatalf("ParseTicket(%q): %v", in, err)
			}
			if !reflect.DeepEqual(got, tk) {
				t.Fatalf("ParseTicket(String(%+v)) = %+v", tk, got)
			}
		}
	}
}

// TestTicketMistyped: every single-character change, every cut and
// every swap of neighbouring characters of a ticket is refused with one
// line that says it is not a valid ticket.
func TestTicketMistyped(t *testing.T) {
	s := testTickets()[1].String()
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	var bad []string
	for i := len(TicketPrefix); i < len(s); i++ {
		for _, c := range alphabet + "08!" {
			if byte(c) != s[i] {
				bad = append(bad, s[:i]+string(c)+s[i+1:])
			}
		}
		bad = append(bad, s[:i])
		if i+1 < len(s) && s[i] != s[i+1] {
			bad = append(bad, s[:i]+s[i+1:i+2]+s[i:i+1]+s[i+2:])
		}
	}
	bad = append(bad, "svd2"+s[4:], s+"a", s+"aaaaaaaa", "4F3A09B1", "")
	for _, b := range bad {
		_, err := ParseTicket(b)
		if !errors.Is(err, ErrBadTicket) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("ParseTicket(%q) = %v, want one line wrapping ErrBadTicket", b, err)
		}
	}
}

// TestTicketRefusesToEncode: what a ticket cannot carry is an error, not
// a ticket that does not read back.
func TestTicketRefusesToEncode(t *testing.T) {
	many := make([]netip.AddrPort, MaxTicketAddrs+1)
	for i := range many {
		many[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 4110)
	}
	for _, tk := range []Ticket{{Port: 1, Service: "no spaces"}, {Port: 1, Addrs: many}} {
		if _, err := tk.Append(nil); err == nil || tk.String() != "" {
			t.Errorf("%+v encoded", tk)
		}
	}
}

func TestTicketAddrs(t *testing.T) {
	got := TicketAddrs(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4110})
	if len(got) != 1 || got[0].String() != "127.0.0.1:4110" {
		t.Fatalf("for 127.0.0.1:4110: %v", got)
	}
	got = TicketAddrs(&net.UDPAddr{IP: net.IPv4zero, Port: 4110})
	if len(got) == 0 || len(got) > MaxTicketAddrs || got[len(got)-1].String() != "127.0.0.1:4110" {
		t.Fatalf("for 0.0.0.0:4110: %v, want the interfaces' addresses, 127.0.0.1:4110 last", got)
	}
	for _, a := range got {
		if !a.Addr().Is4() || a.Port() != 4110 {
			t.Fatalf("for 0.0.0.0:4110: %v", got)
		}
	}
}

func FuzzParseTicket(f *testing.F) {
	for _, tk := range testTickets() {
		f.Add(tk.String())
		b, _ := tk.Append(nil)
		f.Add(string(b))
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, parse := range []func(string) (Ticket, error){ParseTicket, func(s string) (Ticket, error) { return ParseTicketBinary([]byte(s)) }} {
			tk, err := parse(s)
			if err != nil {
				if !errors.Is(err, ErrBadTicket) {
					t.Fatalf("%q: error %v does not wrap ErrBadTicket", s, err)
				}
				continue
			}
			again, err := ParseTicket(tk.String())
			if err != nil || !reflect.DeepEqual(again, tk) {
				t.Fatalf("%q read as %+v, which reads back as %+v, %v", s, tk, again, err)
			}
		}
	})
}
