package arq

// Packet codec. Every packet the Conn hands to Config.Output is built here
// (by the sender goroutine, frame by frame, straight into its one reused
// buffer) and every packet given to Input is decoded here before any state
// is touched. See doc.go for the wire format.

import (
	"encoding/binary"
	"errors"
)

// Version is the first byte of every packet.
const Version = 0x01

// Frame types.
const (
	framePing    = 0x01
	frameAck     = 0x02
	frameMaxData = 0x03
	frameStream  = 0x04
	frameClose   = 0x05
)

// MaxAckRanges bounds the number of packet-number ranges in one ACK frame.
const MaxAckRanges = 128

// maxVarint bounds every number on the wire (offsets, packet numbers), so
// that sums of two never overflow a uint64.
const maxVarint = 1<<62 - 1

// Close codes carried in a CLOSE frame.
const (
	CloseGraceful = 0 // Shutdown: everything written was acknowledged
	CloseAbort    = 1 // Close: the sender stopped; data in flight may be lost
)

var (
	errShort       = errors.New("arq: truncated packet")
	errVersion     = errors.New("arq: unknown packet version")
	errFrame       = errors.New("arq: unknown frame type")
	errDupFrame    = errors.New("arq: frame type repeated in one packet")
	errNoFrames    = errors.New("arq: packet without frames")
	errRange       = errors.New("arq: number out of range")
	errAckRanges   = errors.New("arq: too many ACK ranges")
	errAckBad      = errors.New("arq: ACK range below zero")
	errStreamShort = errors.New("arq: STREAM frame longer than the packet")
)

// AckRange is an inclusive range of packet numbers.
type AckRange struct {
	Smallest, Largest uint64
}

// Packet is one decoded packet. Each frame type appears at most once.
type Packet struct {
	Number uint64 // packet number, never reused by the sender

	Ping bool // PING frame present

	HasAck       bool
	AckDelay     uint64                 // microseconds between receipt of the largest and the ACK
	AckRanges    [MaxAckRanges]AckRange // descending: AckRanges[0].Largest is the largest acknowledged
	NumAckRanges int

	HasMaxData bool
	MaxData    uint64 // absolute stream offset the peer may send up to (exclusive)

	HasStream bool
	Offset    uint64 // stream offset of Data[0]
	Data      []byte // aliases the decoded buffer

	HasClose  bool
	CloseCode uint64
}

// AckEliciting reports whether the packet must be acknowledged.
func (p *Packet) AckEliciting() bool { return p.Ping || p.HasStream || p.HasClose }

// Append encodes p after b. Frames go in the order ACK, MAX_DATA, PING,
// CLOSE, STREAM.
func (p *Packet) Append(b []byte) []byte {
	b = appendHeader(b, p.Number)
	if p.HasAck && p.NumAckRanges > 0 {
		b = append(b, frameAck)
		r := p.AckRanges[:p.NumAckRanges]
		b = binary.AppendUvarint(b, r[0].Largest)
		b = binary.AppendUvarint(b, p.AckDelay)
		b = binary.AppendUvarint(b, uint64(len(r)-1))
		b = binary.AppendUvarint(b, r[0].Largest-r[0].Smallest)
		for i := 1; i < len(r); i++ {
			b = binary.AppendUvarint(b, r[i-1].Smallest-r[i].Largest-2)
			b = binary.AppendUvarint(b, r[i].Largest-r[i].Smallest)
		}
	}
	if p.HasMaxData {
		b = appendMaxData(b, p.MaxData)
	}
	if p.Ping {
		b = append(b, framePing)
	}
	if p.HasClose {
		b = appendClose(b, p.CloseCode)
	}
	if p.HasStream {
		b = appendStreamHeader(b, p.Offset, len(p.Data))
		b = append(b, p.Data...)
	}
	return b
}

func appendHeader(b []byte, pn uint64) []byte {
	b = append(b, Version)
	return binary.AppendUvarint(b, pn)
}

func appendMaxData(b []byte, v uint64) []byte {
	b = append(b, frameMaxData)
	return binary.AppendUvarint(b, v)
}

func appendClose(b []byte, code uint64) []byte {
	b = append(b, frameClose)
	return binary.AppendUvarint(b, code)
}

func appendStreamHeader(b []byte, off uint64, n int) []byte {
	b = append(b, frameStream)
	b = binary.AppendUvarint(b, off)
	return binary.AppendUvarint(b, uint64(n))
}

