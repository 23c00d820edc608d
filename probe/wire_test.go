package probe

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/servald/servald/identity"
)

func sid(b byte) identity.SID {
	var s identity.SID
	for i := range s {
		s[i] = b
	}
	return s
}

func TestEchoRoundTrip(t *testing.T) {
	tests := []Echo{
		{ID: 1, Seq: 1, Data: []byte{}},
		{ID: 0xFFFF, Seq: 0xFFFFFFFF, Data: bytes.Repeat([]byte{7}, MaxData)},
		{Reply: true, Hops: 0, ID: 2, Seq: 3, Data: []byte("abc")},
		{Reply: true, Hops: 4, ID: 2, Seq: 3, Data: []byte{}},
		{Reply: true, Hops: 254, Data: []byte{}},
		{Reply: true, Hops: HopsUnknown, Data: []byte{}},
	}
	for _, e := range tests {
		b := e.Append([]byte("pre"))[3:]
		if len(b) != HeaderLen+len(e.Data) {
			t.Errorf("%+v: %d bytes", e, len(b))
		}
		got, n, err := ParseEcho(b)
		if err != nil || n != len(b) || !reflect.DeepEqual(got, e) {
			t.Errorf("ParseEcho(Append(%+v)) = %+v, %d, %v", e, got, n, err)
		}
	}
	// A hop count past what a byte holds is unknown.
	b := Echo{Reply: true, Hops: 300}.Append(nil)
	if got, _, _ := ParseEcho(b); got.Hops != HopsUnknown {
		t.Errorf("hops 300 decoded as %d", got.Hops)
	}
}

func TestEchoReplyAsLongAsRequest(t *testing.T) {
	q := Echo{ID: 9, Seq: 5, Data: []byte("0123456789")}
	r := q
	r.Reply, r.Hops = true, 3
	if a, b := q.Append(nil), r.Append(nil); len(a) != len(b) {
		t.Fatalf("request %d bytes, reply %d", len(a), len(b))
	}
}

func TestEchoRejects(t *testing.T) {
	good := Echo{ID: 1, Seq: 2, Data: []byte("x")}.Append(nil)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"short header", good[:HeaderLen-1]},
		{"request code set", mod(func(b []byte) []byte { b[1] = 1; return b })},
		{"trace type", mod(func(b []byte) []byte { b[0] = typeTraceRequest; return b })},
		{"unknown type", mod(func(b []byte) []byte { b[0] = 0; return b })},
		{"too much data", append(Echo{}.Append(nil), make([]byte, MaxData+1)...)},
	}
	for _, tt := range tests {
		if got, _, err := ParseEcho(tt.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseEcho = %+v, %v; want ErrMalformed", tt.name, got, err)
		}
	}
}

func TestTraceRequestRoundTrip(t *testing.T) {
	q := TraceRequest{ID: 0xABCD, Seq: 77, Dst: sid(0x4F)}
	b := q.Append(nil)
	if len(b) != TraceRequestLen {
		t.Fatalf("trace request of %d bytes, want %d", len(b), TraceRequestLen)
	}
	got, n, err := ParseTraceRequest(b)
	if err != nil || n != len(b) || got != q {
		t.Fatalf("ParseTraceRequest = %+v, %d, %v", got, n, err)
	}
	for name, in := range map[string][]byte{
		"short":       b[:len(b)-1],
		"long":        append(append([]byte(nil), b...), 0),
		"padding set": append(append([]byte(nil), b[:len(b)-1]...), 1),
		"code set":    append([]byte{typeTraceRequest, 1}, b[2:]...),
		"echo type":   append([]byte{typeEchoRequest}, b[1:]...),
		"empty":       nil,
	} {
		if got, _, err := ParseTraceRequest(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseTraceRequest = %+v, %v; want ErrMalformed", name, got, err)
		}
	}
}

