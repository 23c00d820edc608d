package splitter

import (
	"io"
	"slices"
	"testing"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/servald/servald/splitter/internal/wire"
)

// TestGeometry: a full block has D+P shards; a shorter one as many data
// shards as it fills and parity in proportion, at least one of each.
func TestGeometry(t *testing.T) {
	const ps = 16384
	tests := []struct {
		fec        [2]int
		dlen, d, p int
	}{
		{[2]int{10, 3}, 0, 1, 1},
		{[2]int{10, 3}, 64, 1, 1},
		{[2]int{10, 3}, ps, 1, 1},
		{[2]int{10, 3}, ps + 1, 2, 1},
		{[2]int{10, 3}, 4 * ps, 4, 2},
		{[2]int{10, 3}, 9*ps + 1, 10, 3},
		{[2]int{10, 3}, 10 * ps, 10, 3},
		{[2]int{2, 1}, 1, 1, 1},
		{[2]int{2, 1}, 2 * ps, 2, 1},
		{[2]int{8, 8}, 64, 1, 1},
		{[2]int{8, 8}, 3 * ps, 3, 3},
		{[2]int{0, 0}, 64, 1, 0},
		{[2]int{0, 0}, ps, 1, 0},
	}
	for _, tt := range tests {
		cfg := testConfig()
		cfg.DataShards, cfg.ParityShards, cfg.PayloadSize = tt.fec[0], tt.fec[1], ps
		s := newConn(cfg, false, 1, [16]byte{}, 4)
		if d, p := s.geometry(tt.dlen); d != tt.d || p != tt.p {
			t.Errorf("fec %d:%d, %d bytes: %d:%d shards, want %d:%d", tt.fec[0], tt.fec[1], tt.dlen, d, p, tt.d, tt.p)
		}
	}
}

// TestShortWriteShards: with FEC 10:3 over 8 connections a 64-byte write
// is one block of one data and one parity shard, not thirteen frames.
func TestShortWriteShards(t *testing.T) {
	cfg := testConfig()
	cfg.Conns = 8
	ln := listen(t, cfg)
	c, s := pair(t, ln, ln.Addr().String(), cfg)
	waitLive(t, c, cfg.Conns)
	msg := make([]byte, 64)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(s, msg); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // any further shard would be out by now
	// The parity shard is not sent at all when the ACK of the block comes
	// back before a second connection takes it.
	if st := c.Stats(); st.BlocksSent != 1 || st.ShardsSent < 1 || st.ShardsSent > 2 {
		t.Fatalf("64-byte write: %d blocks, %d shards sent; want 1 block of 1 data and 1 parity shard", st.BlocksSent, st.ShardsSent)
	}
}

// TestShortBlockRebuiltFromParity: a short block whose data shard never
// arrives is rebuilt from its one parity shard.
func TestShortBlockRebuiltFromParity(t *testing.T) {
	s, z, stop := pipeSession(t)
	defer stop()
	data := []byte("a short write")
	if d, p := s.geometry(len(data)); d != 1 || p != 1 {
		t.Fatalf("geometry %d:%d, want 1:1", d, p)
	}
	enc, err := reedsolomon.New(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	shards := [][]byte{slices.Clone(data), make([]byte, len(data))}
	if err := enc.Encode(shards); err != nil {
		t.Fatal(err)
	}
	in := wire.AppendData(nil, wire.DataHeader{Block: 0, Offset: 0, DataLen: len(data), Index: 1}, len(data))
	in = append(in, shards[1]...)
	in = append(in, wire.AppendTail(nil, wire.Tail{Next: 1, EndOffset: uint64(len(data)), Flags: wire.TailFin})...)
	z.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := z.Write(in); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(s)
	if err != nil || string(got) != string(data) {
		t.Fatalf("read %q, %v; want %q", got, err, data)
	}
	if st := s.Stats(); st.BlocksRebuilt != 1 {
		t.Errorf("blocks rebuilt = %d, want 1", st.BlocksRebuilt)
	}
}

// TestShortWritesThroughStall: small request-sized writes keep flowing
// when one of 8 connections stalls silently: each short block's data and
// parity go on two different connections, so a block held on the stalled
// one is rebuilt from the other at once, well within the hold time.
func TestShortWritesThroughStall(t *testing.T) {
	cfg := testConfig()
	cfg.Conns = 8
	cfg.MaxHold = 200 * time.Millisecond
	cfg.StallTimeout = 3 * time.Second
	ln := listen(t, cfg)
	r := newRelay(t, ln.Addr().String(), 0)
	c, s := pair(t, ln, r.Addr(), cfg)
	waitLive(t, c, cfg.Conns)
	go io.Copy(s, s) // echo

	echo := func() time.Duration {
		t.Helper()
		msg := make([]byte, 64)
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, msg); err != nil {
			t.Fatal(err)
		}
		return time.Since(start)
	}
	for range 50 {
		echo()
	}
	r.stallConn(r.live()[0])
	stallAt := time.Now()
	var worst time.Duration
	n := 0
	for time.Since(stallAt) < time.Second {
		worst = max(worst, echo())
		n++
	}
	cs, ss := c.Stats(), s.Stats()
	t.Logf("%d echoes in the second after the stall, the slowest %v; client rebuilt %d blocks, server %d",
		n, worst, cs.BlocksRebuilt, ss.BlocksRebuilt)
	if cs.BlocksRebuilt+ss.BlocksRebuilt == 0 {
		t.Fatal("no block was rebuilt: the stalled connection carried no shard, so nothing was tested")
	}
	if worst >= cfg.MaxHold {
		t.Errorf("slowest echo after the stall %v, want < MaxHold %v", worst, cfg.MaxHold)
	}
}
