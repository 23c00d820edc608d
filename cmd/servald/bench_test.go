package main

// Benchmarks of the whole tunnel with two real servald processes on loopback:
//
//	client ─TCP─► connect --forward ─UDP (mesh, msp)─► listen --forward ─TCP─► target
//	client ─TCP─► connect --split --forward ═8 TCP (splitter, msp)═► listen --split --forward ─TCP─► target
//
// beside raw loopback TCP (client ─TCP─► target) measured in the same run.
// The target reads a mode byte first: 'S' sinks everything and answers with
// the byte count once the client half-closes; 'E' echoes.

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

const (
	modeSink = 'S'
	modeEcho = 'E'
	// benchChunk is the size of one throughput write (one op).
	benchChunk = 1 << 20
	// echoSize is the size of one ping.
	echoSize = 64
	// echoWarmup round trips are made before timing starts.
	echoWarmup = 200
)

// benchTarget runs the TCP server at the far end of the tunnel (and of the
// raw TCP baseline).
func benchTarget(b *testing.B) net.Listener {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				var mode [1]byte
				if _, err := io.ReadFull(c, mode[:]); err != nil {
					return
				}
				switch mode[0] {
				case modeSink:
					n, _ := io.Copy(io.Discard, c)
					c.Write(binary.BigEndian.AppendUint64(nil, uint64(n)))
				case modeEcho:
					io.Copy(c, c)
				}
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln
}

// tunnelResults carries the raw TCP figures to the servald sub-benchmark
// measured after them, so that it can report the ratio.
type tunnelResults struct {
	rawMBs, rawP50, rawP99 float64
	relayP50               float64
}

