package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/servald/servald/identity"
)

// Magic is the first byte of every mesh frame.
const Magic = 0xD5

// Frame types.
const (
	TypeHello    byte = 1
	TypeData     byte = 2
	TypeAck      byte = 3
	TypeProbe    byte = 4
	TypeProbeAck byte = 5
	TypeRoute    byte = 6 // reserved: routing messages travel inside DATA frames
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed frame")

func malformed(what string, args ...any) error {
	return fmt.Errorf("wire: %w: %s", ErrMalformed, fmt.Sprintf(what, args...))
}

// Type returns the type of frame b after checking the magic byte.
func Type(b []byte) (byte, error) {
	if len(b) < 2 {
		return 0, malformed("%d bytes", len(b))
	}
	if b[0] != Magic {
		return 0, malformed("bad magic %#x", b[0])
	}
	return b[1], nil
}

// Hello announces a node on a link. It is signed by the node's key, so the
// SID in it is proven; Seq grows with every hello a node sends, across
// restarts, so an old hello cannot be replayed to move a neighbour.
//
// Cookie is what the sender made for the receiver's address (a MAC only
// the sender can check); Echo is the last cookie the sender got from the
// receiver. A node admits a neighbour only on a hello whose Echo is a valid
// cookie for the address it came from (see COOKIE).
type Hello struct {
	SID    identity.SID
	To     identity.SID // the neighbour it is sent to; zero on first contact and broadcast
	Epoch  uint32       // random per node start: the incarnation of its links
	Seq    uint64       // strictly increasing per node
	MTU    uint16       // largest frame the sender accepts
	Flags  byte         // FlagBroadcast when sent as a LAN broadcast
	Cookie Cookie       // made by the sender for the receiver's address
	Echo   Cookie       // the receiver's last cookie for the sender; zero if none
	// Eph is the sender's ephemeral X25519 public key for its link to
	// To; zero when To is zero or the sender has no link to it.
	Eph EphKey
	// PeerEph is To's ephemeral key the sender holds (from To's last
	// hello); zero if none. Equal to the receiver's own, it tells the
	// receiver that the sender has the same link key.
	PeerEph EphKey
}

// EphKeyLen is the length of an X25519 public key.
const EphKeyLen = 32

// EphKey is an X25519 public key; the zero key means none.
type EphKey [EphKeyLen]byte

// FlagBroadcast marks a hello sent to a broadcast address.
const FlagBroadcast = 1

// HelloVersion is the version byte of a hello; a hello of another version
// is rejected. Version 3 added Eph and PeerEph (link keys).
const HelloVersion = 3

// CookieLen is the length of an address cookie.
const CookieLen = 16

// Cookie is a MAC over an address under a node's rotating secret.
type Cookie [CookieLen]byte

// HelloLen is the encoded length of a signed hello.
const HelloLen = 3 + 2*identity.SIDLen + 4 + 8 + 2 + 1 + 2*CookieLen + 2*EphKeyLen + identity.SignatureLen

const helloSigned = HelloLen - identity.SignatureLen

// AppendHello appends h signed by id (whose SID must be h.SID).
func AppendHello(b []byte, h Hello, id *identity.Identity) []byte {
	start := len(b)
	b = append(b, Magic, TypeHello, HelloVersion)
	b = append(b, h.SID[:]...)
	b = append(b, h.To[:]...)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint16(b, h.MTU)
	b = append(b, h.Flags)
	b = append(b, h.Cookie[:]...)
	b = append(b, h.Echo[:]...)
	b = append(b, h.Eph[:]...)
	b = append(b, h.PeerEph[:]...)
	return append(b, id.Sign(b[start:])...)
}

// ParseHello decodes a hello without checking its signature: the cookie
// is checked first, which is cheap, and VerifyHello only then.
func ParseHello(b []byte) (Hello, error) {
	var h Hello
	if len(b) != HelloLen || b[0] != Magic || b[1] != TypeHello {
		return h, malformed("hello of %d bytes", len(b))
	}
	if b[2] != HelloVersion {
		return h, malformed("hello version %d", b[2])
	}
	copy(h.SID[:], b[3:])
	copy(h.To[:], b[3+identity.SIDLen:])
	p := 3 + 2*identity.SIDLen
	h.Epoch = binary.BigEndian.Uint32(b[p:])
	h.Seq = binary.BigEndian.Uint64(b[p+4:])
	h.MTU = binary.BigEndian.Uint16(b[p+12:])
	h.Flags = b[p+14]
	copy(h.Cookie[:], b[p+15:])
	copy(h.Echo[:], b[p+15+CookieLen:])
	copy(h.Eph[:], b[p+15+2*CookieLen:])
	copy(h.PeerEph[:], b[p+15+2*CookieLen+EphKeyLen:])
	return h, nil
}

// VerifyHello reports whether the hello b (which ParseHello accepted) is
// signed by the SID it carries.
func VerifyHello(b []byte) bool {
	if len(b) != HelloLen {
		return false
	}
	sid := identity.SID(b[3 : 3+identity.SIDLen])
	return identity.Verify(sid, b[:helloSigned], b[helloSigned:])
}

// TypeCookie is the answer to a hello whose echo was not a valid cookie for
// the address it came from: the receiver's cookie for that address and the
// echo of the hello's own cookie. It is smaller than a hello, unsigned, and
// creates no state at either end.
const TypeCookie byte = 8

// CookieMsgLen is the encoded length of a COOKIE frame.
const CookieMsgLen = 2 + 2*CookieLen

// AppendCookie appends a COOKIE frame.
func AppendCookie(b []byte, cookie, echo Cookie) []byte {
	b = append(b, Magic, TypeCookie)
	b = append(b, cookie[:]...)
	return append(b, echo[:]...)
}

// ParseCookie decodes a COOKIE frame.
func ParseCookie(b []byte) (cookie, echo Cookie, err error) {
	if len(b) != CookieMsgLen || b[0] != Magic || b[1] != TypeCookie {
		return cookie, echo, malformed("cookie of %d bytes", len(b))
	}
	copy(cookie[:], b[2:])
	copy(echo[:], b[2+CookieLen:])
	return cookie, echo, nil
}

// TypeDataBudget is a DATA frame with a deadline: the DATA header, then the
// budget that remains for delivery (BudgetLen bytes, microseconds), then the
// payload. It is a type of its own, not a flag on DATA, so that a node that
// does not know it drops it as an unknown type (unacknowledged: the sender
// gives it up when its budget runs out) rather than misreading the budget
// as payload.
const TypeDataBudget byte = 9

// BudgetLen is the length of a TypeDataBudget frame's budget field.
const BudgetLen = 4

// MaxBudget is the largest budget a frame carries, in microseconds.
const MaxBudget = math.MaxUint32

// DataHeader is the header of a DATA frame: link sequencing for the per-hop
// reliability, then the MDP addressing that travels end to end, then, in a
// TypeDataBudget frame, the budget.
type DataHeader struct {
	Epoch   uint32 // sender's link epoch
	Seq     uint64 // per-link sequence number
	Base    uint64 // sender's lowest sequence number it may still retransmit
	TTL     uint8
	Dst     identity.SID
	Src     identity.SID
	DstPort uint16
	SrcPort uint16
	// Timed makes the frame a TypeDataBudget one, carrying Budget: the
	// microseconds left, when the frame is sent, until it must have been
	// delivered (a duration: clocks are not synchronised).
	Timed  bool
	Budget uint32
}

// DataHeaderLen is the encoded length of a DataHeader (of a DATA frame; a
// TypeDataBudget frame's is BudgetLen more).
const DataHeaderLen = 2 + 4 + 8 + 8 + 1 + 2*identity.SIDLen + 2 + 2

// budgetOffset is the offset of a TypeDataBudget frame's budget.
const budgetOffset = DataHeaderLen

// Len returns the encoded length of h.
func (h *DataHeader) Len() int {
	if h.Timed {
		return DataHeaderLen + BudgetLen
	}
	return DataHeaderLen
}

// AppendData appends a DATA (or, when h.Timed, a TypeDataBudget) frame
// header; the payload follows it.
func AppendData(b []byte, h *DataHeader) []byte {
	typ := TypeData
	if h.Timed {
		typ = TypeDataBudget
	}
	b = append(b, Magic, typ)
	b = binary.BigEndian.AppendUint32(b, h.Epoch)
	b = binary.BigEndian.AppendUint64(b, h.Seq)
	b = binary.BigEndian.AppendUint64(b, h.Base)
	b = append(b, h.TTL)
	b = append(b, h.Dst[:]...)
	b = append(b, h.Src[:]...)
	b = binary.BigEndian.AppendUint16(b, h.DstPort)
	b = binary.BigEndian.AppendUint16(b, h.SrcPort)
	if h.Timed {
		b = binary.BigEndian.AppendUint32(b, h.Budget)
	}
	return b
}

// PutBudget rewrites the budget of an encoded TypeDataBudget frame (a
// relay's, before each transmission).
func PutBudget(frame []byte, budget uint32) {
	binary.BigEndian.PutUint32(frame[budgetOffset:], budget)
}

// PutLinkFields rewrites the per-link fields of an encoded DATA frame, so a
// frame can be queued before it is sequenced and relayed without re-encoding.
func PutLinkFields(frame []byte, epoch uint32, seq, base uint64) {
	binary.BigEndian.PutUint32(frame[2:], epoch)
	binary.BigEndian.PutUint64(frame[6:], seq)
	binary.BigEndian.PutUint64(frame[14:], base)
}

// TTLOffset is the offset of the TTL byte in a DATA frame.
const TTLOffset = 22

// ParseData decodes a DATA or TypeDataBudget frame header and returns the
// payload.
func ParseData(b []byte) (DataHeader, []byte, error) {
	var h DataHeader
	if len(b) < 2 || b[0] != Magic || (b[1] != TypeData && b[1] != TypeDataBudget) {
		return h, nil, malformed("data frame of %d bytes", len(b))
	}
	h.Timed = b[1] == TypeDataBudget
	if len(b) < h.Len() {
		return h, nil, malformed("data frame of %d bytes", len(b))
	}
	h.Epoch = binary.BigEndian.Uint32(b[2:])
	h.Seq = binary.BigEndian.Uint64(b[6:])
	h.Base = binary.BigEndian.Uint64(b[14:])
	h.TTL = b[22]
	copy(h.Dst[:], b[23:])
	copy(h.Src[:], b[23+identity.SIDLen:])
	p := 23 + 2*identity.SIDLen
	h.DstPort = binary.BigEndian.Uint16(b[p:])
	h.SrcPort = binary.BigEndian.Uint16(b[p+2:])
	if h.Base > h.Seq {
		return h, nil, malformed("data base %d above seq %d", h.Base, h.Seq)
	}
	if h.Timed {
		h.Budget = binary.BigEndian.Uint32(b[budgetOffset:])
	}
	return h, b[h.Len():], nil
}

// Range is a half-open range [Start, End) of sequence numbers.
type Range struct{ Start, End uint64 }

// Ack reports the DATA frames of one link epoch that have arrived: every
// sequence number below Cum, plus the listed ranges above it.
type Ack struct {
	Epoch  uint32 // the epoch of the sender being acknowledged
	Cum    uint64
	Ranges []Range // ascending, disjoint, not touching, all above Cum
}

const (
	// MaxAckRanges bounds the ranges in one ACK.
	MaxAckRanges = 255
	// MaxAckLen bounds the encoded length of an ACK: it fits the smallest
	// link MTU.
	MaxAckLen    = 1200
	ackHeaderLen = 15
)

// AppendAck appends an ACK frame. When a.Ranges do not all fit in
// MaxAckLen bytes or MaxAckRanges ranges, the highest ones are written:
// they tell the sender most (what arrived last, so which frames sent
// before are lost); lower ones were listed by earlier ACKs.
func AppendAck(b []byte, a *Ack) []byte {
	r := a.Ranges
	// Choose the lowest range written, k, from the top down: range i > k
	// costs its gap to range i-1 and its length; range k its gap to Cum.
	k, size := len(r), ackHeaderLen
	for i := len(r) - 1; i >= 0 && len(r)-i <= MaxAckRanges; i-- {
		own := uvarintLen(r[i].End - r[i].Start - 1)
		if size+own+uvarintLen(r[i].Start-a.Cum-1) > MaxAckLen {
			break
		}
		k = i
		if i > 0 {
			size += own + uvarintLen(r[i].Start-r[i-1].End-1)
		}
	}
	r = r[k:]
	b = append(b, Magic, TypeAck)
	b = binary.BigEndian.AppendUint32(b, a.Epoch)
	b = binary.BigEndian.AppendUint64(b, a.Cum)
	b = append(b, byte(len(r)))
	prev := a.Cum // the frame at Cum is missing
	for _, x := range r {
		b = binary.AppendUvarint(b, x.Start-prev-1)
		b = binary.AppendUvarint(b, x.End-x.Start-1)
		prev = x.End
	}
	return b
}

func uvarintLen(v uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], v)
}

