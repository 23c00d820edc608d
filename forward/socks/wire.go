// Codecs: the destination address (shared by SOCKS5 and the stream header),
// the Request header the connector writes first on a stream, and the Reply
// the exit answers with.
//
//	Addr    = ATYP (1) | IPv4 (4) | port (2)
//	        | ATYP (1) | length (1, 1-255) | name | port (2)
//	        | ATYP (1) | IPv6 (16) | port (2)
//	Request = version (1) = 1 | Addr
//	Reply   = version (1) = 1 | status (1) | bound Addr

package socks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// Address types, as in RFC 1928.
const (
	atypIPv4   = 1
	atypDomain = 3
	atypIPv6   = 4
)

// Version is the version byte that starts a Request and a Reply.
const Version = 1

// ErrShort means a buffer ends before the message it starts.
var ErrShort = errors.New("socks: message cut short")

// ErrAddrType means an address type other than IPv4, domain name or IPv6.
var ErrAddrType = errors.New("socks: address type not supported")

var errEmptyName = errors.New("socks: empty domain name")

// Status is a SOCKS5 reply code (RFC 1928, section 6).
type Status byte

// SOCKS5 reply codes.
const (
	Succeeded               Status = 0x00
	GeneralFailure          Status = 0x01
	NotAllowed              Status = 0x02 // connection not allowed by ruleset
	NetworkUnreachable      Status = 0x03
	HostUnreachable         Status = 0x04
	ConnectionRefused       Status = 0x05
	TTLExpired              Status = 0x06 // also a dial timeout
	CommandNotSupported     Status = 0x07
	AddressTypeNotSupported Status = 0x08
)

var statusText = [...]string{
	"succeeded", "general failure", "not allowed by ruleset", "network unreachable",
	"host unreachable", "connection refused", "TTL expired", "command not supported",
	"address type not supported",
}

// String returns the RFC 1928 name of the code.
func (s Status) String() string {
	if int(s) < len(statusText) {
		return statusText[s]
	}
	return "status 0x" + strconv.FormatUint(uint64(s), 16)
}

// Addr is a destination or bound address: an IP address or a domain name,
// and a port.
type Addr struct {
	// IP is the address; when it is not valid, Name is.
	IP netip.Addr
	// Name is a domain name of 1-255 bytes, as the client sent it.
	Name string
	Port uint16
}

// String returns "host:port".
func (a Addr) String() string {
	if a.IP.IsValid() {
		return netip.AddrPortFrom(a.IP, a.Port).String()
	}
	return net.JoinHostPort(a.Name, strconv.Itoa(int(a.Port)))
}

// Append appends the address as ATYP | address | port; an IPv4-mapped IPv6
// address stays IPv6 (the exit matches and dials it as IPv4). A Name longer
// than 255 bytes is cut. The zone of an IPv6 address is not sent.
func (a Addr) Append(b []byte) []byte {
	switch {
	case a.IP.Is4():
		b = append(b, atypIPv4)
		b = append(b, a.IP.AsSlice()...)
	case a.IP.Is6():
		b = append(b, atypIPv6)
		b = append(b, a.IP.AsSlice()...)
	default:
		name := a.Name[:min(len(a.Name), 255)]
		b = append(b, atypDomain, byte(len(name)))
		b = append(b, name...)
	}
	return binary.BigEndian.AppendUint16(b, a.Port)
}

// addrSize returns the encoded size of the address whose first two bytes
// are head.
func addrSize(head []byte) (int, error) {
	switch head[0] {
	case atypIPv4:
		return 1 + 4 + 2, nil
	case atypIPv6:
		return 1 + 16 + 2, nil
	case atypDomain:
		if head[1] == 0 {
			return 0, errEmptyName
		}
		return 1 + 1 + int(head[1]) + 2, nil
	}
	return 0, fmt.Errorf("%w: 0x%02x", ErrAddrType, head[0])
}

// ParseAddr decodes an address written by Append and returns its size.
func ParseAddr(b []byte) (Addr, int, error) {
	if len(b) < 2 {
		return Addr{}, 0, ErrShort
	}
	n, err := addrSize(b)
	if err != nil {
		return Addr{}, 0, err
	}
	if len(b) < n {
		return Addr{}, 0, ErrShort
	}
	var a Addr
	switch b[0] {
	case atypIPv4:
		a.IP = netip.AddrFrom4([4]byte(b[1:5]))
	case atypIPv6:
		a.IP = netip.AddrFrom16([16]byte(b[1:17]))
	default:
		a.Name = string(b[2 : n-2])
	}
	a.Port = binary.BigEndian.Uint16(b[n-2:])
	return a, n, nil
}