// BenchmarkTunnel measures single-stream throughput and 64-byte echo round
// trips through `msp connect --forward` -> `msp listen --forward`, over
// the mesh (servald) and over split transport with 8 connections and FEC
// 10:3 (servald-split), and raw loopback TCP to the same target in the
// same run. The two servald
// processes are started once for all sub-benchmarks. Metrics: MB/s and
// ratio-vs-raw (servald MB/s / raw MB/s); p50-us, p99-us and
// p50-x-raw / p99-x-raw (servald latency / raw latency). echo/tcp-relay-x2
// is the same echo through two plain TCP relay processes in series (no
// encryption, no mesh): the floor under a two-process tunnel, beside which
// p50-x-relays puts servald.
func BenchmarkTunnel(b *testing.B) {
	target := benchTarget(b)
	tport := strconv.Itoa(target.Addr().(*net.TCPAddr).Port)
	l := startListen(b, nil, nil, "--forward", tport, "5000")
	port := freePort(b)
	start(b, nil, nil, connectArgs(b, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	tunnel := fmt.Sprintf("127.0.0.1:%d", port)
	raw := target.Addr().String()
	// The tunnel's TCP port answers once the session is up; make one full
	// round trip so that the first timed op does not pay for the session.
	c := dialRetry(b, tunnel)
	startEcho(b, c)
	if d := echoRounds(b, c, 1); len(d) != 1 {
		b.Fatal("no warm-up round trip")
	}
	c.Close()
	// The same tunnel over split transport (8 connections, FEC 10:3).
	sl := startSplitListen(b, nil, nil, "--forward", tport, "5000")
	sport := freePort(b)
	start(b, nil, nil, splitConnectArgs(b, sl, "--conns=8", "--fec=10:3", "--forward", strconv.Itoa(sport), sl.sid, "5000")...)
	split := fmt.Sprintf("127.0.0.1:%d", sport)
	c = dialRetry(b, split)
	startEcho(b, c)
	if d := echoRounds(b, c, 1); len(d) != 1 {
		b.Fatal("no warm-up round trip over split")
	}
	c.Close()
	// Two plain TCP relay processes in series: the latency floor of any
	// tunnel made of two processes on this machine.
	relays := startRelay(b, startRelay(b, raw))

	var res tunnelResults
	b.Run("throughput/raw-tcp", func(b *testing.B) {
		res.rawMBs = throughput(b, raw)
	})
	for _, tc := range []struct{ name, addr string }{{"servald", tunnel}, {"servald-split", split}} {
		b.Run("throughput/"+tc.name, func(b *testing.B) {
			mbs := throughput(b, tc.addr)
			if res.rawMBs == 0 { // raw-tcp filtered out: measure it here, untimed
				b.StopTimer()
				res.rawMBs = rawThroughputOnce(b, raw)
				b.StartTimer()
			}
			b.ReportMetric(mbs/res.rawMBs, "ratio-vs-raw")
		})
	}
	b.Run("echo/raw-tcp", func(b *testing.B) {
		res.rawP50, res.rawP99 = echo(b, raw)
	})
	b.Run("echo/tcp-relay-x2", func(b *testing.B) {
		res.relayP50, _ = echo(b, relays)
	})
	for _, tc := range []struct{ name, addr string }{{"servald", tunnel}, {"servald-split", split}} {
		b.Run("echo/"+tc.name, func(b *testing.B) {
			p50, p99 := echo(b, tc.addr)
			if res.rawP50 == 0 {
				b.StopTimer()
				c := dialRetry(b, raw)
				startEcho(b, c)
				d := echoRounds(b, c, 20000)
				c.Close()
				res.rawP50, res.rawP99 = percentile(d, 0.50), percentile(d, 0.99)
				b.StartTimer()
			}
			b.ReportMetric(p50/res.rawP50, "p50-x-raw")
			b.ReportMetric(p99/res.rawP99, "p99-x-raw")
			if res.relayP50 > 0 {
				b.ReportMetric(p50/res.relayP50, "p50-x-relays")
			}
		})
	}
}

// throughput sends b.N chunks over one new connection to addr in sink mode
// and waits until the target has counted them all; it returns MB/s.
func throughput(b *testing.B, addr string) float64 {
	c := dialRetry(b, addr)
	defer c.Close()
	b.SetBytes(benchChunk)
	buf := make([]byte, benchChunk)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	if _, err := c.Write([]byte{modeSink}); err != nil {
		b.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatalf("write %d: %v", i, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	var cnt [8]byte
	if _, err := io.ReadFull(c, cnt[:]); err != nil {
		b.Fatalf("reading the sink's count: %v", err)
	}
	el := time.Since(t0)
	b.StopTimer()
	if got, want := binary.BigEndian.Uint64(cnt[:]), uint64(b.N)*benchChunk; got != want {
		b.Fatalf("sink counted %d bytes, want %d", got, want)
	}
	mbs := float64(b.N) * benchChunk / 1e6 / el.Seconds()
	b.ReportMetric(mbs, "MB/s")
	return mbs
}

// rawThroughputOnce measures raw TCP throughput with a fixed 512 MiB
// transfer (used when the raw-tcp sub-benchmark was filtered out).
func rawThroughputOnce(b *testing.B, addr string) float64 {
	const chunks = 512
	c := dialRetry(b, addr)
	defer c.Close()
	buf := make([]byte, benchChunk)
	c.Write([]byte{modeSink})
	t0 := time.Now()
	for range chunks {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var cnt [8]byte
	if _, err := io.ReadFull(c, cnt[:]); err != nil {
		b.Fatal(err)
	}
	return chunks * benchChunk / 1e6 / time.Since(t0).Seconds()
}

// echo makes b.N timed 64-byte round trips on one new connection to addr
// and returns p50 and p99 in microseconds.
func echo(b *testing.B, addr string) (p50, p99 float64) {
	c := dialRetry(b, addr)
	defer c.Close()
	startEcho(b, c)
	echoRounds(b, c, echoWarmup)
	b.ResetTimer()
	d := echoRounds(b, c, b.N)
	b.StopTimer()
	p50, p99 = percentile(d, 0.50), percentile(d, 0.99)
	b.ReportMetric(p50, "p50-us")
	b.ReportMetric(p99, "p99-us")
	return p50, p99
}

// startEcho puts a new connection to the target in echo mode.
func startEcho(b *testing.B, c net.Conn) {
	b.Helper()
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		b.Fatal(err)
	}
}

// echoRounds makes n 64-byte round trips on c, which is in echo mode, and
// returns each round trip's duration.
func echoRounds(b *testing.B, c net.Conn, n int) []time.Duration {
	b.Helper()
	ping := make([]byte, echoSize)
	pong := make([]byte, echoSize)
	d := make([]time.Duration, n)
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	for i := range n {
		ping[0] = byte(i)
		t0 := time.Now()
		if _, err := c.Write(ping); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, pong); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		d[i] = time.Since(t0)
		if pong[0] != ping[0] {
			b.Fatalf("round trip %d: echo out of step", i)
		}
	}
	return d
}

// percentile returns the q-quantile of d in microseconds.
func percentile(d []time.Duration, q float64) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(int(q*float64(len(s))), len(s)-1)
	return float64(s[i]) / float64(time.Microsecond)
}