// ParseAck decodes an ACK frame into a, reusing a.Ranges' storage. Numbers
// must be minimally encoded, so an ACK has one encoding.
func ParseAck(b []byte, a *Ack) error {
	if len(b) < ackHeaderLen || len(b) > MaxAckLen || b[0] != Magic || b[1] != TypeAck {
		return malformed("ack of %d bytes", len(b))
	}
	a.Epoch = binary.BigEndian.Uint32(b[2:])
	a.Cum = binary.BigEndian.Uint64(b[6:])
	n := int(b[14])
	a.Ranges = a.Ranges[:0]
	prev, p := a.Cum, ackHeaderLen
	for i := 0; i < n; i++ {
		gap, k := binary.Uvarint(b[p:])
		if k <= 0 || k != uvarintLen(gap) {
			return malformed("ack range %d: bad gap", i)
		}
		p += k
		l, k := binary.Uvarint(b[p:])
		if k <= 0 || k != uvarintLen(l) {
			return malformed("ack range %d: bad length", i)
		}
		p += k
		// start = prev+1+gap <= 2^64-2 and end = start+l+1 <= 2^64-1.
		if prev >= math.MaxUint64-1 || gap > math.MaxUint64-prev-2 {
			return malformed("ack range %d beyond the sequence space", i)
		}
		start := prev + 1 + gap
		if l > math.MaxUint64-start-1 {
			return malformed("ack range %d beyond the sequence space", i)
		}
		a.Ranges = append(a.Ranges, Range{start, start + l + 1})
		prev = start + l + 1
	}
	if p != len(b) {
		return malformed("ack with %d bytes after %d ranges", len(b)-p, n)
	}
	return nil
}

