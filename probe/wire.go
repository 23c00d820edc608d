package probe

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/servald/servald/identity"
)

// Well-known MDP ports (docs/PROTOCOL.md, "Ping and trace").
const (
	// EchoPort answers echo requests, as Serval's MDP echo does (and the
	// echo service of TCP/UDP port 7).
	EchoPort = 7
	// TracePort answers trace requests.
	TracePort = 8
)

// Message types: the first byte of every probe datagram.
const (
	typeEchoRequest  byte = 1
	typeEchoReply    byte = 2
	typeTraceRequest byte = 3
	typeTraceReply   byte = 4
)

// HeaderLen is the length of the header every probe datagram starts with:
// type (1) | code (1) | id (2) | seq (4).
const HeaderLen = 8

// MaxData is the most data an echo request carries after its header; a
// longer request is malformed.
const MaxData = 16384

// MaxAddr is the longest neighbour address a trace reply carries.
const MaxAddr = 64

// TraceRequestLen is the length of every trace request: the header, the
// destination SID and zero padding up to the largest trace reply, so that
// no reply is ever larger than the request it answers.
const TraceRequestLen = traceReplyFixed + MaxAddr

// traceReplyFixed is a trace reply without its address: header, hops (1),
// next hop SID (32), address length (1).
const traceReplyFixed = HeaderLen + 1 + identity.SIDLen + 1

// HopsUnknown is the hop count of an echo reply from a node without a route
// to the asker (on the wire: 255).
const HopsUnknown = -1

