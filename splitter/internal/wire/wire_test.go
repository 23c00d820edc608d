package wire

import (
	"bytes"
	"reflect"
	"testing"
)

const testMaxData = DataHeaderLen + 16<<10

func TestHelloRoundTrip(t *testing.T) {
	tests := []Hello{
		{Version: Version, Kind: KindNew, Params: Params{10, 3, 16384}, Window: 51},
		{Version: Version, Kind: KindNew, Params: Params{0, 0, 512}, Window: 2},
		{Version: Version, Kind: KindJoin, Params: Params{255, 1, 1 << 20}, Session: 1<<64 - 1,
			Token: [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
	}
	for _, h := range tests {
		b := AppendHello([]byte("prefix"), h)
		got, n, err := ParseHello(b[6:])
		if err != nil {
			t.Fatalf("ParseHello(%+v): %v", h, err)
		}
		if n != len(b)-6 {
			t.Errorf("used %d of %d bytes", n, len(b)-6)
		}
		if h.Kind == KindNew {
			h.Session, h.Token = 0, [16]byte{}
		} else {
			h.Window = 0
		}
		if !reflect.DeepEqual(got, h) {
			t.Errorf("round trip %+v -> %+v", h, got)
		}
		// Every truncation is rejected.
		for i := range len(b) - 6 {
			if _, _, err := ParseHello(b[6 : 6+i]); err == nil {
				t.Fatalf("ParseHello accepted %d of %d bytes", i, len(b)-6)
			}
		}
	}
}

func TestHelloOtherVersion(t *testing.T) {
	b := AppendHello(nil, Hello{Version: 9, Kind: 77, Params: Params{1, 2, 3}})
	h, _, err := ParseHello(b)
	if err != nil || h.Version != 9 {
		t.Fatalf("ParseHello of version 9 = %+v, %v; want the version reported", h, err)
	}
	b[0] = 'X'
	if _, _, err := ParseHello(b); err == nil {
		t.Error("bad magic accepted")
	}
}

func TestReplyRoundTrip(t *testing.T) {
	tests := []Reply{
		{Version: Version, Status: StatusOK, Session: 42, Token: [16]byte{9}, Window: 7},
		{Version: Version, Status: StatusRefused, Code: RefuseFEC, Params: Params{8, 2, 16384}},
		{Version: 3, Status: StatusRefused, Code: RefuseVersion, Params: Params{10, 3, 512}, Reason: "try v1"},
	}
	for _, r := range tests {
		b := AppendReply(nil, r)
		got, n, err := ParseReply(b)
		if err != nil || n != len(b) {
			t.Fatalf("ParseReply(%+v) = %v, %d of %d", r, err, n, len(b))
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip %+v -> %+v", r, got)
		}
	}
}

func TestFrameRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{0xab}, 1000)
	bm := []byte{0xff, 0x1f}
	tests := []struct {
		name  string
		b     []byte
		check func(Frame) bool
	}{
		{"data beyond 4 GiB", append(AppendData(nil, DataHeader{Block: 1<<40 + 3, Offset: 5<<32 + 7, DataLen: 9999, Index: 12, Flags: DataRetransmit}, len(payload)), payload...),
			func(f Frame) bool {
				return f.Data == DataHeader{Block: 1<<40 + 3, Offset: 5<<32 + 7, DataLen: 9999, Index: 12, Flags: DataRetransmit} && bytes.Equal(f.Payload, payload)
			}},
		{"ack", AppendAck(nil, Ack{Cum: 1 << 33, Limit: 1<<33 + 51, Flags: AckFin}),
			func(f Frame) bool { return f.Ack == Ack{Cum: 1 << 33, Limit: 1<<33 + 51, Flags: AckFin} }},
		{"nack", AppendNack(nil, Nack{BitmapLen: 2, Entries: []NackEntry{{Block: 7, Have: bm}, {Block: 1 << 50, Have: []byte{1}}}}),
			func(f Frame) bool {
				e := f.Nack.Entries
				return f.Nack.BitmapLen == 2 && len(e) == 2 && e[0].Block == 7 && bytes.Equal(e[0].Have, bm) &&
					e[1].Block == 1<<50 && bytes.Equal(e[1].Have, []byte{1, 0})
			}},
		{"tail", AppendTail(nil, Tail{Next: 1 << 35, EndOffset: 1 << 45, Flags: TailFin | TailProbe}),
			func(f Frame) bool {
				return f.Tail == Tail{Next: 1 << 35, EndOffset: 1 << 45, Flags: TailFin | TailProbe}
			}},
		{"ping", AppendPing(nil), func(f Frame) bool { return f.Header.Type == TypePing }},
		{"lane ack", AppendLaneAck(nil, 1<<62), func(f Frame) bool { return f.LaneAck == 1<<62 }},
		{"close", AppendClose(nil, CloseFrame{Code: CloseNormal, Next: 1 << 40, EndOffset: 1 << 50, Reason: "bye"}),
			func(f Frame) bool {
				return f.Close == CloseFrame{Code: CloseNormal, Next: 1 << 40, EndOffset: 1 << 50, Reason: "bye"}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, n, err := ParseFrame(tt.b, testMaxData)
			if err != nil {
				t.Fatal(err)
			}
			if n != len(tt.b) {
				t.Errorf("used %d of %d bytes", n, len(tt.b))
			}
			if !tt.check(f) {
				t.Errorf("parsed %+v", f)
			}
			for i := range len(tt.b) {
				if _, _, err := ParseFrame(tt.b[:i], testMaxData); err == nil {
					t.Fatalf("accepted %d of %d bytes", i, len(tt.b))
				}
			}
		})
	}
}

func TestFrameRejects(t *testing.T) {
	data := AppendData(nil, DataHeader{Block: 1, DataLen: 10, Index: 0}, 20)
	data = append(data, make([]byte, 20)...)
	tests := []struct {
		name string
		b    []byte
		max  int
	}{
		{"unknown type", []byte{99, 0, 0, 0, 0, 0, 0, 0}, testMaxData},
		{"reserved header byte", []byte{byte(TypePing), 1, 0, 0, 0, 0, 0, 0}, testMaxData},
		{"ping with body", []byte{byte(TypePing), 0, 0, 0, 0, 0, 0, 1, 0}, testMaxData},
		{"data too large", data, DataHeaderLen + 10},
		{"ack wrong length", append(AppendHeader(nil, TypeAck, 4), 0, 0, 0, 0), testMaxData},
		{"ack limit below cum", AppendAck(nil, Ack{Cum: 5, Limit: 4}), testMaxData},
		{"ack unknown flag", AppendAck(nil, Ack{Cum: 1, Limit: 4, Flags: 0x80}), testMaxData},
		{"huge nack", AppendHeader(nil, TypeNack, 1<<20), testMaxData},
		{"close reason mismatch", append(AppendHeader(nil, TypeClose, CloseFixedLen+1), append([]byte{0, 5}, make([]byte, CloseFixedLen-1)...)...), testMaxData},
		{"data length zero", append(AppendData(nil, DataHeader{Block: 1, DataLen: 0}, 1), 0), testMaxData},
	}
	for _, tt := range tests {
		if _, _, err := ParseFrame(tt.b, tt.max); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}
