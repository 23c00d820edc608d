package wire

// Data path: lane writer -> Append* -> TCP; TCP -> lane reader -> Parse*.
// docs/PROTOCOL.md (and splitter/doc.go) describe the formats in prose.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Magic opens every handshake message.
const Magic = "SPLT"

// Version is the protocol version spoken by this package (2: a short
// block has fewer shards, derived from its length).
const Version = 2

// Sizes of the fixed parts of messages.
const (
	HelloPrefixLen = 8  // magic, version, kind, body length
	HeaderLen      = 8  // frame header: type, flags, reserved, body length
	DataHeaderLen  = 24 // DATA body prefix before the shard payload
	AckLen         = 20
	TailLen        = 20
	LaneAckLen     = 8
	NackPrefixLen  = 4
	MaxShards      = 256                                            // data + parity shards per block (the shard index is a byte)
	MaxNackEntries = 64                                             // entries in one NACK frame
	MaxReasonLen   = 255                                            // bytes of free text in a REFUSED reply or CLOSE frame
	MaxHelloBody   = 255                                            // largest handshake body accepted
	MaxControlBody = NackPrefixLen + MaxNackEntries*(8+MaxShards/8) // largest non-DATA body
	newBodyLen     = 12
	joinBodyLen    = newBodyLen + 24
	okBodyLen      = 28
	refusedMinLen  = 9
)

// ErrShort reports a message cut short.
var ErrShort = errors.New("wire: message too short")

// Hello kinds.
const (
	KindNew  = 1 // open a new session
	KindJoin = 2 // add a connection to an existing session
)

// Params are the parameters both ends must agree on (besides the version).
// DataShards 0 with ParityShards 0 means FEC off (one shard per block).
type Params struct {
	DataShards   int
	ParityShards int
	PayloadSize  int
}

// Hello is the first message a client sends on a new connection.
type Hello struct {
	Version uint8
	Kind    uint8
	Params  Params
	Window  uint32   // blocks the sender of the hello will accept ahead of what its reader consumed
	Session uint64   // KindJoin only
	Token   [16]byte // KindJoin only
}

// AppendHello appends the encoding of h.
func AppendHello(b []byte, h Hello) []byte {
	bodyLen := newBodyLen
	if h.Kind == KindJoin {
		bodyLen = joinBodyLen
	}
	b = append(b, Magic...)
	b = append(b, h.Version, h.Kind)
	b = binary.BigEndian.AppendUint16(b, uint16(bodyLen))
	b = appendParams(b, h.Params)
	b = binary.BigEndian.AppendUint32(b, h.Window)
	if h.Kind == KindJoin {
		b = binary.BigEndian.AppendUint64(b, h.Session)
		b = append(b, h.Token[:]...)
	}
	return b
}

func appendParams(b []byte, p Params) []byte {
	b = append(b, uint8(p.DataShards), uint8(p.ParityShards), 0, 0)
	return binary.BigEndian.AppendUint32(b, uint32(p.PayloadSize))
}

func parseParams(b []byte) Params {
	return Params{
		DataShards:   int(b[0]),
		ParityShards: int(b[1]),
		PayloadSize:  int(binary.BigEndian.Uint32(b[4:8])),
	}
}

// ParsePrefix parses the 8-byte prefix common to a hello and a reply: it
// checks the magic and returns the version, the kind/status byte and the
// body length that follows.
func ParsePrefix(b []byte) (version, kind uint8, bodyLen int, err error) {
	if len(b) < HelloPrefixLen {
		return 0, 0, 0, ErrShort
	}
	if string(b[:4]) != Magic {
		return 0, 0, 0, errors.New("wire: bad magic (not a splitter peer)")
	}
	bodyLen = int(binary.BigEndian.Uint16(b[6:8]))
	if bodyLen > MaxHelloBody {
		return 0, 0, 0, fmt.Errorf("wire: handshake body of %d bytes exceeds %d", bodyLen, MaxHelloBody)
	}
	return b[4], b[5], bodyLen, nil
}

