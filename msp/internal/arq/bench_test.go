package arq

import (
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// BenchmarkTransfer measures one-way bulk throughput of two Conns over the
// lossless in-memory path (Output calls the peer's Input directly), with
// 16 KiB packets. The raw-TCP sub-benchmark is loopback TCP in the same run.
func BenchmarkTransfer(b *testing.B) {
	const chunk = 64 << 10
	b.Run("arq-16k", func(b *testing.B) {
		cfg := Config{MaxPacket: 16 << 10}
		pr := newPair(b, cfg, cfg, pathConfig{}, pathConfig{})
		benchStream(b, pr.a, pr.b, chunk)
		s := pr.a.Stats()
		b.ReportMetric(float64(s.PacketsSent)/float64(b.N), "pkts/op")
		b.ReportMetric(float64(s.BytesRetransmitted), "retx-bytes")
		b.ReportMetric(float64(s.PTOs), "PTOs")
		b.ReportMetric(float64(s.PacketsLost), "lost")
	})
	b.Run("tcp-loopback", func(b *testing.B) {
		w, r := tcpPair(b)
		benchStream(b, w, r, chunk)
	})
}

func benchStream(b *testing.B, w io.Writer, r io.Reader, chunk int) {
	buf := make([]byte, chunk)
	done := make(chan error, 1)
	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	total := 0
	go func() {
		rb := make([]byte, 256<<10)
		var err error
		for err == nil {
			var n int
			n, err = r.Read(rb)
			if n > 0 {
				total += n
			}
			if total >= b.N*chunk {
				break
			}
		}
		done <- err
	}()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N*chunk)/time.Since(start).Seconds()/1e6, "MB/s")
}

func tcpPair(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	w, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	r := <-accepted
	if r == nil {
		b.Fatal("accept failed")
	}
	b.Cleanup(func() { w.Close(); r.Close() })
	return w, r
}

// BenchmarkEcho measures the round trip of a 64-byte message echoed by the
// peer, over the lossless in-memory path: p50 and p99 in microseconds.
func BenchmarkEcho(b *testing.B) {
	b.Run("arq", func(b *testing.B) {
		pr := newPair(b, Config{MaxPacket: 16 << 10}, Config{MaxPacket: 16 << 10}, pathConfig{}, pathConfig{})
		benchEcho(b, pr.a, pr.b)
	})
	b.Run("tcp-loopback", func(b *testing.B) {
		w, r := tcpPair(b)
		benchEcho(b, w, r)
	})
}

func benchEcho(b *testing.B, a, e io.ReadWriter) {
	const size = 64
	go func() {
		buf := make([]byte, size)
		for {
			if _, err := io.ReadFull(e, buf); err != nil {
				return
			}
			if _, err := e.Write(buf); err != nil {
				return
			}
		}
	}()
	msg := make([]byte, size)
	in := make([]byte, size)
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := a.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(a, in); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}
