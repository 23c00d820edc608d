package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"testing"

	"github.com/servald/servald/identity"
)

// fixedID returns a deterministic identity, so fuzz corpora stay valid.
func fixedID(t testing.TB, b byte) *identity.Identity {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{b}, identity.SeedLen))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func sidOf(b byte) identity.SID {
	var s identity.SID
	for i := range s {
		s[i] = b + byte(i)
	}
	return s
}

// isMalformed reports whether err is a decoding error that wraps ErrMalformed.
func isMalformed(err error) bool { return errors.Is(err, ErrMalformed) }

func TestType(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want byte
		ok   bool
	}{
		{"empty", nil, 0, false},
		{"magic only", []byte{Magic}, 0, false},
		{"bad magic", []byte{0xD4, TypeHello}, 0, false},
		{"hello", []byte{Magic, TypeHello}, TypeHello, true},
		{"data with body", []byte{Magic, TypeData, 1, 2, 3}, TypeData, true},
		{"unknown type passes through", []byte{Magic, 0xEE}, 0xEE, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Type(tt.in)
			if tt.ok {
				if err != nil || got != tt.want {
					t.Fatalf("Type = %d, %v; want %d", got, err, tt.want)
				}
				return
			}
			if !isMalformed(err) {
				t.Fatalf("Type err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestHelloRoundTrip(t *testing.T) {
	id := fixedID(t, 1)
	for _, h := range []Hello{
		{SID: id.SID()},
		{SID: id.SID(), Epoch: 1, Seq: 2, MTU: 1232},
		{SID: id.SID(), Epoch: math.MaxUint32, Seq: math.MaxUint64, MTU: math.MaxUint16, Flags: FlagBroadcast},
		{SID: id.SID(), To: sidOf(2), Seq: 5, Eph: EphKey{1, 2, 31: 3}, PeerEph: EphKey{4, 31: 5}},
	} {
		prefix := []byte("prefix")
		b := AppendHello(append([]byte(nil), prefix...), h, id)
		if !bytes.Equal(b[:len(prefix)], prefix) {
			t.Fatal("AppendHello overwrote what was before it")
		}
		frame := b[len(prefix):]
		if len(frame) != HelloLen {
			t.Fatalf("hello is %d bytes, want %d", len(frame), HelloLen)
		}
		if typ, err := Type(frame); err != nil || typ != TypeHello {
			t.Fatalf("Type = %d, %v", typ, err)
		}
		got, err := ParseHello(frame)
		if err != nil {
			t.Fatalf("ParseHello(%+v): %v", h, err)
		}
		if got != h {
			t.Fatalf("round trip: got %+v, want %+v", got, h)
		}
	}
}

func TestHelloSignature(t *testing.T) {
	id, other := fixedID(t, 1), fixedID(t, 2)
	h := Hello{SID: id.SID(), Epoch: 7, Seq: 1000, MTU: 1400, Cookie: Cookie{1, 2}, Echo: Cookie{3, 4}, Eph: EphKey{5}, PeerEph: EphKey{6}}
	good := AppendHello(nil, h, id)
	if !VerifyHello(good) {
		t.Fatal("a genuine hello does not verify")
	}
	mutate := func(f func(b []byte)) []byte {
		b := bytes.Clone(good)
		f(b)
		return b
	}
	const fields = 3 + 2*identity.SIDLen // epoch starts here
	tests := []struct {
		name string
		in   []byte
	}{
		// Someone else's SID, signed with the wrong key.
		{"signed by another key", AppendHello(nil, h, other)},
		{"sid changed", mutate(func(b []byte) { b[3] ^= 1 })},
		{"to changed", mutate(func(b []byte) { b[3+identity.SIDLen] ^= 1 })},
		{"epoch changed", mutate(func(b []byte) { b[fields] ^= 1 })},
		{"seq changed", mutate(func(b []byte) { b[fields+11] ^= 1 })},
		{"mtu changed", mutate(func(b []byte) { b[fields+12] ^= 1 })},
		{"flags changed", mutate(func(b []byte) { b[fields+14] ^= FlagBroadcast })},
		{"cookie changed", mutate(func(b []byte) { b[fields+15] ^= 1 })},
		{"echo changed", mutate(func(b []byte) { b[fields+15+2*CookieLen-1] ^= 1 })},
		{"ephemeral changed", mutate(func(b []byte) { b[fields+15+2*CookieLen] ^= 1 })},
		{"peer ephemeral changed", mutate(func(b []byte) { b[helloSigned-1] ^= 1 })},
		{"signature changed", mutate(func(b []byte) { b[HelloLen-1] ^= 0x80 })},
		{"signature zeroed", mutate(func(b []byte) { clear(b[helloSigned:]) })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHello(tt.in); err != nil {
				t.Fatalf("ParseHello rejects a well-formed hello: %v", err)
			}
			if VerifyHello(tt.in) {
				t.Fatal("forged hello verifies")
			}
		})
	}
}

func TestCookieRoundTrip(t *testing.T) {
	for _, tt := range []struct{ cookie, echo Cookie }{
		{},
		{Cookie{1}, Cookie{2}},
		{Cookie{0xFF, 15: 0xFF}, Cookie{0xAA, 15: 0x55}},
	} {
		b := AppendCookie([]byte("x"), tt.cookie, tt.echo)[1:]
		if len(b) != CookieMsgLen || CookieMsgLen >= HelloLen {
			t.Fatalf("cookie frame is %d bytes, want %d (< hello %d)", len(b), CookieMsgLen, HelloLen)
		}
		c, e, err := ParseCookie(b)
		if err != nil || c != tt.cookie || e != tt.echo {
			t.Fatalf("ParseCookie = %x, %x, %v; want %x, %x", c, e, err, tt.cookie, tt.echo)
		}
	}
	good := AppendCookie(nil, Cookie{1}, Cookie{2})
	for _, in := range [][]byte{nil, good[:2], good[:CookieMsgLen-1], append(bytes.Clone(good), 0), append([]byte{0}, good[1:]...), append([]byte{Magic, TypeHello}, good[2:]...)} {
		if _, _, err := ParseCookie(in); !isMalformed(err) {
			t.Fatalf("ParseCookie(%x): err = %v, want ErrMalformed", in, err)
		}
	}
}

func FuzzParseCookie(f *testing.F) {
	f.Add(AppendCookie(nil, Cookie{1, 2, 3}, Cookie{4, 5, 6}))
	f.Add(AppendCookie(nil, Cookie{}, Cookie{}))
	f.Add([]byte{Magic, TypeCookie})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, e, err := ParseCookie(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if again := AppendCookie(nil, c, e); !bytes.Equal(again, b) {
			t.Fatalf("cookie does not re-encode to its bytes:\n%x\n%x", b, again)
		}
	})
}

func TestHelloRejects(t *testing.T) {
	id := fixedID(t, 1)
	good := AppendHello(nil, Hello{SID: id.SID(), Seq: 9, MTU: 1500}, id)
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only", good[:2]},
		{"truncated by one", good[:HelloLen-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"bad magic", append([]byte{Magic ^ 1}, good[1:]...)},
		{"wrong type", append([]byte{Magic, TypeData}, good[2:]...)},
		{"other version", append([]byte{Magic, TypeHello, HelloVersion + 1}, good[3:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseHello(tt.in); !isMalformed(err) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDataRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		h       DataHeader
		payload []byte
	}{
		{DataHeader{}, nil},
		{DataHeader{Epoch: 1, Seq: 10, Base: 3, TTL: 32, Dst: sidOf(1), Src: sidOf(2), DstPort: 11, SrcPort: 40000}, []byte("hello")},
		{DataHeader{Epoch: math.MaxUint32, Seq: math.MaxUint64, Base: math.MaxUint64, TTL: 255, Dst: sidOf(200), Src: sidOf(100), DstPort: math.MaxUint16, SrcPort: math.MaxUint16}, make([]byte, 1400)},
	} {
		b := append(AppendData(nil, &tt.h), tt.payload...)
		if len(b) != DataHeaderLen+len(tt.payload) {
			t.Fatalf("frame is %d bytes, want %d", len(b), DataHeaderLen+len(tt.payload))
		}
		if b[TTLOffset] != tt.h.TTL {
			t.Fatalf("TTL at offset %d is %d, want %d", TTLOffset, b[TTLOffset], tt.h.TTL)
		}
		h, p, err := ParseData(b)
		if err != nil {
			t.Fatalf("ParseData(%+v): %v", tt.h, err)
		}
		if h != tt.h || !bytes.Equal(p, tt.payload) {
			t.Fatalf("round trip: got %+v %q, want %+v %q", h, p, tt.h, tt.payload)
		}
	}
}

// TestDataBudgetRoundTrip: a TypeDataBudget frame is a DATA header, the
// budget, then the payload; PutBudget and PutLinkFields rewrite it in place.
func TestDataBudgetRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		h       DataHeader
		payload []byte
	}{
		{DataHeader{Timed: true}, nil},
		{DataHeader{Epoch: 1, Seq: 10, Base: 3, TTL: 32, Dst: sidOf(1), Src: sidOf(2), DstPort: 11, SrcPort: 40000, Timed: true, Budget: 100000}, []byte("hello")},
		{DataHeader{Epoch: math.MaxUint32, Seq: math.MaxUint64, Base: math.MaxUint64, TTL: 255, Timed: true, Budget: MaxBudget}, make([]byte, 1400)},
	} {
		b := append(AppendData(nil, &tt.h), tt.payload...)
		if len(b) != DataHeaderLen+BudgetLen+len(tt.payload) || tt.h.Len() != DataHeaderLen+BudgetLen {
			t.Fatalf("frame is %d bytes (Len %d), want %d", len(b), tt.h.Len(), DataHeaderLen+BudgetLen+len(tt.payload))
		}
		if typ, _ := Type(b); typ != TypeDataBudget {
			t.Fatalf("type %d, want %d", typ, TypeDataBudget)
		}
		h, p, err := ParseData(b)
		if err != nil {
			t.Fatalf("ParseData(%+v): %v", tt.h, err)
		}
		if h != tt.h || !bytes.Equal(p, tt.payload) {
			t.Fatalf("round trip: got %+v %q, want %+v %q", h, p, tt.h, tt.payload)
		}
		PutBudget(b, 1234)
		PutLinkFields(b, 5, 6, 6)
		h, p, err = ParseData(b)
		want := tt.h
		want.Budget, want.Epoch, want.Seq, want.Base = 1234, 5, 6, 6
		if err != nil || h != want || !bytes.Equal(p, tt.payload) {
			t.Fatalf("after PutBudget: %+v %q %v, want %+v", h, p, err, want)
		}
	}
	if _, _, err := ParseData(AppendData(nil, &DataHeader{Timed: true})[:DataHeaderLen+BudgetLen-1]); !isMalformed(err) {
		t.Fatalf("budget cut short: err = %v, want ErrMalformed", err)
	}
}

func TestPutLinkFields(t *testing.T) {
	h := DataHeader{Epoch: 1, Seq: 2, Base: 1, TTL: 9, Dst: sidOf(1), Src: sidOf(2), DstPort: 3, SrcPort: 4}
	b := append(AppendData(nil, &h), "payload"...)
	PutLinkFields(b, 77, 1000, 990)
	got, p, err := ParseData(b)
	if err != nil {
		t.Fatal(err)
	}
	want := h
	want.Epoch, want.Seq, want.Base = 77, 1000, 990
	if got != want || string(p) != "payload" {
		t.Fatalf("after PutLinkFields: %+v %q, want %+v", got, p, want)
	}
}

func TestDataRejects(t *testing.T) {
	good := AppendData(nil, &DataHeader{Epoch: 1, Seq: 5, Base: 5, TTL: 1})
	baseAbove := AppendData(nil, &DataHeader{Epoch: 1, Seq: 5, Base: 6, TTL: 1})
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only", good[:2]},
		{"truncated by one", good[:DataHeaderLen-1]},
		{"bad magic", append([]byte{0}, good[1:]...)},
		{"wrong type", append([]byte{Magic, TypeAck}, good[2:]...)},
		{"base above seq", baseAbove},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := ParseData(tt.in); !isMalformed(err) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func TestAckRoundTrip(t *testing.T) {
	many := make([]Range, MaxAckRanges)
	for i := range many {
		s := uint64(100 + 10*i)
		many[i] = Range{s, s + uint64(1+i%5)}
	}
	tests := []struct {
		name string
		a    Ack
	}{
		{"cumulative only", Ack{Epoch: 3, Cum: 42}},
		{"one range", Ack{Epoch: 3, Cum: 42, Ranges: []Range{{44, 50}}}},
		{"several ranges", Ack{Epoch: 3, Cum: 0, Ranges: []Range{{1, 2}, {3, 4}, {100, 200}}}},
		{"max ranges", Ack{Epoch: math.MaxUint32, Cum: 99, Ranges: many}},
		{"range up to the top", Ack{Cum: math.MaxUint64 - 10, Ranges: []Range{{math.MaxUint64 - 5, math.MaxUint64}}}},
		{"longest range", Ack{Cum: 0, Ranges: []Range{{1, 1 + math.MaxUint32}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := AppendAck(nil, &tt.a)
			if len(b) > MaxAckLen {
				t.Fatalf("ack is %d bytes, more than %d", len(b), MaxAckLen)
			}
			got := Ack{Ranges: []Range{{7, 8}}} // stale storage must be replaced
			if err := ParseAck(b, &got); err != nil {
				t.Fatalf("ParseAck: %v", err)
			}
			if got.Epoch != tt.a.Epoch || got.Cum != tt.a.Cum || len(got.Ranges) != len(tt.a.Ranges) ||
				(len(got.Ranges) > 0 && !reflect.DeepEqual(got.Ranges, tt.a.Ranges)) {
				t.Fatalf("round trip: got %+v, want %+v", got, tt.a)
			}
		})
	}
}

func TestAckTruncatesRanges(t *testing.T) {
	t.Run("count", func(t *testing.T) {
		var a Ack
		for i := 0; i < MaxAckRanges+5; i++ {
			s := uint64(10 + 3*i)
			a.Ranges = append(a.Ranges, Range{s, s + 1})
		}
		var got Ack
		if err := ParseAck(AppendAck(nil, &a), &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Ranges, a.Ranges[5:]) {
			t.Fatalf("got %d ranges, want the highest %d", len(got.Ranges), MaxAckRanges)
		}
	})
	t.Run("length", func(t *testing.T) {
		// Gaps of 2^40 take six bytes each: not all 200 ranges fit.
		a := Ack{Cum: 1}
		for i := range 200 {
			s := uint64(i+1) << 40
			a.Ranges = append(a.Ranges, Range{s, s + 1<<30})
		}
		b := AppendAck(nil, &a)
		if len(b) > MaxAckLen {
			t.Fatalf("ack of %d bytes, more than %d", len(b), MaxAckLen)
		}
		var got Ack
		if err := ParseAck(b, &got); err != nil {
			t.Fatal(err)
		}
		n := len(got.Ranges)
		if n == 0 || n == len(a.Ranges) || !reflect.DeepEqual(got.Ranges, a.Ranges[len(a.Ranges)-n:]) {
			t.Fatalf("got %d ranges, want the highest that fit", n)
		}
		// One more range would not have fitted.
		more := Ack{Cum: a.Cum, Ranges: a.Ranges[len(a.Ranges)-n-1:]}
		if full := len(b) + uvarintLen(a.Ranges[len(a.Ranges)-n-1].Start-a.Cum-1) + 8; full <= MaxAckLen {
			t.Fatalf("stopped at %d bytes with room left (%d ranges of %d)", len(b), n, len(more.Ranges))
		}
	})
}

// rawAck encodes an ACK without AppendAck's help: n as the range count,
// then each number of nums as a varint (gap, length-1, gap, ...).
func rawAck(cum uint64, n int, nums ...uint64) []byte {
	b := []byte{Magic, TypeAck, 0, 0, 0, 1}
	b = binary.BigEndian.AppendUint64(b, cum)
	b = append(b, byte(n))
	for _, v := range nums {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func TestAckRejects(t *testing.T) {
	good := AppendAck(nil, &Ack{Epoch: 1, Cum: 10, Ranges: []Range{{12, 14}}})
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only", good[:2]},
		{"no range count", good[:14]},
		{"truncated range", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"bad magic", append([]byte{0}, good[1:]...)},
		{"wrong type", append([]byte{Magic, TypeSkip}, good[2:]...)},
		// Ranges at or below cum, out of order, overlapping, touching or
		// empty cannot be written: gaps and lengths are relative.
		{"count above the ranges", rawAck(0, 2, 5, 0)},
		{"gap without length", rawAck(0, 1, 5)},
		{"range beyond the sequence space", rawAck(10, 1, math.MaxUint64-11, 0)},
		{"range ending beyond the sequence space", rawAck(10, 1, 0, math.MaxUint64-11)},
		{"range after the top", rawAck(10, 2, 0, math.MaxUint64-13, 0, 0)},
		{"cum at the top", rawAck(math.MaxUint64, 1, 0, 0)},
		{"overlong gap", append(rawAck(10, 1), 0x80, 0x00, 0x00)},
		{"overlong length", append(rawAck(10, 1, 1), 0x81, 0x00)},
		{"varint overflow", append(rawAck(10, 1), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0)},
		{"longer than MaxAckLen", append(rawAck(10, 0), make([]byte, MaxAckLen)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var a Ack
			if err := ParseAck(tt.in, &a); !isMalformed(err) {
				t.Fatalf("err = %v, want ErrMalformed (%+v)", err, a)
			}
		})
	}
}

func TestProbeRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		id       uint32
		size     int
		wantSize int
	}{
		{0, 0, ProbeLen}, // a probe is never shorter than its header
		{1, ProbeLen, ProbeLen},
		{1472, 1472, 1472},
		{math.MaxUint32, 65535, 65535},
	} {
		b := AppendProbe([]byte("x"), tt.id, tt.size)[1:]
		if len(b) != tt.wantSize {
			t.Fatalf("probe(%d, %d) is %d bytes, want %d", tt.id, tt.size, len(b), tt.wantSize)
		}
		id, size, err := ParseProbe(b)
		if err != nil || id != tt.id || size != tt.wantSize {
			t.Fatalf("ParseProbe = %d, %d, %v; want %d, %d", id, size, err, tt.id, tt.wantSize)
		}

		ack := AppendProbeAck(nil, id, size)
		aid, asize, err := ParseProbeAck(ack)
		if err != nil || aid != tt.id || asize != tt.wantSize {
			t.Fatalf("ParseProbeAck = %d, %d, %v; want %d, %d", aid, asize, err, tt.id, tt.wantSize)
		}
	}
}

func TestProbeRejects(t *testing.T) {
	probe := AppendProbe(nil, 5, 100)
	ack := AppendProbeAck(nil, 5, 100)
	tests := []struct {
		name  string
		parse func([]byte) error
		in    []byte
	}{
		{"probe empty", parseProbe, nil},
		{"probe truncated", parseProbe, probe[:ProbeLen-1]},
		{"probe bad magic", parseProbe, append([]byte{0}, probe[1:]...)},
		{"probe wrong type", parseProbe, append([]byte{Magic, TypeProbeAck}, probe[2:]...)},
		{"probe ack empty", parseProbeAck, nil},
		{"probe ack truncated", parseProbeAck, ack[:len(ack)-1]},
		{"probe ack trailing byte", parseProbeAck, append(bytes.Clone(ack), 0)},
		{"probe ack bad magic", parseProbeAck, append([]byte{0}, ack[1:]...)},
		{"probe ack wrong type", parseProbeAck, append([]byte{Magic, TypeProbe}, ack[2:]...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.parse(tt.in); !isMalformed(err) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

func parseProbe(b []byte) error    { _, _, err := ParseProbe(b); return err }
func parseProbeAck(b []byte) error { _, _, err := ParseProbeAck(b); return err }
func parseSkip(b []byte) error     { _, _, err := ParseSkip(b); return err }
func parseData(b []byte) error     { return parseDataTimed(b, false) }
func parseDataB(b []byte) error    { return parseDataTimed(b, true) }

// parseDataTimed is ParseData taking only one of the two types it decodes.
func parseDataTimed(b []byte, timed bool) error {
	h, _, err := ParseData(b)
	if err == nil && h.Timed != timed {
		return errors.New("the other data type")
	}
	return err
}
func parseHelloErr(b []byte) error { _, err := ParseHello(b); return err }
func parseCookie(b []byte) error   { _, _, err := ParseCookie(b); return err }
func parseAckErr(b []byte) error   { var a Ack; return ParseAck(b, &a) }
func parsers() map[byte]func([]byte) error {
	return map[byte]func([]byte) error{
		TypeHello: parseHelloErr, TypeData: parseData, TypeAck: parseAckErr,
		TypeProbe: parseProbe, TypeProbeAck: parseProbeAck, TypeSkip: parseSkip,
		TypeCookie: parseCookie, TypeDataBudget: parseDataB,
	}
}

func TestSkipRoundTrip(t *testing.T) {
	for _, tt := range []struct {
		epoch uint32
		base  uint64
	}{{0, 0}, {1, 2}, {math.MaxUint32, math.MaxUint64}} {
		b := AppendSkip(nil, tt.epoch, tt.base)
		if len(b) != SkipLen {
			t.Fatalf("skip is %d bytes, want %d", len(b), SkipLen)
		}
		e, base, err := ParseSkip(b)
		if err != nil || e != tt.epoch || base != tt.base {
			t.Fatalf("ParseSkip = %d, %d, %v; want %d, %d", e, base, err, tt.epoch, tt.base)
		}
	}
}

func TestSkipRejects(t *testing.T) {
	good := AppendSkip(nil, 1, 2)
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"truncated", good[:SkipLen-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"bad magic", append([]byte{0}, good[1:]...)},
		{"wrong type", append([]byte{Magic, TypeData}, good[2:]...)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := parseSkip(tt.in); !isMalformed(err) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
}

// TestParsersRejectOtherTypes feeds each encoder's output to every other
// decoder: none may accept a frame of another type.
func TestParsersRejectOtherTypes(t *testing.T) {
	id := fixedID(t, 1)
	frames := map[byte][]byte{
		TypeHello:      AppendHello(nil, Hello{SID: id.SID(), Seq: 1}, id),
		TypeData:       AppendData(nil, &DataHeader{Seq: 1}),
		TypeAck:        AppendAck(nil, &Ack{Cum: 1, Ranges: []Range{{3, 4}}}),
		TypeProbe:      AppendProbe(nil, 1, 100),
		TypeProbeAck:   AppendProbeAck(nil, 1, 100),
		TypeSkip:       AppendSkip(nil, 1, 1),
		TypeCookie:     AppendCookie(nil, Cookie{1}, Cookie{2}),
		TypeDataBudget: AppendData(nil, &DataHeader{Seq: 1, Timed: true, Budget: 5}),
	}
	for typ, frame := range frames {
		if got, err := Type(frame); err != nil || got != typ {
			t.Fatalf("Type of a type-%d frame = %d, %v", typ, got, err)
		}
		for ptyp, parse := range parsers() {
			err := parse(frame)
			if ptyp == typ && err != nil {
				t.Errorf("type %d parser rejects its own frame: %v", ptyp, err)
			}
			if ptyp != typ && err == nil {
				t.Errorf("type %d parser accepts a type-%d frame", ptyp, typ)
			}
		}
	}
}

// Fuzz targets. Each is seeded from encoder output; a decoder must not
// panic, and what it accepts must re-encode to the same bytes (or, where
// the format has slack, to a frame that decodes to the same values).

func FuzzType(f *testing.F) {
	id := fixedID(f, 1)
	f.Add([]byte{})
	f.Add([]byte{Magic})
	f.Add(AppendHello(nil, Hello{SID: id.SID(), Seq: 1}, id))
	f.Add(AppendData(nil, &DataHeader{Seq: 1}))
	f.Add(AppendAck(nil, &Ack{Cum: 1, Ranges: []Range{{3, 4}}}))
	f.Add(AppendProbe(nil, 1, 20))
	f.Add(AppendProbeAck(nil, 1, 20))
	f.Add(AppendSkip(nil, 1, 1))
	f.Add(AppendCookie(nil, Cookie{1}, Cookie{2}))
	f.Add(AppendData(nil, &DataHeader{Seq: 1, Timed: true, Budget: 100000}))
	f.Add([]byte{Magic, 6, 1, 2, 3}) // type 6: ROUTE, reserved
	f.Fuzz(func(t *testing.T, b []byte) {
		typ, err := Type(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("Type error does not wrap ErrMalformed: %v", err)
			}
			if len(b) >= 2 && b[0] == Magic {
				t.Fatalf("Type rejects a frame with magic: %v", err)
			}
		} else if len(b) < 2 || b[0] != Magic || typ != b[1] {
			t.Fatalf("Type(%x) = %d", b, typ)
		}
		// Every decoder that accepts b must agree with Type.
		for ptyp, parse := range parsers() {
			if parse(b) == nil && (err != nil || typ != ptyp) {
				t.Fatalf("type %d parser accepts %x, Type says %d, %v", ptyp, b, typ, err)
			}
		}
	})
}

func FuzzParseHello(f *testing.F) {
	id := fixedID(f, 1)
	f.Add(AppendHello(nil, Hello{SID: id.SID(), Epoch: 1, Seq: 2, MTU: 1500}, id))
	f.Add(AppendHello(nil, Hello{SID: id.SID(), Epoch: math.MaxUint32, Seq: math.MaxUint64, MTU: 65535, Flags: FlagBroadcast}, id))
	f.Add(AppendHello(nil, Hello{SID: id.SID()}, fixedID(f, 2))) // bad signature
	f.Add(AppendHello(nil, Hello{SID: id.SID(), Seq: 3, Cookie: Cookie{9}, Echo: Cookie{8}}, id))
	f.Add(AppendHello(nil, Hello{SID: id.SID(), To: sidOf(3), Seq: 4, Eph: EphKey{7}, PeerEph: EphKey{8}}, id))
	f.Add([]byte{Magic, TypeHello})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHello(b)
		if err != nil {
			if h != (Hello{}) {
				t.Fatalf("rejected hello returned %+v", h)
			}
			return
		}
		if len(b) != HelloLen {
			t.Fatalf("accepted a hello of %d bytes", len(b))
		}
		ok := VerifyHello(b)
		if ok != identity.Verify(h.SID, b[:helloSigned], b[helloSigned:]) {
			t.Fatalf("VerifyHello disagrees with the SID decoded: %x", b)
		}
		if ok && h.SID == id.SID() {
			// Ed25519 signatures are deterministic: the same key re-signs
			// to the same bytes.
			if again := AppendHello(nil, h, id); !bytes.Equal(again, b) {
				t.Fatalf("hello does not re-encode to its bytes:\n%x\n%x", b, again)
			}
		}
	})
}

func FuzzParseData(f *testing.F) {
	f.Add(AppendData(nil, &DataHeader{}))
	f.Add(append(AppendData(nil, &DataHeader{Epoch: 1, Seq: 10, Base: 3, TTL: 32, Dst: sidOf(1), Src: sidOf(2), DstPort: 11, SrcPort: 40000}), "payload"...))
	f.Add(AppendData(nil, &DataHeader{Seq: 1, Base: 2}))
	f.Add(append(AppendData(nil, &DataHeader{Epoch: 1, Seq: 10, Base: 3, TTL: 32, Dst: sidOf(1), Src: sidOf(2), DstPort: 11, SrcPort: 40000, Timed: true, Budget: 100000}), "payload"...))
	f.Add(AppendData(nil, &DataHeader{Seq: 7, Base: 7, Timed: true, Budget: MaxBudget}))
	f.Add(AppendData(nil, &DataHeader{Timed: true})[:DataHeaderLen+BudgetLen-1]) // budget cut short
	f.Fuzz(func(t *testing.T, b []byte) {
		h, p, err := ParseData(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if h.Base > h.Seq {
			t.Fatalf("accepted base %d above seq %d", h.Base, h.Seq)
		}
		if again := append(AppendData(nil, &h), p...); !bytes.Equal(again, b) {
			t.Fatalf("data frame does not re-encode to its bytes:\n%x\n%x", b, again)
		}
	})
}

func FuzzParseAck(f *testing.F) {
	f.Add(AppendAck(nil, &Ack{Epoch: 1, Cum: 5}))
	f.Add(AppendAck(nil, &Ack{Epoch: 1, Cum: 5, Ranges: []Range{{7, 9}, {20, 21}}}))
	f.Add(AppendAck(nil, &Ack{Cum: math.MaxUint64 - 10, Ranges: []Range{{math.MaxUint64 - 5, math.MaxUint64}}}))
	f.Add(rawAck(10, 2, 9, 0, 4, 0))
	f.Add(rawAck(10, 1, math.MaxUint64-11, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var a Ack
		if err := ParseAck(b, &a); err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(a.Ranges) > MaxAckRanges {
			t.Fatalf("%d ranges", len(a.Ranges))
		}
		prev := a.Cum
		for _, r := range a.Ranges {
			if r.Start <= prev || r.End <= r.Start {
				t.Fatalf("accepted ranges out of order: cum %d, %+v", a.Cum, a.Ranges)
			}
			prev = r.End
		}
		if again := AppendAck(nil, &a); !bytes.Equal(again, b) {
			t.Fatalf("ack does not re-encode to its bytes:\n%x\n%x", b, again)
		}
	})
}

func FuzzParseProbe(f *testing.F) {
	f.Add(AppendProbe(nil, 0, 0))
	f.Add(AppendProbe(nil, 1472, 1472))
	f.Add([]byte{Magic, TypeProbe, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		id, size, err := ParseProbe(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if size != len(b) || size < ProbeLen {
			t.Fatalf("probe of %d bytes has size %d", len(b), size)
		}
		// The padding is not part of the value: re-encoding gives the
		// same header, the same length, and the same values again.
		again := AppendProbe(nil, id, size)
		if len(again) != len(b) || !bytes.Equal(again[:ProbeLen], b[:ProbeLen]) {
			t.Fatalf("probe does not re-encode:\n%x\n%x", b, again)
		}
		if id2, size2, err := ParseProbe(again); err != nil || id2 != id || size2 != size {
			t.Fatalf("re-encoded probe decodes to %d, %d, %v", id2, size2, err)
		}
	})
}

func FuzzParseProbeAck(f *testing.F) {
	f.Add(AppendProbeAck(nil, 0, 0))
	f.Add(AppendProbeAck(nil, 1472, 1472))
	f.Add(AppendProbeAck(nil, math.MaxUint32, math.MaxUint32))
	f.Fuzz(func(t *testing.T, b []byte) {
		id, size, err := ParseProbeAck(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if size < 0 {
			t.Fatalf("negative size %d", size)
		}
		if again := AppendProbeAck(nil, id, size); !bytes.Equal(again, b) {
			t.Fatalf("probe ack does not re-encode to its bytes:\n%x\n%x", b, again)
		}
	})
}

func FuzzParseSkip(f *testing.F) {
	f.Add(AppendSkip(nil, 0, 0))
	f.Add(AppendSkip(nil, 7, 12345))
	f.Add(AppendSkip(nil, math.MaxUint32, math.MaxUint64))
	f.Fuzz(func(t *testing.T, b []byte) {
		epoch, base, err := ParseSkip(b)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if again := AppendSkip(nil, epoch, base); !bytes.Equal(again, b) {
			t.Fatalf("skip does not re-encode to its bytes:\n%x\n%x", b, again)
		}
	})
}