func TestTraceReplyRoundTrip(t *testing.T) {
	tests := []TraceReply{
		{Status: StatusNext, ID: 1, Seq: 2, Hops: 3, Next: sid(1), Addr: "127.0.0.1:4110"},
		{Status: StatusNext, Hops: 255, Next: sid(2)},
		{Status: StatusNext, Hops: 1, Next: sid(2), Addr: "[fe80::1%eth0]:4110"},
		{Status: StatusNext, Hops: 1, Next: sid(2), Addr: strings.Repeat("a", MaxAddr)},
		{Status: StatusDestination, ID: 5, Seq: 6},
		{Status: StatusNoRoute, ID: 5, Seq: 7},
	}
	for _, r := range tests {
		b := r.Append(nil)
		if len(b) > TraceRequestLen {
			t.Errorf("%+v: reply of %d bytes is longer than a request", r, len(b))
		}
		got, n, err := ParseTraceReply(b)
		if err != nil || n != len(b) || got != r {
			t.Errorf("ParseTraceReply(Append(%+v)) = %+v, %d, %v", r, got, n, err)
		}
	}
	// An address a terminal could misread, or too long, is left out.
	for _, addr := range []string{"a\x1b[2Jb", "with space", strings.Repeat("a", MaxAddr+1), "ünï"} {
		got, _, err := ParseTraceReply(TraceReply{Status: StatusNext, Next: sid(1), Addr: addr}.Append(nil))
		if err != nil || got.Addr != "" {
			t.Errorf("address %q: sent as %q (%v)", addr, got.Addr, err)
		}
	}
}

func TestTraceReplyRejects(t *testing.T) {
	good := TraceReply{Status: StatusNext, Hops: 2, Next: sid(1), Addr: "h:1"}.Append(nil)
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"header only", good[:HeaderLen]},
		{"cut address", good[:len(good)-1]},
		{"trailing byte", append(append([]byte(nil), good...), 'x')},
		{"unknown status", mod(func(b []byte) []byte { b[1] = 3; return b })},
		{"request type", mod(func(b []byte) []byte { b[0] = typeTraceRequest; return b })},
		{"next without SID", TraceReply{Status: StatusNext}.Append(nil)},
		{"destination with next", mod(func(b []byte) []byte { b[1] = byte(StatusDestination); return b })},
		{"no route with hops", mod(func(b []byte) []byte {
			b = TraceReply{Status: StatusNoRoute}.Append(nil)
			b[HeaderLen] = 1
			return b
		})},
		{"control byte in address", mod(func(b []byte) []byte { b[len(b)-1] = 0x07; return b })},
		{"space in address", mod(func(b []byte) []byte { b[len(b)-2] = ' '; return b })},
	}
	for _, tt := range tests {
		if got, _, err := ParseTraceReply(tt.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseTraceReply = %+v, %v; want ErrMalformed", tt.name, got, err)
		}
	}
}

func FuzzParseEcho(f *testing.F) {
	f.Add(Echo{ID: 1, Seq: 1, Data: []byte("ping")}.Append(nil))
	f.Add(Echo{Reply: true, Hops: 4, ID: 1, Seq: 2}.Append(nil))
	f.Add(Echo{Reply: true, Hops: HopsUnknown}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, n, err := ParseEcho(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if n != len(b) || len(e.Data) > MaxData {
			t.Fatalf("accepted %d of %d bytes, %d data", n, len(b), len(e.Data))
		}
		if again := e.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("does not re-encode to its bytes: %x vs %x", b, again)
		}
	})
}

func FuzzParseTraceRequest(f *testing.F) {
	f.Add(TraceRequest{ID: 1, Seq: 2, Dst: sid(3)}.Append(nil))
	f.Add(TraceRequest{}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		q, n, err := ParseTraceRequest(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if n != len(b) {
			t.Fatalf("accepted %d of %d bytes", n, len(b))
		}
		if again := q.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("does not re-encode to its bytes: %x vs %x", b, again)
		}
	})
}

func FuzzParseTraceReply(f *testing.F) {
	f.Add(TraceReply{Status: StatusNext, ID: 1, Seq: 2, Hops: 3, Next: sid(4), Addr: "127.0.0.1:4110"}.Append(nil))
	f.Add(TraceReply{Status: StatusNext, Hops: 1, Next: sid(4)}.Append(nil))
	f.Add(TraceReply{Status: StatusDestination}.Append(nil))
	f.Add(TraceReply{Status: StatusNoRoute, Seq: 9}.Append(nil))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseTraceReply(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if n != len(b) || len(b) > TraceRequestLen {
			t.Fatalf("accepted %d of %d bytes (a reply is at most %d)", n, len(b), TraceRequestLen)
		}
		if r.Addr != "" && !ValidAddr(r.Addr) {
			t.Fatalf("accepted address %q", r.Addr)
		}
		if again := r.Append(nil); !bytes.Equal(again, b) {
			t.Fatalf("does not re-encode to its bytes: %x vs %x", b, again)
		}
	})
}