// ParseHello parses a complete hello (prefix and body) and returns it and
// the number of bytes used. A hello of another version is returned with only
// Version set, so that the caller can refuse it by name.
func ParseHello(b []byte) (Hello, int, error) {
	v, kind, n, err := ParsePrefix(b)
	if err != nil {
		return Hello{}, 0, err
	}
	if len(b) < HelloPrefixLen+n {
		return Hello{}, 0, ErrShort
	}
	h := Hello{Version: v, Kind: kind}
	if v != Version {
		return h, HelloPrefixLen + n, nil
	}
	body := b[HelloPrefixLen : HelloPrefixLen+n]
	switch kind {
	case KindNew:
		if n != newBodyLen {
			return Hello{}, 0, fmt.Errorf("wire: new-session hello body is %d bytes, want %d", n, newBodyLen)
		}
	case KindJoin:
		if n != joinBodyLen {
			return Hello{}, 0, fmt.Errorf("wire: join hello body is %d bytes, want %d", n, joinBodyLen)
		}
		h.Session = binary.BigEndian.Uint64(body[12:20])
		copy(h.Token[:], body[20:36])
	default:
		return Hello{}, 0, fmt.Errorf("wire: unknown hello kind %d", kind)
	}
	if body[2] != 0 || body[3] != 0 {
		return Hello{}, 0, errors.New("wire: reserved hello bytes not zero")
	}
	h.Params = parseParams(body[0:8])
	h.Window = binary.BigEndian.Uint32(body[8:12])
	return h, HelloPrefixLen + n, nil
}

// Reply statuses.
const (
	StatusOK      = 0
	StatusRefused = 1
)

// Refusal codes carried in a REFUSED reply.
const (
	RefuseVersion        = 1 // protocol version differs
	RefuseFEC            = 2 // data:parity shards differ
	RefusePayload        = 3 // payload size differs
	RefuseUnknownSession = 4 // join names a session the server does not have
	RefuseBadToken       = 5 // join token does not match
	RefuseSessionFull    = 6 // session already has its maximum of connections
	RefuseBusy           = 7 // accept backlog full
	RefuseMalformed      = 8 // hello could not be parsed
	RefuseClosing        = 9 // listener is shutting down
)

// Reply is the server's answer to a hello.
type Reply struct {
	Version uint8
	Status  uint8
	// StatusOK:
	Session uint64
	Token   [16]byte
	Window  uint32 // blocks the server will accept ahead of what its reader consumed
	// StatusRefused:
	Code   uint8
	Params Params // the server's own parameters, so the client can name the mismatch
	Reason string
}

// AppendReply appends the encoding of r. The REFUSED body layout is the same
// in every protocol version so that a peer of another version can read it.
func AppendReply(b []byte, r Reply) []byte {
	b = append(b, Magic...)
	b = append(b, r.Version, r.Status)
	if r.Status == StatusOK {
		b = binary.BigEndian.AppendUint16(b, okBodyLen)
		b = binary.BigEndian.AppendUint64(b, r.Session)
		b = append(b, r.Token[:]...)
		return binary.BigEndian.AppendUint32(b, r.Window)
	}
	reason := r.Reason
	if len(reason) > MaxReasonLen-refusedMinLen {
		reason = reason[:MaxReasonLen-refusedMinLen]
	}
	b = binary.BigEndian.AppendUint16(b, uint16(refusedMinLen+len(reason)))
	b = append(b, r.Code)
	b = appendParams(b, r.Params)
	return append(b, reason...)
}

