package wire

import (
	"encoding/binary"

	"github.com/servald/servald/identity"
)

// RouteVersion is the version byte of a routing message (2: with Hold).
const RouteVersion = 2

// MetricInfinity marks a retracted route.
const MetricInfinity = 0xFFFF

// RouteEntry announces a route to Origin. Seq and Sig are the origin's own:
// Sig is Origin's signature of SignedOrigin(Origin, Seq), so nobody can
// announce a SID it does not hold, or a newer Seq than the origin issued.
// Metric, Hops and MTU are the sender's view of its path to Origin.
type RouteEntry struct {
	Origin identity.SID
	Seq    uint64
	Metric uint16 // MetricInfinity: retracted
	Hops   uint8
	MTU    uint16 // largest frame along the sender's path to Origin
	HasSig bool
	Sig    [identity.SignatureLen]byte
}

// SeqRequest asks Origin, through the route towards it, for a sequence
// number of at least Seq (a node whose route starved needs a newer one).
type SeqRequest struct {
	Origin   identity.SID
	Seq      uint64
	HopsLeft uint8
}

// RouteMsg is one routing message between neighbours.
type RouteMsg struct {
	// IHU is how well the sender hears the receiver's hellos, 0 to 255
	// (255: all of them); with HasIHU false it is unknown.
	HasIHU bool
	IHU    uint8
	// WantTable: the sender holds nothing the receiver said (it has just
	// taken the receiver as a neighbour, perhaps again after dropping it
	// alone): the receiver sends its full table, signatures included.
	WantTable bool
	// Hold is how long, in seconds, the receiver keeps the entries of this
	// message unrefreshed: the sender sends its full table again within
	// it. 0: the receiver's own default.
	Hold     uint16
	Entries  []RouteEntry
	Requests []SeqRequest
}

// Sizes of the parts of a routing message.
const (
	RouteHeaderLen  = 1 + 1 + 1 + 2 + 2 + 1
	RouteEntryLen   = identity.SIDLen + 8 + 2 + 1 + 2 + 1
	RouteSigLen     = identity.SignatureLen
	SeqRequestLen   = identity.SIDLen + 8 + 1
	MaxRouteEntries = 1024
	MaxSeqRequests  = 64
)

// SignedOrigin returns the bytes an origin signs for sequence number seq.
func SignedOrigin(origin identity.SID, seq uint64) []byte {
	b := append([]byte("servald route v1\x00"), origin[:]...)
	return binary.BigEndian.AppendUint64(b, seq)
}

// AppendRouteMsg encodes m.
func AppendRouteMsg(b []byte, m *RouteMsg) []byte {
	flags := byte(0)
	if m.HasIHU {
		flags |= 1
	}
	if m.WantTable {
		flags |= 2
	}
	b = append(b, RouteVersion, flags, m.IHU)
	b = binary.BigEndian.AppendUint16(b, m.Hold)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Entries)))
	b = append(b, byte(len(m.Requests)))
	for i := range m.Entries {
		e := &m.Entries[i]
		b = append(b, e.Origin[:]...)
		b = binary.BigEndian.AppendUint64(b, e.Seq)
		b = binary.BigEndian.AppendUint16(b, e.Metric)
		b = append(b, e.Hops)
		b = binary.BigEndian.AppendUint16(b, e.MTU)
		if e.HasSig {
			b = append(b, 1)
			b = append(b, e.Sig[:]...)
		} else {
			b = append(b, 0)
		}
	}
	for _, r := range m.Requests {
		b = append(b, r.Origin[:]...)
		b = binary.BigEndian.AppendUint64(b, r.Seq)
		b = append(b, r.HopsLeft)
	}
	return b
}

// ParseRouteMsg decodes a routing message into m, reusing its slices.
func ParseRouteMsg(b []byte, m *RouteMsg) error {
	if len(b) < RouteHeaderLen || b[0] != RouteVersion {
		return malformed("route message of %d bytes", len(b))
	}
	m.HasIHU = b[1]&1 != 0
	m.WantTable = b[1]&2 != 0
	m.IHU = b[2]
	m.Hold = binary.BigEndian.Uint16(b[3:])
	ne := int(binary.BigEndian.Uint16(b[5:]))
	nr := int(b[7])
	if ne > MaxRouteEntries || nr > MaxSeqRequests {
		return malformed("route message with %d entries, %d requests", ne, nr)
	}
	m.Entries, m.Requests = m.Entries[:0], m.Requests[:0]
	p := RouteHeaderLen
	for i := 0; i < ne; i++ {
		if len(b) < p+RouteEntryLen {
			return malformed("route entry %d truncated", i)
		}
		var e RouteEntry
		copy(e.Origin[:], b[p:])
		p += identity.SIDLen
		e.Seq = binary.BigEndian.Uint64(b[p:])
		e.Metric = binary.BigEndian.Uint16(b[p+8:])
		e.Hops = b[p+10]
		e.MTU = binary.BigEndian.Uint16(b[p+11:])
		switch b[p+13] {
		case 0:
		case 1:
			e.HasSig = true
		default:
			return malformed("route entry %d: bad signature flag", i)
		}
		p += 14
		if e.HasSig {
			if len(b) < p+RouteSigLen {
				return malformed("route entry %d: signature truncated", i)
			}
			copy(e.Sig[:], b[p:])
			p += RouteSigLen
		}
		m.Entries = append(m.Entries, e)
	}
	for i := 0; i < nr; i++ {
		if len(b) < p+SeqRequestLen {
			return malformed("seqno request %d truncated", i)
		}
		var r SeqRequest
		copy(r.Origin[:], b[p:])
		r.Seq = binary.BigEndian.Uint64(b[p+identity.SIDLen:])
		r.HopsLeft = b[p+identity.SIDLen+8]
		p += SeqRequestLen
		m.Requests = append(m.Requests, r)
	}
	if p != len(b) {
		return malformed("route message: %d trailing bytes", len(b)-p)
	}
	return nil
}