// Request is the header the connector writes first on a stream: where the
// exit is to connect.
type Request struct {
	Dest Addr
}

// Append appends the encoded request.
func (r Request) Append(b []byte) []byte {
	return r.Dest.Append(append(b, Version))
}

// ParseRequest decodes a Request and returns its size.
func ParseRequest(b []byte) (Request, int, error) {
	if err := checkVersion(b); err != nil {
		return Request{}, 0, err
	}
	a, n, err := ParseAddr(b[1:])
	if err != nil {
		return Request{}, 0, err
	}
	return Request{Dest: a}, 1 + n, nil
}

// Reply is the exit's answer to a Request: Succeeded and the address the
// exit's connection to the destination is bound to, or why it failed (and
// an unspecified bound address). After a Reply other than Succeeded the exit
// closes the stream.
type Reply struct {
	Status Status
	Bound  Addr
}

// Append appends the encoded reply. A Bound with neither IP nor Name is
// written as 0.0.0.0:0.
func (r Reply) Append(b []byte) []byte {
	b = append(b, Version, byte(r.Status))
	return unspecified(r.Bound).Append(b)
}

// ParseReply decodes a Reply and returns its size.
func ParseReply(b []byte) (Reply, int, error) {
	if err := checkVersion(b); err != nil {
		return Reply{}, 0, err
	}
	if len(b) < 2 {
		return Reply{}, 0, ErrShort
	}
	a, n, err := ParseAddr(b[2:])
	if err != nil {
		return Reply{}, 0, err
	}
	return Reply{Status: Status(b[1]), Bound: a}, 2 + n, nil
}

func checkVersion(b []byte) error {
	if len(b) < 1 {
		return ErrShort
	}
	if b[0] != Version {
		return fmt.Errorf("socks: unknown header version %d", b[0])
	}
	return nil
}

// unspecified returns a, or 0.0.0.0:0 if a is empty.
func unspecified(a Addr) Addr {
	if !a.IP.IsValid() && a.Name == "" {
		return Addr{IP: netip.IPv4Unspecified()}
	}
	return a
}

// maxMessage bounds the messages readMessage reads: a fixed part of at
// most 3 bytes and the longest address (1+1+255+2).
const maxMessage = 3 + 1 + 1 + 255 + 2

// readMessage reads one message made of fixed bytes (at most 3) followed by
// an Addr, exactly as long as its encoding says, so nothing after it is
// consumed. On an error it returns what it has read.
func readMessage(r io.Reader, fixed int) ([]byte, error) {
	b := make([]byte, fixed+2, maxMessage)
	if n, err := io.ReadFull(r, b); err != nil {
		return b[:n], err
	}
	n, err := addrSize(b[fixed:])
	if err != nil {
		return b, err
	}
	b = b[:fixed+n]
	if n, err := io.ReadFull(r, b[fixed+2:]); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return b[:fixed+2+n], err
	}
	return b, nil
}

// ReadRequest reads one Request from r, consuming nothing after it.
func ReadRequest(r io.Reader) (Request, error) { return readParsed(r, 1, ParseRequest) }

// ReadReply reads one Reply from r, consuming nothing after it.
func ReadReply(r io.Reader) (Reply, error) { return readParsed(r, 2, ParseReply) }

// readParsed reads a message with readVersioned and decodes it with parse.
func readParsed[T any](r io.Reader, fixed int, parse func([]byte) (T, int, error)) (T, error) {
	b, err := readVersioned(r, fixed)
	if err != nil {
		var zero T
		return zero, err
	}
	v, _, err := parse(b)
	return v, err
}

// readVersioned is readMessage for a message that starts with Version; a
// wrong version is reported as such, whatever follows it.
func readVersioned(r io.Reader, fixed int) ([]byte, error) {
	b, err := readMessage(r, fixed)
	if len(b) > 0 {
		if verr := checkVersion(b); verr != nil {
			return nil, verr
		}
	}
	return b, err
}
