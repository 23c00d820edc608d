package instance

// A ticket: everything msp connect needs to reach a listener, in one token
// to copy (docs/PROTOCOL.md, Ticket):
//
//	"svd1" + base32(lower case, no padding) of
//	version(1) | SID(32) | MDP port(2) | name length(1) | name |
//	address count(1) | per address: family(1: 4 or 6) | IP(4 or 16) | UDP port(2) |
//	CRC-32 (IEEE) of everything before it (4)
//
// all integers big-endian.

import (
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"net"
	"net/netip"
	"strings"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
)

// TicketPrefix starts every ticket; its digit is the encoding's version.
const TicketPrefix = "svd1"

// ticketVersion is the first byte of the binary form.
const ticketVersion = 1

// MaxTicketAddrs bounds the UDP addresses a ticket carries.
const MaxTicketAddrs = 8

// ErrBadTicket is wrapped by every error of ParseTicket.
var ErrBadTicket = errors.New("ticket: not a valid servald ticket")

var ticketEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Ticket is what msp connect needs to reach a listener.
type Ticket struct {
	SID  identity.SID
	Port uint16 // MDP port
	// Service is the listener's --service name, "" for none.
	Service string
	// Addrs are UDP addresses at which the listener's node may be
	// reached (at most MaxTicketAddrs).
	Addrs []netip.AddrPort
}

// Append appends the binary form of t to b: an error for a service name
// that discovery refuses or too many addresses.
func (t Ticket) Append(b []byte) ([]byte, error) {
	if t.Service != "" {
		if err := discovery.ValidName(t.Service); err != nil {
			return b, fmt.Errorf("ticket: %w", err)
		}
	}
	if len(t.Addrs) > MaxTicketAddrs {
		return b, fmt.Errorf("ticket: %d addresses, at most %d", len(t.Addrs), MaxTicketAddrs)
	}
	start := len(b)
	b = append(b, ticketVersion)
	b = append(b, t.SID[:]...)
	b = binary.BigEndian.AppendUint16(b, t.Port)
	b = append(b, byte(len(t.Service)))
	b = append(b, t.Service...)
	b = append(b, byte(len(t.Addrs)))
	for _, a := range t.Addrs {
		ip := a.Addr().Unmap()
		if ip.Is4() {
			b = append(b, 4)
		} else {
			b = append(b, 6)
		}
		b = append(b, ip.AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, a.Port())
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b[start:])), nil
}

// String is the ticket as a token: TicketPrefix and the base32 of its
// binary form; "" when t cannot be encoded (see Append).
func (t Ticket) String() string {
	b, err := t.Append(nil)
	if err != nil {
		return ""
	}
	return TicketPrefix + ticketEncoding.EncodeToString(b)
}

// ParseTicket reads a token written by Ticket.String (in upper or lower
// case). Every error wraps ErrBadTicket and says what is wrong in one
// line.
func ParseTicket(s string) (Ticket, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	body, ok := strings.CutPrefix(s, TicketPrefix)
	if !ok {
		return Ticket{}, fmt.Errorf("%w: it does not start with %q", ErrBadTicket, TicketPrefix)
	}
	b, err := ticketEncoding.DecodeString(body)
	// The last character may carry unused bits: they must be zero, as
	// String writes them, so that no other text reads as this ticket.
	if err != nil || ticketEncoding.EncodeToString(b) != body {
		return Ticket{}, fmt.Errorf("%w: mistyped (a character that is not base32, or it is cut short)", ErrBadTicket)
	}
	return ParseTicketBinary(b)
}

// ParseTicketBinary reads the binary form of a ticket, which is all of b.
func ParseTicketBinary(b []byte) (Ticket, error) {
	if len(b) < 5 {
		return Ticket{}, fmt.Errorf("%w: cut short", ErrBadTicket)
	}
	body := b[:len(b)-4]
	if crc32.ChecksumIEEE(body) != binary.BigEndian.Uint32(b[len(body):]) {
		return Ticket{}, fmt.Errorf("%w: mistyped or cut short (its checksum does not match)", ErrBadTicket)
	}
	if body[0] != ticketVersion {
		return Ticket{}, fmt.Errorf("%w: version %d, this program reads version %d (from a newer servald?)", ErrBadTicket, body[0], ticketVersion)
	}
	t, err := parseTicketFields(body[1:])
	if err != nil {
		return Ticket{}, fmt.Errorf("%w: %v", ErrBadTicket, err)
	}
	return t, nil
}

// errCutShort: the fields end before the checksum does.
var errCutShort = errors.New("cut short")

// ticketBytes are the fields of a ticket not read yet.
type ticketBytes []byte

// take returns the next n bytes, nil when there are not as many.
func (b *ticketBytes) take(n int) []byte {
	if len(*b) < n {
		return nil
	}
	v := (*b)[:n]
	*b = (*b)[n:]
	return v
}

