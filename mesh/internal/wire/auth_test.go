package wire

import (
	"bytes"
	"testing"
)

func TestAuthRoundTrip(t *testing.T) {
	for _, frame := range [][]byte{
		AppendSkip(nil, 3, 9),
		AppendAck(nil, &Ack{Epoch: 1, Cum: 5, Ranges: []Range{{7, 9}}}),
		append(AppendData(nil, &DataHeader{Seq: 2, TTL: 3}), "payload"...),
		AppendProbe(nil, 1472, 1472-AuthLen),
		AppendProbeAck(nil, 1, 2),
	} {
		plain := bytes.Clone(frame)
		b := AppendAuthHeader(frame, 0xA1B2C3D4, 1<<40+7)
		covered := len(b)
		b = append(b, bytes.Repeat([]byte{0xEE}, TagLen)...)
		if len(b) != len(plain)+AuthLen {
			t.Fatalf("authenticated frame of %d bytes, want %d", len(b), len(plain)+AuthLen)
		}
		typ, err := Type(b)
		if err != nil || typ != plain[1]|FlagAuth {
			t.Fatalf("Type = %#x, %v; want %#x", typ, err, plain[1]|FlagAuth)
		}
		a, err := ParseAuth(b)
		if err != nil {
			t.Fatal(err)
		}
		if a.KeyID != 0xA1B2C3D4 || a.Counter != 1<<40+7 || len(a.Covered) != covered || !bytes.Equal(a.Tag, bytes.Repeat([]byte{0xEE}, TagLen)) {
			t.Fatalf("ParseAuth = %+v", a)
		}
		if got := Inner(b); !bytes.Equal(got, plain) {
			t.Fatalf("Inner = %x, want %x", got, plain)
		}
	}
}

func TestParseAuthRejects(t *testing.T) {
	good := append(AppendAuthHeader(AppendSkip(nil, 1, 2), 1, 2), make([]byte, TagLen)...)
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"trailer only", append([]byte{Magic, TypeSkip | FlagAuth}, make([]byte, AuthLen-1)...)},
		{"no flag", append([]byte{Magic, TypeSkip}, good[2:]...)},
		{"bad magic", append([]byte{Magic ^ 1}, good[1:]...)},
	} {
		if _, err := ParseAuth(tt.b); !isMalformed(err) {
			t.Errorf("%s: ParseAuth err = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func FuzzParseAuth(f *testing.F) {
	f.Add(append(AppendAuthHeader(AppendSkip(nil, 1, 2), 7, 8), make([]byte, TagLen)...))
	f.Add(append(AppendAuthHeader(append(AppendData(nil, &DataHeader{Seq: 1}), "x"...), 1, 1), make([]byte, TagLen)...))
	f.Add(append(AppendAuthHeader(AppendProbeAck(nil, 1472, 1472), 0xFFFFFFFF, 1<<63), make([]byte, TagLen)...))
	f.Add([]byte{Magic, FlagAuth})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := ParseAuth(b)
		if err != nil {
			return
		}
		if len(a.Covered)+len(a.Tag) != len(b) || len(a.Tag) != TagLen || b[1]&FlagAuth == 0 {
			t.Fatalf("ParseAuth(%x) = %+v", b, a)
		}
		inner := Inner(bytes.Clone(b))
		if len(inner) != len(b)-AuthLen || inner[1]&FlagAuth != 0 {
			t.Fatalf("Inner(%x) = %x", b, inner)
		}
		again := append(AppendAuthHeader(bytes.Clone(inner), a.KeyID, a.Counter), a.Tag...)
		if !bytes.Equal(again, b) {
			t.Fatalf("does not re-encode:\n%x\n%x", b, again)
		}
	})
}