// ParseReply parses a complete reply and returns it and the bytes used.
func ParseReply(b []byte) (Reply, int, error) {
	v, status, n, err := ParsePrefix(b)
	if err != nil {
		return Reply{}, 0, err
	}
	if len(b) < HelloPrefixLen+n {
		return Reply{}, 0, ErrShort
	}
	body := b[HelloPrefixLen : HelloPrefixLen+n]
	r := Reply{Version: v, Status: status}
	switch status {
	case StatusOK:
		if n != okBodyLen {
			return Reply{}, 0, fmt.Errorf("wire: ok reply body is %d bytes, want %d", n, okBodyLen)
		}
		r.Session = binary.BigEndian.Uint64(body[0:8])
		copy(r.Token[:], body[8:24])
		r.Window = binary.BigEndian.Uint32(body[24:28])
	case StatusRefused:
		if n < refusedMinLen {
			return Reply{}, 0, fmt.Errorf("wire: refused reply body is %d bytes, want at least %d", n, refusedMinLen)
		}
		r.Code = body[0]
		if body[3] != 0 || body[4] != 0 {
			return Reply{}, 0, errors.New("wire: reserved reply bytes not zero")
		}
		r.Params = parseParams(body[1:9])
		r.Reason = string(body[9:])
	default:
		return Reply{}, 0, fmt.Errorf("wire: unknown reply status %d", status)
	}
	return r, HelloPrefixLen + n, nil
}

// FrameType identifies a frame on an established connection.
type FrameType uint8

// Frame types.
const (
	TypeData    FrameType = 1 // one shard of a block
	TypeAck     FrameType = 2 // cumulative block ack and window limit
	TypeNack    FrameType = 3 // re-request of shards of incomplete blocks
	TypeTail    FrameType = 4 // sender's next block number (and end of stream); probes for an ACK
	TypePing    FrameType = 5 // liveness probe; elicits a LANEACK
	TypeLaneAck FrameType = 6 // bytes received on this connection
	TypeClose   FrameType = 7 // the session is closed by the sender of this frame
)

func (t FrameType) String() string {
	switch t {
	case TypeData:
		return "DATA"
	case TypeAck:
		return "ACK"
	case TypeNack:
		return "NACK"
	case TypeTail:
		return "TAIL"
	case TypePing:
		return "PING"
	case TypeLaneAck:
		return "LANEACK"
	case TypeClose:
		return "CLOSE"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// AckEliciting reports whether frames of type t count toward the per-
// connection byte acknowledgement (every type except LANEACK and CLOSE).
func (t FrameType) AckEliciting() bool { return t != TypeLaneAck && t != TypeClose }

// Header is the fixed 8-byte frame header.
type Header struct {
	Type   FrameType
	Length int // bytes of body that follow the header
}

// AppendHeader appends a frame header.
func AppendHeader(b []byte, t FrameType, bodyLen int) []byte {
	b = append(b, byte(t), 0, 0, 0)
	return binary.BigEndian.AppendUint32(b, uint32(bodyLen))
}

// ParseHeader parses a frame header. maxData bounds the body of a DATA
// frame (DataHeaderLen plus the largest shard); other frames are bounded by
// their own formats.
func ParseHeader(b []byte, maxData int) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, ErrShort
	}
	t := FrameType(b[0])
	if b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return Header{}, errors.New("wire: reserved frame header bytes not zero")
	}
	n := binary.BigEndian.Uint32(b[4:8])
	var ok bool
	switch t {
	case TypeData:
		ok = n > DataHeaderLen && uint64(n) <= uint64(maxData)
	case TypeAck:
		ok = n == AckLen
	case TypeNack:
		ok = n >= NackPrefixLen && n <= MaxControlBody
	case TypeTail:
		ok = n == TailLen
	case TypePing:
		ok = n == 0
	case TypeLaneAck:
		ok = n == LaneAckLen
	case TypeClose:
		ok = n >= CloseFixedLen && n <= CloseFixedLen+MaxReasonLen
	default:
		return Header{}, fmt.Errorf("wire: unknown frame type %d", b[0])
	}
	if !ok {
		return Header{}, fmt.Errorf("wire: %v frame with bad length %d", t, n)
	}
	return Header{Type: t, Length: int(n)}, nil
}