// parseTicketFields reads what follows the version byte, up to the
// checksum: all of fields.
func parseTicketFields(fields []byte) (Ticket, error) {
	var t Ticket
	b := ticketBytes(fields)
	sid, port, nlen := b.take(identity.SIDLen), b.take(2), b.take(1)
	if nlen == nil {
		return t, errCutShort
	}
	copy(t.SID[:], sid)
	t.Port = binary.BigEndian.Uint16(port)
	name, count := b.take(int(nlen[0])), b.take(1)
	switch {
	case count == nil:
		return t, errCutShort
	case t.Port == 0:
		return t, errors.New("MDP port 0")
	case int(count[0]) > MaxTicketAddrs:
		return t, fmt.Errorf("%d addresses, at most %d", count[0], MaxTicketAddrs)
	}
	if t.Service = string(name); t.Service != "" {
		if err := discovery.ValidName(t.Service); err != nil {
			return t, err
		}
	}
	for range count[0] {
		a, err := b.addr()
		if err != nil {
			return t, err
		}
		t.Addrs = append(t.Addrs, a)
	}
	if len(b) != 0 {
		return t, fmt.Errorf("%d bytes too many", len(b))
	}
	return t, nil
}

// addr reads an address: family (4 or 6), IP, UDP port.
func (b *ticketBytes) addr() (netip.AddrPort, error) {
	fam := b.take(1)
	if fam == nil {
		return netip.AddrPort{}, errCutShort
	}
	size := net.IPv4len
	switch fam[0] {
	case 4:
	case 6:
		size = net.IPv6len
	default:
		return netip.AddrPort{}, fmt.Errorf("address family %d", fam[0])
	}
	ip, ok := netip.AddrFromSlice(b.take(size))
	port := b.take(2)
	if !ok || port == nil {
		return netip.AddrPort{}, errCutShort
	}
	a := netip.AddrPortFrom(ip, binary.BigEndian.Uint16(port))
	if a.Port() == 0 || ip.IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("address %s", a)
	}
	return a, nil
}

// TicketAddrs are the UDP addresses a ticket gives for a node listening
// on a: a itself, or, when a's IP is unspecified (every interface), the
// interfaces' unicast addresses that are not link-local, loopback last
// (at most MaxTicketAddrs).
func TicketAddrs(a net.Addr) []netip.AddrPort {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return nil
	}
	if !ap.Addr().IsUnspecified() {
		return []netip.AddrPort{ap}
	}
	var out, loop []netip.AddrPort
	ifAddrs, _ := net.InterfaceAddrs()
	for _, ia := range ifAddrs {
		pfx, err := netip.ParsePrefix(ia.String())
		if err != nil {
			continue
		}
		ip := pfx.Addr().Unmap()
		switch {
		case ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified():
		case ap.Addr().Is4() && !ip.Is4():
			// A socket on 0.0.0.0 is not reached over IPv6.
		case ip.IsLoopback():
			loop = append(loop, netip.AddrPortFrom(ip, ap.Port()))
		default:
			out = append(out, netip.AddrPortFrom(ip, ap.Port()))
		}
	}
	out = append(out[:min(len(out), MaxTicketAddrs-1)], loop...)
	return out[:min(len(out), MaxTicketAddrs)]
}

// PeerStrings are addrs as --peer arguments.
func PeerStrings(addrs []netip.AddrPort) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// ListenerTicket is the line a listener on MDP port of m offering service
// ("" for none) prints: its ticket, and how to connect with it, fwd being
// the flag its connect line suggests (ListenEnd.ConnectFlag).
func ListenerTicket(m Mesh, port uint16, service, fwd string) string {
	tk := Ticket{SID: m.Identity().SID(), Port: port, Service: service, Addrs: TicketAddrs(m.UDPAddr())}
	return fmt.Sprintf("ticket: %s (servald msp connect --udp :0 %sTICKET)", tk, fwd)
}

// ParseTicketArg reads the one argument of msp connect, which must be a
// ticket: a mistake is a *UsageError.
func ParseTicketArg(arg string) (Ticket, error) {
	if !strings.HasPrefix(strings.ToLower(arg), TicketPrefix) {
		return Ticket{}, usagef("%q: msp connect accepts 2 args, SID MDPPORT, or 1, a TICKET (%s...) as msp listen prints it", arg, TicketPrefix)
	}
	tk, err := ParseTicket(arg)
	if err != nil {
		return Ticket{}, &UsageError{err}
	}
	return tk, nil
}

// Target is what msp connect dials for t.
func (t Ticket) Target() Target { return Target{SID: FullSID(t.SID), Port: t.Port} }

// Notes are the lines msp connect prints about ticket t (none for nil):
// what it gives and, when m is the instance's daemon, whose peers are its
// own, that its addresses are not used.
func (t *Ticket) Notes(m Mesh) []string {
	if t == nil {
		return nil
	}
	name := ""
	if t.Service != "" {
		name = " (service " + t.Service + ")"
	}
	notes := []string{fmt.Sprintf("ticket: %s port %d%s at %v", t.SID, t.Port, name, PeerStrings(t.Addrs))}
	if d, ok := m.(viaDaemon); ok && len(t.Addrs) > 0 {
		notes = append(notes, fmt.Sprintf("the daemon of this instance (pid %d) runs, so the ticket's addresses are not used: it reaches %s only if its mesh knows a route (start it with --peer %s to add one)",
			d.c.PID(), t.SID.Short(), t.Addrs[0]))
	}
	return notes
}