const wireHopsUnknown = 255

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("probe: malformed packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Echo is an echo request or reply. A reply is the request with its type
// changed and its code set to the responder's hop count to the asker: it
// has the request's length.
type Echo struct {
	// Reply tells a reply from a request.
	Reply bool
	// Hops is, in a reply, the responder's hop count to the asker
	// (HopsUnknown without a route); 0 in a request.
	Hops int
	ID   uint16
	Seq  uint32
	// Data is carried back unchanged, at most MaxData bytes.
	Data []byte
}

// Append encodes e.
func (e Echo) Append(b []byte) []byte {
	typ, code := typeEchoRequest, byte(0)
	if e.Reply {
		typ = typeEchoReply
		code = wireHopsUnknown
		if e.Hops >= 0 && e.Hops < wireHopsUnknown {
			code = byte(e.Hops)
		}
	}
	b = appendHeader(b, typ, code, e.ID, e.Seq)
	return append(b, e.Data...)
}

// ParseEcho decodes an echo request or reply; Data aliases b. It returns
// the bytes consumed: all of b.
func ParseEcho(b []byte) (Echo, int, error) {
	typ, code, id, seq, err := parseHeader(b)
	if err != nil {
		return Echo{}, 0, err
	}
	e := Echo{ID: id, Seq: seq, Data: b[HeaderLen:]}
	switch typ {
	case typeEchoRequest:
		if code != 0 {
			return Echo{}, 0, malformed("echo request code %d", code)
		}
	case typeEchoReply:
		e.Reply = true
		e.Hops = int(code)
		if code == wireHopsUnknown {
			e.Hops = HopsUnknown
		}
	default:
		return Echo{}, 0, malformed("type %d is not an echo", typ)
	}
	if len(e.Data) > MaxData {
		return Echo{}, 0, malformed("echo of %d data bytes (max %d)", len(e.Data), MaxData)
	}
	return e, len(b), nil
}

// TraceRequest asks a node for its next hop towards Dst.
type TraceRequest struct {
	ID  uint16
	Seq uint32
	Dst identity.SID
}

// Append encodes q, padded to TraceRequestLen.
func (q TraceRequest) Append(b []byte) []byte {
	b = appendHeader(b, typeTraceRequest, 0, q.ID, q.Seq)
	b = append(b, q.Dst[:]...)
	return append(b, make([]byte, TraceRequestLen-HeaderLen-identity.SIDLen)...)
}

// ParseTraceRequest decodes a trace request: exactly TraceRequestLen bytes,
// code and padding zero.
func ParseTraceRequest(b []byte) (TraceRequest, int, error) {
	typ, code, id, seq, err := parseHeader(b)
	if err != nil {
		return TraceRequest{}, 0, err
	}
	switch {
	case typ != typeTraceRequest:
		return TraceRequest{}, 0, malformed("type %d is not a trace request", typ)
	case code != 0:
		return TraceRequest{}, 0, malformed("trace request code %d", code)
	case len(b) != TraceRequestLen:
		return TraceRequest{}, 0, malformed("trace request of %d bytes (want %d)", len(b), TraceRequestLen)
	}
	q := TraceRequest{ID: id, Seq: seq}
	copy(q.Dst[:], b[HeaderLen:])
	for _, c := range b[HeaderLen+identity.SIDLen:] {
		if c != 0 {
			return TraceRequest{}, 0, malformed("trace request padding not zero")
		}
	}
	return q, len(b), nil
}

// Status is what a trace reply says about the destination.
type Status byte

const (
	// StatusNext: the responder forwards towards the destination through
	// Next.
	StatusNext Status = 0
	// StatusDestination: the responder is the destination.
	StatusDestination Status = 1
	// StatusNoRoute: the responder knows no route to the destination.
	StatusNoRoute Status = 2
)

// String names the status.
func (s Status) String() string {
	switch s {
	case StatusNext:
		return "next hop"
	case StatusDestination:
		return "destination"
	case StatusNoRoute:
		return "no route"
	}
	return fmt.Sprintf("status %d", byte(s))
}

// TraceReply answers a TraceRequest.
type TraceReply struct {
	Status Status
	ID     uint16
	Seq    uint32
	// Hops is the responder's hop count to the destination (0 when it is
	// the destination or has no route; at most 255).
	Hops int
	// Next is the responder's next hop towards the destination
	// (StatusNext only; zero otherwise).
	Next identity.SID
	// Addr is Next's UDP address as the responder knows it, "" when it is
	// not a neighbour (StatusNext only). At most MaxAddr bytes of printable
	// ASCII without spaces.
	Addr string
}

// Append encodes r. An Addr that ValidAddr rejects is left out.
func (r TraceReply) Append(b []byte) []byte {
	b = appendHeader(b, typeTraceReply, byte(r.Status), r.ID, r.Seq)
	b = append(b, byte(min(max(r.Hops, 0), 255)))
	b = append(b, r.Next[:]...)
	addr := r.Addr
	if !ValidAddr(addr) {
		addr = ""
	}
	b = append(b, byte(len(addr)))
	return append(b, addr...)
}

// ParseTraceReply decodes a trace reply.
func ParseTraceReply(b []byte) (TraceReply, int, error) {
	typ, code, id, seq, err := parseHeader(b)
	if err != nil {
		return TraceReply{}, 0, err
	}
	if typ != typeTraceReply {
		return TraceReply{}, 0, malformed("type %d is not a trace reply", typ)
	}
	if len(b) < traceReplyFixed {
		return TraceReply{}, 0, malformed("trace reply of %d bytes", len(b))
	}
	r := TraceReply{Status: Status(code), ID: id, Seq: seq, Hops: int(b[HeaderLen])}
	copy(r.Next[:], b[HeaderLen+1:])
	n := int(b[traceReplyFixed-1])
	if len(b) != traceReplyFixed+n {
		return TraceReply{}, 0, malformed("trace reply address of %d bytes in %d", n, len(b)-traceReplyFixed)
	}
	r.Addr = string(b[traceReplyFixed:])
	if r.Addr != "" && !ValidAddr(r.Addr) {
		return TraceReply{}, 0, malformed("trace reply address %q", r.Addr)
	}
	switch r.Status {
	case StatusNext:
		if r.Next.IsZero() {
			return TraceReply{}, 0, malformed("trace reply without next hop")
		}
	case StatusDestination, StatusNoRoute:
		if !r.Next.IsZero() || r.Addr != "" || r.Hops != 0 {
			return TraceReply{}, 0, malformed("trace reply (%v) names a next hop", r.Status)
		}
	default:
		return TraceReply{}, 0, malformed("trace reply status %d", code)
	}
	return r, len(b), nil
}

// ValidAddr reports whether a trace reply can carry addr: 1 to MaxAddr
// bytes of printable ASCII without spaces (so that an address printed on a
// terminal cannot hold control sequences).
func ValidAddr(addr string) bool {
	if addr == "" || len(addr) > MaxAddr {
		return false
	}
	for i := 0; i < len(addr); i++ {
		if addr[i] <= ' ' || addr[i] > '~' {
			return false
		}
	}
	return true
}

func appendHeader(b []byte, typ, code byte, id uint16, seq uint32) []byte {
	b = append(b, typ, code)
	b = binary.BigEndian.AppendUint16(b, id)
	return binary.BigEndian.AppendUint32(b, seq)
}

func parseHeader(b []byte) (typ, code byte, id uint16, seq uint32, err error) {
	if len(b) < HeaderLen {
		return 0, 0, 0, 0, malformed("%d bytes, shorter than a header", len(b))
	}
	return b[0], b[1], binary.BigEndian.Uint16(b[2:]), binary.BigEndian.Uint32(b[4:]), nil
}