// Data flags.
const (
	DataRetransmit = 1 << 0 // shard sent again after a NACK
)

// DataHeader is the part of a DATA body before the shard payload.
type DataHeader struct {
	Block   uint64 // block number, from 0
	Offset  uint64 // stream offset of the block's first byte
	DataLen int    // stream bytes in the block (1 .. DataShards*PayloadSize)
	Index   int    // shard index: 0..D-1 data, D..D+P-1 parity
	Flags   uint8
}

// AppendData appends a DATA frame header and body prefix for a payload of
// payloadLen bytes; the payload itself is written after it.
func AppendData(b []byte, d DataHeader, payloadLen int) []byte {
	b = AppendHeader(b, TypeData, DataHeaderLen+payloadLen)
	b = binary.BigEndian.AppendUint64(b, d.Block)
	b = binary.BigEndian.AppendUint64(b, d.Offset)
	b = binary.BigEndian.AppendUint32(b, uint32(d.DataLen))
	return append(b, uint8(d.Index), d.Flags, 0, 0)
}

// ParseDataHeader parses the DataHeaderLen bytes that open a DATA body.
func ParseDataHeader(b []byte) (DataHeader, error) {
	if len(b) < DataHeaderLen {
		return DataHeader{}, ErrShort
	}
	if b[22] != 0 || b[23] != 0 {
		return DataHeader{}, errors.New("wire: reserved data bytes not zero")
	}
	if b[21]&^DataRetransmit != 0 {
		return DataHeader{}, fmt.Errorf("wire: unknown data flags %#x", b[21])
	}
	d := DataHeader{
		Block:   binary.BigEndian.Uint64(b[0:8]),
		Offset:  binary.BigEndian.Uint64(b[8:16]),
		DataLen: int(binary.BigEndian.Uint32(b[16:20])),
		Index:   int(b[20]),
		Flags:   b[21],
	}
	if d.DataLen == 0 {
		return DataHeader{}, errors.New("wire: data block of length 0")
	}
	if d.Offset > 1<<62 || d.Block > 1<<62 {
		return DataHeader{}, errors.New("wire: data block number or offset out of range")
	}
	return d, nil
}

// Ack flags.
const (
	AckFin = 1 << 0 // the sender of the ACK has seen the end of the stream
)

// Ack acknowledges blocks and opens the window.
type Ack struct {
	Cum   uint64 // every block below Cum is complete at the receiver
	Limit uint64 // the receiver accepts blocks below Limit
	Flags uint8
}

// AppendAck appends an ACK frame.
func AppendAck(b []byte, a Ack) []byte {
	b = AppendHeader(b, TypeAck, AckLen)
	b = binary.BigEndian.AppendUint64(b, a.Cum)
	b = binary.BigEndian.AppendUint64(b, a.Limit)
	return append(b, a.Flags, 0, 0, 0)
}

// ParseAck parses an ACK body.
func ParseAck(b []byte) (Ack, error) {
	if len(b) != AckLen {
		return Ack{}, ErrShort
	}
	a := Ack{
		Cum:   binary.BigEndian.Uint64(b[0:8]),
		Limit: binary.BigEndian.Uint64(b[8:16]),
		Flags: b[16],
	}
	if a.Flags&^AckFin != 0 || b[17] != 0 || b[18] != 0 || b[19] != 0 {
		return Ack{}, errors.New("wire: bad ack flags")
	}
	if a.Limit < a.Cum {
		return Ack{}, errors.New("wire: ack limit below cumulative ack")
	}
	return a, nil
}

// NackEntry asks for more shards of one block.
type NackEntry struct {
	Block uint64
	Have  []byte // bitmap of shards the receiver holds: bit i (LSB first) of byte i/8 = shard i
}

// Nack is a list of re-requests; every bitmap has the same length.
type Nack struct {
	BitmapLen int
	Entries   []NackEntry
}

