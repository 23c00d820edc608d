package memnet

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

const benchSize = 1400

// BenchmarkThroughput pushes 1400-byte datagrams from one endpoint to
// another through a link with the given behaviour, as fast as a reader
// drains them. The sender keeps at most `window` datagrams unread (like a
// transport's window), so nothing overflows the receive queue and every
// datagram is carried. Bytes/s and dgrams/s are payload delivered. The last
// case is kernel UDP over 127.0.0.1 in the same run, as a baseline; its
// window is small because the socket buffer is.
func BenchmarkThroughput(b *testing.B) {
	cases := []struct {
		name string
		cfg  LinkConfig
	}{
		{"perfect", LinkConfig{}},
		{"delay=1ms", LinkConfig{Delay: time.Millisecond}},
		{"delay=10ms", LinkConfig{Delay: 10 * time.Millisecond}},
		{"delay=1ms,jitter=1ms,reorder=1%", LinkConfig{Delay: time.Millisecond, Jitter: time.Millisecond, Reorder: 0.01}},
		{"delay=1ms,bw=1GB/s", LinkConfig{Delay: time.Millisecond, Bandwidth: 1 << 30, QueueBytes: 16 << 20}},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			nw := New(1)
			defer nw.Close()
			src, dst := nw.Listen(), nw.Listen()
			nw.SetLink(src.LocalAddr(), dst.LocalAddr(), bc.cfg)
			benchPair(b, src, dst, DefaultRecvPackets)
			s := nw.LinkStats(src.LocalAddr(), dst.LocalAddr())
			if s.Delivered != s.Sent || s.Overflow+s.QueueDropped+s.InFlightDropped != 0 {
				b.Errorf("drops inside the network: %+v", s)
			}
		})
	}
	b.Run("perfect,window=32", func(b *testing.B) {
		nw := New(1)
		defer nw.Close()
		benchPair(b, nw.Listen(), nw.Listen(), 32)
	})
	b.Run("udp-loopback,window=32", func(b *testing.B) {
		src, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			b.Skip(err)
		}
		dst, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			src.Close()
			b.Skip(err)
		}
		defer src.Close()
		defer dst.Close()
		benchPair(b, src, dst, 32)
	})
}

// benchPair runs the timed loop of BenchmarkThroughput from src to dst and
// closes dst at the end.
func benchPair(b *testing.B, src, dst net.PacketConn, window int) {
	credits := make(chan struct{}, window)
	for range window {
		credits <- struct{}{}
	}
	var read atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for i := 0; ; i++ {
			// A lost datagram (kernel UDP can drop) would stall the sender;
			// the deadline turns that into an error instead.
			if i%1024 == 0 {
				dst.SetReadDeadline(time.Now().Add(5 * time.Second))
			}
			if _, _, err := dst.ReadFrom(buf); err != nil {
				if !errors.Is(err, net.ErrClosed) {
					b.Error(err)
				}
				return
			}
			read.Add(1)
			credits <- struct{}{}
		}
	}()
	msg := make([]byte, benchSize)
	to := dst.LocalAddr()
	var sent int64
	b.SetBytes(benchSize)
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		select {
		case <-credits:
		case <-done:
			b.Fatal("reader stopped")
		}
		if _, err := src.WriteTo(msg, to); err != nil {
			b.Fatal(err)
		}
		sent++
	}
	// Wait until the reader has everything, so the time covers delivery.
	// (Polling is fine here: it adds at most 100µs to a run of seconds.)
	for read.Load() < sent {
		select {
		case <-done:
			b.Fatalf("reader stopped after %d of %d", read.Load(), sent)
		default:
		}
		time.Sleep(100 * time.Microsecond)
	}
	el := time.Since(start)
	b.StopTimer()
	dst.Close()
	<-done
	b.ReportMetric(float64(read.Load())/el.Seconds(), "dgrams/s")
}
