package wire

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/servald/servald/identity"
)

// routeMsgs are routing messages that exercise every field.
func routeMsgs(t testing.TB) []*RouteMsg {
	id := fixedID(t, 3)
	var sig [identity.SignatureLen]byte
	copy(sig[:], id.Sign(SignedOrigin(id.SID(), 42)))
	return []*RouteMsg{
		{},
		{HasIHU: true, IHU: 255},
		{HasIHU: false, IHU: 0},
		{Entries: []RouteEntry{{Origin: id.SID(), Seq: 42, Metric: 0, Hops: 0, MTU: 32768, HasSig: true, Sig: sig}}},
		{HasIHU: true, IHU: 17, Hold: 65535,
			Entries: []RouteEntry{
				{Origin: sidOf(1), Seq: math.MaxUint64, Metric: MetricInfinity, Hops: 255, MTU: 65535},
				{Origin: sidOf(2), Seq: 1, Metric: 512, Hops: 2, MTU: 1232, HasSig: true, Sig: sig},
			},
			Requests: []SeqRequest{{Origin: sidOf(3), Seq: 7, HopsLeft: 32}, {Origin: sidOf(4), Seq: math.MaxUint64, HopsLeft: 0}},
		},
		{Hold: 42, Requests: []SeqRequest{{Origin: sidOf(5), Seq: 1, HopsLeft: 1}}},
		{HasIHU: true, IHU: 255, WantTable: true, Hold: 42,
			Entries: []RouteEntry{{Origin: id.SID(), Seq: 42, MTU: 32768, HasSig: true, Sig: sig}}},
	}
}

func TestRouteMsgRoundTrip(t *testing.T) {
	for i, m := range routeMsgs(t) {
		b := AppendRouteMsg([]byte("prefix"), m)
		if !bytes.Equal(b[:6], []byte("prefix")) {
			t.Fatalf("msg %d: AppendRouteMsg overwrote its prefix", i)
		}
		b = b[6:]
		want := RouteHeaderLen + len(m.Requests)*SeqRequestLen
		for _, e := range m.Entries {
			want += RouteEntryLen
			if e.HasSig {
				want += RouteSigLen
			}
		}
		if len(b) != want {
			t.Errorf("msg %d: %d bytes, want %d", i, len(b), want)
		}
		var got RouteMsg
		if err := ParseRouteMsg(b, &got); err != nil {
			t.Fatalf("msg %d: %v", i, err)
		}
		if len(got.Entries) == 0 {
			got.Entries = nil
		}
		if len(got.Requests) == 0 {
			got.Requests = nil
		}
		if !reflect.DeepEqual(&got, m) {
			t.Errorf("msg %d: round trip\n%+v\nwant\n%+v", i, got, *m)
		}
	}
	// Parsing into a used message replaces what it held.
	m := routeMsgs(t)[4]
	var reuse RouteMsg
	ParseRouteMsg(AppendRouteMsg(nil, m), &reuse)
	if err := ParseRouteMsg(AppendRouteMsg(nil, &RouteMsg{}), &reuse); err != nil || len(reuse.Entries) != 0 || len(reuse.Requests) != 0 || reuse.HasIHU {
		t.Fatalf("reused message after parsing an empty one: %+v, %v", reuse, err)
	}
}

func TestSignedOrigin(t *testing.T) {
	a := SignedOrigin(sidOf(1), 1)
	for _, other := range [][]byte{SignedOrigin(sidOf(2), 1), SignedOrigin(sidOf(1), 2)} {
		if bytes.Equal(a, other) {
			t.Fatal("different origins or sequence numbers sign the same bytes")
		}
	}
	if !bytes.HasPrefix(a, []byte("servald route v1\x00")) || len(a) != 17+identity.SIDLen+8 {
		t.Fatalf("SignedOrigin = %q", a)
	}
}

func TestRouteMsgRejects(t *testing.T) {
	full := AppendRouteMsg(nil, routeMsgs(t)[4])
	header := func(ne uint16, nr byte) []byte {
		b := []byte{RouteVersion, 0, 0}
		b = binary.BigEndian.AppendUint16(b, ne)
		return append(b, nr)
	}
	badFlag := bytes.Clone(full)
	badFlag[RouteHeaderLen+RouteEntryLen-1] = 2 // first entry's has-sig byte
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short header", full[:RouteHeaderLen-1]},
		{"bad version", append([]byte{RouteVersion + 1}, full[1:]...)},
		{"too many entries", header(MaxRouteEntries+1, 0)},
		{"too many requests", header(0, MaxSeqRequests+1)},
		{"entry truncated", header(1, 0)},
		{"signature truncated", full[:RouteHeaderLen+2*RouteEntryLen+RouteSigLen-1]},
		{"request truncated", full[:len(full)-1]},
		{"trailing byte", append(bytes.Clone(full), 0)},
		{"bad signature flag", badFlag},
	} {
		var m RouteMsg
		if err := ParseRouteMsg(tt.b, &m); !isMalformed(err) {
			t.Errorf("%s: err = %v, want ErrMalformed", tt.name, err)
		}
	}
}

func FuzzParseRouteMsg(f *testing.F) {
	for _, m := range routeMsgs(f) {
		f.Add(AppendRouteMsg(nil, m))
	}
	f.Add([]byte{RouteVersion, 0xFF, 0, 0xFF, 0xFF, 0xFF})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m RouteMsg
		err := ParseRouteMsg(b, &m)
		if err != nil {
			if !isMalformed(err) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if len(m.Entries) > MaxRouteEntries || len(m.Requests) > MaxSeqRequests {
			t.Fatalf("accepted %d entries, %d requests", len(m.Entries), len(m.Requests))
		}
		// Only bits 0 and 1 of the flags have a meaning (unknown bits are
		// left for later versions and ignored); everything else re-encodes
		// exactly.
		want := bytes.Clone(b)
		want[1] &= 3
		if again := AppendRouteMsg(nil, &m); !bytes.Equal(again, want) {
			t.Fatalf("route message does not re-encode to its bytes:\n%x\n%x", want, again)
		}
	})
}