// BitmapLen returns the bitmap length for a block of shards shards.
func BitmapLen(shards int) int { return (shards + 7) / 8 }

// AppendNack appends a NACK frame. Entries beyond MaxNackEntries are dropped.
func AppendNack(b []byte, n Nack) []byte {
	es := n.Entries
	if len(es) > MaxNackEntries {
		es = es[:MaxNackEntries]
	}
	b = AppendHeader(b, TypeNack, NackPrefixLen+len(es)*(8+n.BitmapLen))
	b = binary.BigEndian.AppendUint16(b, uint16(len(es)))
	b = append(b, uint8(n.BitmapLen), 0)
	for _, e := range es {
		b = binary.BigEndian.AppendUint64(b, e.Block)
		have := e.Have
		for i := 0; i < n.BitmapLen; i++ {
			var x byte
			if i < len(have) {
				x = have[i]
			}
			b = append(b, x)
		}
	}
	return b
}

// ParseNack parses a NACK body. The entries' bitmaps alias b.
func ParseNack(b []byte, entries []NackEntry) (Nack, error) {
	if len(b) < NackPrefixLen {
		return Nack{}, ErrShort
	}
	count := int(binary.BigEndian.Uint16(b[0:2]))
	bl := int(b[2])
	if b[3] != 0 {
		return Nack{}, errors.New("wire: reserved nack byte not zero")
	}
	if count > MaxNackEntries || bl == 0 || bl > MaxShards/8 {
		return Nack{}, fmt.Errorf("wire: nack with %d entries of %d-byte bitmaps", count, bl)
	}
	if len(b) != NackPrefixLen+count*(8+bl) {
		return Nack{}, errors.New("wire: nack length does not match its entries")
	}
	n := Nack{BitmapLen: bl, Entries: entries[:0]}
	p := b[NackPrefixLen:]
	for i := 0; i < count; i++ {
		n.Entries = append(n.Entries, NackEntry{
			Block: binary.BigEndian.Uint64(p[0:8]),
			Have:  p[8 : 8+bl : 8+bl],
		})
		p = p[8+bl:]
	}
	return n, nil
}

// Tail flags.
const (
	TailFin   = 1 << 0 // the stream ends after block Next-1, at byte EndOffset
	TailProbe = 1 << 1 // sent because acks stopped for MaxHold: blocks below Next are overdue
)

// Tail tells the receiver how far the sender has got; it always elicits an ACK.
type Tail struct {
	Next      uint64 // blocks below Next have been sent
	EndOffset uint64 // stream offset after block Next-1
	Flags     uint8
}

// AppendTail appends a TAIL frame.
func AppendTail(b []byte, t Tail) []byte {
	b = AppendHeader(b, TypeTail, TailLen)
	b = binary.BigEndian.AppendUint64(b, t.Next)
	b = binary.BigEndian.AppendUint64(b, t.EndOffset)
	return append(b, t.Flags, 0, 0, 0)
}

// ParseTail parses a TAIL body.
func ParseTail(b []byte) (Tail, error) {
	if len(b) != TailLen {
		return Tail{}, ErrShort
	}
	t := Tail{
		Next:      binary.BigEndian.Uint64(b[0:8]),
		EndOffset: binary.BigEndian.Uint64(b[8:16]),
		Flags:     b[16],
	}
	if t.Flags&^(TailFin|TailProbe) != 0 || b[17] != 0 || b[18] != 0 || b[19] != 0 {
		return Tail{}, errors.New("wire: bad tail flags")
	}
	if t.Next > 1<<62 || t.EndOffset > 1<<62 {
		return Tail{}, errors.New("wire: tail out of range")
	}
	return t, nil
}

// AppendPing appends a PING frame.
func AppendPing(b []byte) []byte { return AppendHeader(b, TypePing, 0) }