// appendAckSpans encodes an ACK frame for the spans s[idx[0]], s[idx[1]],
// ... of the ascending, disjoint, non-adjacent half-open spans s; idx is
// strictly descending and not empty. An ACK frame need not list every span
// received: what it lists is acknowledged, what it skips is not reported.
func appendAckSpans(b []byte, s []span, idx []int, delay uint64) []byte {
	top := s[idx[0]]
	b = append(b, frameAck)
	b = binary.AppendUvarint(b, top.hi-1)
	b = binary.AppendUvarint(b, delay)
	b = binary.AppendUvarint(b, uint64(len(idx)-1))
	b = binary.AppendUvarint(b, top.hi-1-top.lo)
	for k := 1; k < len(idx); k++ {
		prev, cur := s[idx[k-1]], s[idx[k]]
		b = binary.AppendUvarint(b, prev.lo-cur.hi-1) // gap
		b = binary.AppendUvarint(b, cur.hi-1-cur.lo)  // length
	}
	return b
}

// uvarintLen is the encoded size of v.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// streamFit returns how many data bytes a STREAM frame at offset off can
// carry in space bytes (header included), at most limit; 0 if none.
func streamFit(off uint64, space, limit int) int {
	h := 1 + uvarintLen(off)
	n := min(space-h-uvarintLen(uint64(max(space, 0))), limit)
	if n <= 0 {
		return 0
	}
	// The length field may be a byte shorter than assumed: use it.
	if n < limit && h+uvarintLen(uint64(n+1))+n+1 <= space {
		n++
	}
	return n
}

// reader is a tiny bounds-checked cursor.
type reader struct {
	b []byte
	i int
}

func (r *reader) uvarint() (uint64, error) {
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		return 0, errShort
	}
	r.i += n
	if v > maxVarint {
		return 0, errRange
	}
	return v, nil
}

// Unmarshal decodes b into p. p.Data aliases b. On error p is unspecified.
func (p *Packet) Unmarshal(b []byte) error {
	*p = Packet{}
	if len(b) < 2 {
		return errShort
	}
	if b[0] != Version {
		return errVersion
	}
	r := reader{b: b, i: 1}
	var err error
	if p.Number, err = r.uvarint(); err != nil {
		return err
	}
	frames := 0
	for r.i < len(b) {
		t := b[r.i]
		r.i++
		frames++
		switch t {
		case framePing:
			if p.Ping {
				return errDupFrame
			}
			p.Ping = true
		case frameAck:
			if p.HasAck {
				return errDupFrame
			}
			if err := p.parseAck(&r); err != nil {
				return err
			}
		case frameMaxData:
			if p.HasMaxData {
				return errDupFrame
			}
			p.HasMaxData = true
			if p.MaxData, err = r.uvarint(); err != nil {
				return err
			}
		case frameStream:
			if p.HasStream {
				return errDupFrame
			}
			p.HasStream = true
			if p.Offset, err = r.uvarint(); err != nil {
				return err
			}
			n, err := r.uvarint()
			if err != nil {
				return err
			}
			if n > uint64(len(b)-r.i) {
				return errStreamShort
			}
			if p.Offset+n > maxVarint {
				return errRange
			}
			p.Data = b[r.i : r.i+int(n)]
			r.i += int(n)
		case frameClose:
			if p.HasClose {
				return errDupFrame
			}
			p.HasClose = true
			if p.CloseCode, err = r.uvarint(); err != nil {
				return err
			}
		default:
			return errFrame
		}
	}
	if frames == 0 {
		return errNoFrames
	}
	return nil
}

func (p *Packet) parseAck(r *reader) error {
	largest, err := r.uvarint()
	if err != nil {
		return err
	}
	if p.AckDelay, err = r.uvarint(); err != nil {
		return err
	}
	extra, err := r.uvarint()
	if err != nil {
		return err
	}
	if extra >= MaxAckRanges {
		return errAckRanges
	}
	length, err := r.uvarint()
	if err != nil {
		return err
	}
	if length > largest {
		return errAckBad
	}
	p.AckRanges[0] = AckRange{Smallest: largest - length, Largest: largest}
	for i := 1; i <= int(extra); i++ {
		gap, err := r.uvarint()
		if err != nil {
			return err
		}
		if length, err = r.uvarint(); err != nil {
			return err
		}
		prev := p.AckRanges[i-1].Smallest
		if prev < gap+2 {
			return errAckBad
		}
		hi := prev - gap - 2
		if length > hi {
			return errAckBad
		}
		p.AckRanges[i] = AckRange{Smallest: hi - length, Largest: hi}
	}
	p.HasAck = true
	p.NumAckRanges = int(extra) + 1
	return nil
}
