package splitter

import (
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// sink reads r to the end and reports how many bytes it read.
func sink(r io.Reader) <-chan int64 {
	ch := make(chan int64, 1)
	go func() {
		n, _ := io.Copy(io.Discard, r)
		ch <- n
	}()
	return ch
}

// rawTCP measures the time to move n bytes over one plain loopback TCP
// connection, through relayAddr if it is not empty.
func rawTCP(b *testing.B, n int64, via func(target string) string) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	if via != nil {
		addr = via(addr)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	s := <-accepted
	if s == nil {
		b.Fatal("raw accept failed")
	}
	defer s.Close()
	done := sink(s)
	buf := make([]byte, 256<<10)
	start := time.Now()
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:k]); err != nil {
			b.Fatal(err)
		}
		left -= k
	}
	c.(*net.TCPConn).CloseWrite()
	if got := <-done; got != n {
		b.Fatalf("raw TCP moved %d of %d bytes", got, n)
	}
	return time.Since(start)
}

// splitTransfer moves n bytes from c to s and returns the time taken.
func splitTransfer(b *testing.B, c, s *Conn, n int64) time.Duration {
	b.Helper()
	done := sink(s)
	buf := make([]byte, 256<<10)
	start := time.Now()
	for left := n; left > 0; {
		k := min(left, int64(len(buf)))
		if _, err := c.Write(buf[:k]); err != nil {
			b.Fatal(err)
		}
		left -= k
	}
	c.CloseWrite()
	if got := <-done; got != n {
		b.Fatalf("split moved %d of %d bytes", got, n)
	}
	return time.Since(start)
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / d.Seconds() / 1e6 }

// loopbackCases are the sessions BenchmarkLoopback and BenchmarkEcho
// measure (scripts/bench names them in its table).
var loopbackCases = []struct {
	name        string
	conns, d, p int
}{
	{"conns=8/fec=10:3", 8, 10, 3},
	{"conns=8/fec=0:0", 8, 0, 0},
	{"conns=1/fec=0:0", 1, 0, 0},
}

// BenchmarkLoopback compares the throughput of one splitter session over
// loopback with one plain TCP connection, measured in the same run.
func BenchmarkLoopback(b *testing.B) {
	for _, tc := range loopbackCases {
		b.Run(tc.name, func(b *testing.B) {
			const size = 128 << 20
			cfg := DefaultConfig()
			cfg.Conns, cfg.DataShards, cfg.ParityShards = tc.conns, tc.d, tc.p
			ln := listen(b, cfg)
			b.SetBytes(size)
			b.ReportAllocs()
			var split, raw time.Duration
			for b.Loop() {
				c, s := pair(b, ln, ln.Addr().String(), cfg)
				waitLive(b, c, cfg.Conns)
				split += splitTransfer(b, c, s, size)
				c.Close()
				s.Close()
				raw += rawTCP(b, size, nil)
			}
			n := int64(b.N) * size
			b.ReportMetric(mbps(n, split), "split-MB/s")
			b.ReportMetric(mbps(n, raw), "tcp-MB/s")
			b.ReportMetric(raw.Seconds()/split.Seconds(), "split/tcp")
		})
	}
}

// BenchmarkCapped moves data through a relay that caps every TCP
// connection at 2 MB/s per direction: 8 connections against 1, and a
// plain TCP connection through the same relay.
func BenchmarkCapped(b *testing.B) {
	const rate = 2e6
	for _, fec := range [][2]int{{10, 3}, {0, 0}} {
		b.Run(fmt.Sprintf("fec=%d:%d", fec[0], fec[1]), func(b *testing.B) {
			run := func(conns int, size int64) time.Duration {
				cfg := DefaultConfig()
				cfg.Conns, cfg.DataShards, cfg.ParityShards = conns, fec[0], fec[1]
				ln := listen(b, cfg)
				r := newRelay(b, ln.Addr().String(), rate)
				c, s := pair(b, ln, r.Addr(), cfg)
				waitLive(b, c, conns)
				d := splitTransfer(b, c, s, size)
				st := c.Stats()
				b.Logf("conns=%d: %d bytes in %v (%.2f MB/s), resent %d shards, %d probes",
					conns, size, d, mbps(size, d), st.ShardsResent, st.Probes)
				c.Close()
				s.Close()
				r.Close()
				ln.Close()
				return d
			}
			const size8, size1 = 24 << 20, 3 << 20
			b.SetBytes(size8)
			var d8, d1, draw time.Duration
			for b.Loop() {
				d8 += run(8, size8)
				d1 += run(1, size1)
				draw += rawTCP(b, size1, func(target string) string { return newRelay(b, target, rate).Addr() })
			}
			n := int64(b.N)
			r8, r1, rraw := mbps(n*size8, d8), mbps(n*size1, d1), mbps(n*size1, draw)
			b.ReportMetric(r8, "conns8-MB/s")
			b.ReportMetric(r1, "conns1-MB/s")
			b.ReportMetric(rraw, "tcp-MB/s")
			b.ReportMetric(r8/r1, "8/1")
			b.ReportMetric(r8/rraw, "8/tcp")
		})
	}
}

// echoP50 sends 64-byte messages over c, which an echo returns, and
// returns the median round trip of rounds of them.
func echoP50(b *testing.B, c net.Conn, rounds int) time.Duration {
	b.Helper()
	msg := make([]byte, 64)
	d := make([]time.Duration, rounds)
	for i := range d {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, msg); err != nil {
			b.Fatal(err)
		}
		d[i] = time.Since(start)
	}
	slices.Sort(d)
	return d[len(d)/2]
}

// BenchmarkEcho compares the round trip of a 64-byte message over one
// splitter session with one over plain loopback TCP, measured in the same
// run: what the splitter adds to interactive traffic (ssh, a request).
func BenchmarkEcho(b *testing.B) {
	const rounds = 2000
	for _, tc := range loopbackCases {
		b.Run(tc.name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Conns, cfg.DataShards, cfg.ParityShards = tc.conns, tc.d, tc.p
			ln := listen(b, cfg)
			c, s := pair(b, ln, ln.Addr().String(), cfg)
			waitLive(b, c, cfg.Conns)
			go io.Copy(s, s)
			rl, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer rl.Close()
			go func() {
				rc, err := rl.Accept()
				if err == nil {
					io.Copy(rc, rc)
					rc.Close()
				}
			}()
			raw, err := net.Dial("tcp", rl.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			defer raw.Close()
			var split, tcp []time.Duration
			for b.Loop() {
				split = append(split, echoP50(b, c, rounds))
				tcp = append(tcp, echoP50(b, raw, rounds))
			}
			slices.Sort(split)
			slices.Sort(tcp)
			sp, tp := split[len(split)/2], tcp[len(tcp)/2]
			b.ReportMetric(float64(sp.Nanoseconds())/1e3, "split-p50-us")
			b.ReportMetric(float64(tp.Nanoseconds())/1e3, "tcp-p50-us")
			b.ReportMetric(sp.Seconds()/tp.Seconds(), "split/tcp")
		})
	}
}