// ProbeLen is the least length of a PROBE frame.
const ProbeLen = 2 + 4

// AppendProbe appends a PROBE frame with id, zero-padded to size bytes.
func AppendProbe(b []byte, id uint32, size int) []byte {
	start := len(b)
	b = append(b, Magic, TypeProbe)
	b = binary.BigEndian.AppendUint32(b, id)
	for len(b)-start < size {
		b = append(b, 0)
	}
	return b
}

// ParseProbe returns the id and size of a PROBE frame.
func ParseProbe(b []byte) (id uint32, size int, err error) {
	if len(b) < ProbeLen || b[0] != Magic || b[1] != TypeProbe {
		return 0, 0, malformed("probe of %d bytes", len(b))
	}
	return binary.BigEndian.Uint32(b[2:]), len(b), nil
}

// AppendProbeAck appends the answer to a PROBE of the given id and size.
func AppendProbeAck(b []byte, id uint32, size int) []byte {
	b = append(b, Magic, TypeProbeAck)
	b = binary.BigEndian.AppendUint32(b, id)
	return binary.BigEndian.AppendUint32(b, uint32(size))
}

// ParseProbeAck decodes a PROBEACK frame.
func ParseProbeAck(b []byte) (id uint32, size int, err error) {
	if len(b) != 10 || b[0] != Magic || b[1] != TypeProbeAck {
		return 0, 0, malformed("probe ack of %d bytes", len(b))
	}
	return binary.BigEndian.Uint32(b[2:]), int(binary.BigEndian.Uint32(b[6:])), nil
}

// TypeSkip is a frame by which a sender tells its neighbour it gave up
// resending every DATA frame below Base.
const TypeSkip byte = 7

// SkipLen is the encoded length of a SKIP frame.
const SkipLen = 2 + 4 + 8

// AppendSkip appends a SKIP frame.
func AppendSkip(b []byte, epoch uint32, base uint64) []byte {
	b = append(b, Magic, TypeSkip)
	b = binary.BigEndian.AppendUint32(b, epoch)
	return binary.BigEndian.AppendUint64(b, base)
}

// ParseSkip decodes a SKIP frame.
func ParseSkip(b []byte) (epoch uint32, base uint64, err error) {
	if len(b) != SkipLen || b[0] != Magic || b[1] != TypeSkip {
		return 0, 0, malformed("skip of %d bytes", len(b))
	}
	return binary.BigEndian.Uint32(b[2:]), binary.BigEndian.Uint64(b[6:]), nil
}
