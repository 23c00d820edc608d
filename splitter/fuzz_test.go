package splitter

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// fuzzConfig is a small session: FEC 2:1, 512-byte payloads, a 4-block window.
func fuzzConfig() Config {
	c := testConfig()
	c.Conns = 1
	c.DataShards, c.ParityShards = 2, 1
	c.PayloadSize = 512
	c.ReorderWindow = 4 * 2 * 512
	c.ConnWindow = 4096
	c.Linger = 0
	return c
}

// dataFrame is a DATA frame of fuzzConfig's geometry (up to 2 data shards
// of 512 bytes: a block of up to 512 bytes has one).
func dataFrame(block, offset uint64, dlen, index int, fill byte) []byte {
	d := min(max((dlen+511)/512, 1), 2)
	sl := (dlen + d - 1) / d
	b := wire.AppendData(nil, wire.DataHeader{Block: block, Offset: offset, DataLen: dlen, Index: index}, sl)
	for range sl {
		b = append(b, fill)
	}
	return b
}

// FuzzSessionInput feeds arbitrary bytes to a live session as if they came
// from the peer on one of its connections, reads what the session
// delivers, and checks that nothing panics, deadlocks or leaks.
func FuzzSessionInput(f *testing.F) {
	var valid []byte
	valid = append(valid, dataFrame(0, 0, 1000, 0, 'a')...)
	valid = append(valid, dataFrame(0, 0, 1000, 2, 'c')...) // parity: rebuilds shard 1
	valid = append(valid, dataFrame(1, 1000, 7, 1, 'x')...)
	valid = append(valid, wire.AppendTail(nil, wire.Tail{Next: 2, EndOffset: 1007, Flags: wire.TailFin | wire.TailProbe})...)
	valid = append(valid, dataFrame(1, 1000, 7, 0, 'y')...)
	f.Add(valid)
	f.Add(wire.AppendAck(nil, wire.Ack{Cum: 0, Limit: 4}))
	f.Add(wire.AppendNack(nil, wire.Nack{BitmapLen: 1, Entries: []wire.NackEntry{{Block: 0, Have: []byte{1}}}}))
	f.Add(wire.AppendLaneAck(nil, 0))
	f.Add(append(wire.AppendPing(nil), wire.AppendClose(nil, wire.CloseFrame{Code: wire.CloseError, Reason: "x"})...))
	f.Add(dataFrame(5, 0, 1, 0, 'z'))
	f.Fuzz(func(t *testing.T, in []byte) {
		s, z, stop := pipeSession(t)
		defer stop()
		z.SetWriteDeadline(time.Now().Add(time.Second))
		z.Write(in)
		s.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
		buf := make([]byte, 4096)
		for {
			if _, err := s.Read(buf); err != nil {
				break
			}
		}
	})
}

// pipeSession is a listener-side session of fuzzConfig with one lane, an
// in-memory pipe whose far end z the test writes the peer's bytes to
// (what the session sends there is read and dropped). stop ends it all.
func pipeSession(t testing.TB) (s *Conn, z net.Conn, stop func()) {
	s = newConn(fuzzConfig(), false, 1, [16]byte{}, 4)
	a, z := net.Pipe()
	if err := s.addLane(a); err != nil {
		t.Fatal(err)
	}
	s.start()
	drained := make(chan struct{})
	go func() {
		io.Copy(io.Discard, z)
		close(drained)
	}()
	return s, z, func() {
		s.teardown(errClosed, -1, "")
		s.wg.Wait()
		z.Close()
		<-drained
	}
}

// FuzzListenerHandshake sends arbitrary bytes as the first message to a
// Listener; it must answer or hang up, never panic, and stay usable.
func FuzzListenerHandshake(f *testing.F) {
	cfg := fuzzConfig()
	cfg.HandshakeTimeout = 50 * time.Millisecond
	f.Add(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Kind: wire.KindNew, Params: cfg.params(), Window: 4}))
	f.Add(wire.AppendHello(nil, wire.Hello{Version: wire.Version, Kind: wire.KindJoin, Params: cfg.params(), Session: 1}))
	f.Add(wire.AppendHello(nil, wire.Hello{Version: wire.Version + 1, Kind: wire.KindNew}))
	ln, err := Listen("127.0.0.1:0", cfg)
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			s, err := ln.Accept()
			if err != nil {
				return
			}
			s.Close()
		}
	}()
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write(in)
		var buf [512]byte
		n, _ := io.ReadAtLeast(c, buf[:], wire.HelloPrefixLen)
		if n > 0 {
			if _, _, err := wire.ParseReply(buf[:n]); err != nil && n >= wire.HelloPrefixLen+9 {
				t.Fatalf("listener answered something unparseable: %x (%v)", buf[:n], err)
			}
		}
	})
}
