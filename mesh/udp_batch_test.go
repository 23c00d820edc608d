package mesh

import (
	"encoding/binary"
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// refusingConn is a batchConn that writes through bc but refuses (with
// err) every frame whose first byte is bad: it writes the frames before it
// and reports how many, as sendmmsg does.
type refusingConn struct {
	bc      batchConn
	bad     byte
	err     error
	batches int
	runs    int // GSO messages (several frames)
	kernel  int // errors from the socket itself
}

func (r *refusingConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return r.bc.ReadBatch(ms, flags)
}

func (r *refusingConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	r.batches++
	for i := range ms {
		if len(ms[i].Buffers) > 1 {
			r.runs++
		}
		if slices.ContainsFunc(ms[i].Buffers, func(f []byte) bool { return f[0] == r.bad }) {
			if i == 0 {
				return -1, r.err // what a failed first message returns
			}
			n, err := r.bc.WriteBatch(ms[:i], flags)
			if err != nil {
				r.kernel++
				return n, err
			}
			return n, nil // the refusal surfaces on the next call
		}
	}
	n, err := r.bc.WriteBatch(ms, flags)
	if err != nil {
		r.kernel++
	}
	return n, err
}

func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := ListenUDP("127.0.0.1:0", false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// frame returns frame i: its number, then filler up to size bytes.
func testFrame(i, size int) []byte {
	f := make([]byte, size)
	f[0] = 1
	binary.BigEndian.PutUint32(f[1:], uint32(i))
	for j := 5; j < size; j++ {
		f[j] = byte(i + j)
	}
	return f
}

// checkFrame reports frame's number, or -1 if its filler is wrong.
func checkFrame(f []byte) int {
	if len(f) < 5 {
		return -1
	}
	i := int(binary.BigEndian.Uint32(f[1:]))
	for j := 5; j < len(f); j++ {
		if f[j] != byte(i+j) {
			return -1
		}
	}
	return i
}

// TestWriteAll writes 300 frames (every 7th refused by the socket, the
// first of a batch among them) with the batch path and with the fallback,
// and checks each other frame arrives exactly once, in order, and each
// refused one is reported once and counted.
func TestWriteAll(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("batched writes are Linux-only")
	}
	for _, tc := range []struct {
		name         string
		batched, gso bool
		size         func(i int) int
	}{
		{"batch", true, false, func(i int) int { return 100 + i*4 }},
		{"fallback", false, false, func(i int) int { return 100 + i*4 }},
		// Runs of one size, some ended by a shorter frame: GSO messages,
		// the refused frames' runs resent one by one.
		{"gso", true, true, func(i int) int { return 1200 - 300*min(i%11, 1) + i%11 }},
		{"gso-one-size", true, true, func(int) int { return 1300 }},
	} {
		batched, size := tc.batched, tc.size
		t.Run(tc.name, func(t *testing.T) {
			src, dst := loopbackUDP(t), loopbackUDP(t)
			n := &Node{conn: src}
			const count = 300
			b := new(sendBatch)
			var want []int
			for i := range count {
				f := testFrame(i, size(i))
				if i%7 == 0 {
					f[0] = 0xEE
				} else {
					want = append(want, i)
				}
				b.add(f)
			}
			var bc batchConn
			rc := &refusingConn{bc: newBatchConn(src), bad: 0xEE, err: syscall.EMSGSIZE}
			if batched {
				bc = rc
			} else {
				// The fallback writes one frame at a time: refuse the bad
				// ones as the kernel would, through a conn that does.
				n.conn = refusingPacketConn{src, 0xEE}
			}
			var refused []int
			n.writeAll(bc, b, dst.LocalAddr(), tc.gso, func(f []byte, err error) {
				if !errors.Is(err, syscall.EMSGSIZE) {
					t.Errorf("frame refused with %v", err)
				}
				refused = append(refused, int(binary.BigEndian.Uint32(f[1:])))
			})
			if batched && rc.batches >= count/2 {
				t.Errorf("%d frames took %d WriteBatch calls", count, rc.batches)
			}
			if tc.gso != (rc.runs > 0) || n.gsoOff.Load() || rc.kernel > 0 {
				t.Errorf("gso %v: %d GSO messages, %d refused by the socket; GSO turned off: %v", tc.gso, rc.runs, rc.kernel, n.gsoOff.Load())
			}
			if len(refused) != count-len(want) {
				t.Errorf("%d frames reported refused, want %d", len(refused), count-len(want))
			}
			for _, i := range refused {
				if i%7 != 0 {
					t.Errorf("frame %d reported refused", i)
				}
			}
			if got := n.stats.writeErrors.Load(); got != uint64(count-len(want)) {
				t.Errorf("writeErrors %d, want %d", got, count-len(want))
			}
			if got := n.stats.framesOut.Load(); got != uint64(len(want)) {
				t.Errorf("framesOut %d, want %d", got, len(want))
			}
			buf := make([]byte, 4096)
			for _, w := range want {
				dst.SetReadDeadline(time.Now().Add(5 * time.Second))
				k, _, err := dst.ReadFrom(buf)
				if err != nil {
					t.Fatalf("waiting for frame %d: %v", w, err)
				}
				if got := checkFrame(buf[:k]); got != w || k != size(w) {
					t.Fatalf("got frame %d (%d bytes), want %d", got, k, w)
				}
			}
			dst.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if k, _, err := dst.ReadFrom(buf); err == nil {
				t.Fatalf("an extra datagram: frame %d", checkFrame(buf[:k]))
			}
		})
	}
}

// refusingPacketConn refuses with EMSGSIZE the datagrams that start with
// bad.
type refusingPacketConn struct {
	*net.UDPConn
	bad byte
}

func (r refusingPacketConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if b[0] == r.bad {
		return 0, &net.OpError{Op: "write", Err: syscall.EMSGSIZE}
	}
	return r.UDPConn.WriteTo(b, to)
}

// TestReadBatches sends 2000 datagrams of sizes on both sides of the small
// buffer class to readBatches and checks each is handed on exactly once,
// whole, in order, with its sender's address, and that a buffer handed on
// is not written again by later reads (all are checked at the end).
func TestReadBatches(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("batched reads are Linux-only")
	}
	src, dst := loopbackUDP(t), loopbackUDP(t)
	n := &Node{conn: dst, bufs: newBufPool()}
	const count = 2000
	size := func(i int) int {
		if i%5 == 0 {
			return 3000 + i // a large buffer, handed on and replaced
		}
		return 20 + i%1900
	}
	var (
		mu   sync.Mutex
		got  []*[]byte
		from []string
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		n.readBatches(newBatchConn(dst), func(bp *[]byte, a net.Addr) {
			mu.Lock()
			got, from = append(got, bp), append(from, a.String())
			mu.Unlock()
		})
	}()
	for i := range count {
		if _, err := src.WriteTo(testFrame(i, size(i)), dst.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		if i%64 == 0 {
			time.Sleep(time.Millisecond) // let the reader keep up: this tests the batching, not the socket buffer
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		k := len(got)
		mu.Unlock()
		if k >= count || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // an extra datagram would show now
	n.closed.Store(true)
	dst.Close()
	<-done
	if len(got) != count {
		t.Fatalf("%d datagrams handed on, want %d", len(got), count)
	}
	for i, bp := range got {
		if c := checkFrame(*bp); c != i || len(*bp) != size(i) {
			t.Fatalf("datagram %d: got frame %d of %d bytes, want %d bytes", i, c, len(*bp), size(i))
		}
		if from[i] != src.LocalAddr().String() {
			t.Fatalf("datagram %d from %s, want %s", i, from[i], src.LocalAddr())
		}
	}
}
