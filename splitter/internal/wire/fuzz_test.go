package wire

import (
	"bytes"
	"testing"
)

// FuzzParseFrame checks that no input makes the frame decoder panic, and
// that what it accepts re-encodes to the same bytes.
func FuzzParseFrame(f *testing.F) {
	f.Add(append(AppendData(nil, DataHeader{Block: 1 << 33, Offset: 77, DataLen: 3, Index: 2}, 1), 9))
	f.Add(AppendAck(nil, Ack{Cum: 3, Limit: 9, Flags: AckFin}))
	f.Add(AppendNack(nil, Nack{BitmapLen: 2, Entries: []NackEntry{{Block: 4, Have: []byte{3, 1}}}}))
	f.Add(AppendTail(nil, Tail{Next: 10, EndOffset: 1 << 40, Flags: TailFin}))
	f.Add(AppendPing(nil))
	f.Add(AppendLaneAck(nil, 12345))
	f.Add(AppendClose(nil, CloseFrame{Code: CloseNormal, Reason: "closed"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, n, err := ParseFrame(b, DataHeaderLen+4096)
		if err != nil {
			return
		}
		if n > len(b) || n != HeaderLen+fr.Header.Length {
			t.Fatalf("used %d bytes of %d, header says %d", n, len(b), fr.Header.Length)
		}
		var re []byte
		switch fr.Header.Type {
		case TypeData:
			re = append(AppendData(nil, fr.Data, len(fr.Payload)), fr.Payload...)
		case TypeAck:
			re = AppendAck(nil, fr.Ack)
		case TypeNack:
			re = AppendNack(nil, fr.Nack)
		case TypeTail:
			re = AppendTail(nil, fr.Tail)
		case TypePing:
			re = AppendPing(nil)
		case TypeLaneAck:
			re = AppendLaneAck(nil, fr.LaneAck)
		case TypeClose:
			re = AppendClose(nil, fr.Close)
		}
		if !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:n], re)
		}
	})
}

// FuzzParseHello checks the listener's decoder of the first message.
func FuzzParseHello(f *testing.F) {
	f.Add(AppendHello(nil, Hello{Version: Version, Kind: KindNew, Params: Params{10, 3, 16384}, Window: 51}))
	f.Add(AppendHello(nil, Hello{Version: Version, Kind: KindJoin, Params: Params{0, 0, 512}, Session: 99, Token: [16]byte{1}}))
	f.Add(AppendHello(nil, Hello{Version: 7, Kind: 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := ParseHello(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		if h.Version != Version {
			return
		}
		if re := AppendHello(nil, h); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:n], re)
		}
	})
}

// FuzzParseReply checks the dialler's decoder of the listener's answer.
func FuzzParseReply(f *testing.F) {
	f.Add(AppendReply(nil, Reply{Version: Version, Status: StatusOK, Session: 5, Token: [16]byte{2}, Window: 9}))
	f.Add(AppendReply(nil, Reply{Version: Version, Status: StatusRefused, Code: RefuseFEC, Params: Params{8, 2, 1024}, Reason: "x"}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := ParseReply(b)
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("used %d of %d bytes", n, len(b))
		}
		if re := AppendReply(nil, r); !bytes.Equal(re, b[:n]) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b[:n], re)
		}
	})
}