// AppendLaneAck appends a LANEACK frame acknowledging n bytes.
func AppendLaneAck(b []byte, n uint64) []byte {
	b = AppendHeader(b, TypeLaneAck, LaneAckLen)
	return binary.BigEndian.AppendUint64(b, n)
}

// ParseLaneAck parses a LANEACK body.
func ParseLaneAck(b []byte) (uint64, error) {
	if len(b) != LaneAckLen {
		return 0, ErrShort
	}
	return binary.BigEndian.Uint64(b), nil
}

// Close codes.
const (
	CloseNormal   = 0 // Close called; the stream ended at block Next, byte EndOffset
	CloseError    = 1 // the session failed (timeout, protocol error)
	CloseBusy     = 2 // the listener could not take the session
	CloseShutdown = 3 // the listener or process is going away
)

// CloseFixedLen is the size of a CLOSE body without its reason.
const CloseFixedLen = 24

// CloseFrame ends a session. With CloseNormal, Next and EndOffset say
// where the sender's stream ended (as a TAIL with TailFin would).
type CloseFrame struct {
	Code      uint8
	Next      uint64
	EndOffset uint64
	Reason    string
}

// AppendClose appends a CLOSE frame.
func AppendClose(b []byte, c CloseFrame) []byte {
	r := c.Reason
	if len(r) > MaxReasonLen {
		r = r[:MaxReasonLen]
	}
	b = AppendHeader(b, TypeClose, CloseFixedLen+len(r))
	b = append(b, c.Code, uint8(len(r)), 0, 0, 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint64(b, c.Next)
	b = binary.BigEndian.AppendUint64(b, c.EndOffset)
	return append(b, r...)
}

// ParseClose parses a CLOSE body.
func ParseClose(b []byte) (CloseFrame, error) {
	if len(b) < CloseFixedLen {
		return CloseFrame{}, ErrShort
	}
	if int(b[1]) != len(b)-CloseFixedLen {
		return CloseFrame{}, errors.New("wire: close reason length mismatch")
	}
	for _, x := range b[2:8] {
		if x != 0 {
			return CloseFrame{}, errors.New("wire: reserved close bytes not zero")
		}
	}
	c := CloseFrame{
		Code:      b[0],
		Next:      binary.BigEndian.Uint64(b[8:16]),
		EndOffset: binary.BigEndian.Uint64(b[16:24]),
		Reason:    string(b[CloseFixedLen:]),
	}
	if c.Next > 1<<62 || c.EndOffset > 1<<62 {
		return CloseFrame{}, errors.New("wire: close out of range")
	}
	return c, nil
}

// Frame is any parsed frame; it is used by ParseFrame, which tests and fuzzers use
// to check a whole frame at once. Payload aliases the input.
type Frame struct {
	Header  Header
	Data    DataHeader
	Payload []byte
	Ack     Ack
	Nack    Nack
	Tail    Tail
	LaneAck uint64
	Close   CloseFrame
}

// ParseFrame parses one complete frame from b and returns it and the bytes used.
func ParseFrame(b []byte, maxData int) (Frame, int, error) {
	h, err := ParseHeader(b, maxData)
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < HeaderLen+h.Length {
		return Frame{}, 0, ErrShort
	}
	body := b[HeaderLen : HeaderLen+h.Length]
	f := Frame{Header: h}
	switch h.Type {
	case TypeData:
		f.Data, err = ParseDataHeader(body)
		f.Payload = body[DataHeaderLen:]
	case TypeAck:
		f.Ack, err = ParseAck(body)
	case TypeNack:
		f.Nack, err = ParseNack(body, nil)
	case TypeTail:
		f.Tail, err = ParseTail(body)
	case TypeLaneAck:
		f.LaneAck, err = ParseLaneAck(body)
	case TypeClose:
		f.Close, err = ParseClose(body)
	}
	if err != nil {
		return Frame{}, 0, err
	}
	return f, HeaderLen + h.Length, nil
}
