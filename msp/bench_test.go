package msp

// Benchmarks of one msp stream:
//
//	BenchmarkLossyLink: node A ─memnet link (10 ms each way, loss p each way, MTU 1500)─► node B
//	BenchmarkLoopback:  node A ─UDP 127.0.0.1─► node B, in one process (for profiling),
//	                    beside raw loopback TCP in the same run.

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

const (
	// benchLossyDelay is the one-way delay of the lossy link.
	benchLossyDelay = 10 * time.Millisecond
	// benchLossyMTU is the lossy link's MTU: a realistic Ethernet/Internet path.
	benchLossyMTU = 1500
	// benchLossyWrite is how long the sender keeps writing in one transfer; the
	// transfer ends when the receiver has read everything written.
	benchLossyWrite = 4 * time.Second
	// benchEchoWarmup is the number of round trips before an echo's timing.
	benchEchoWarmup = 200
	// benchChunk is the size of one write.
	benchChunk = 256 << 10
)

// benchMemNodes starts two mesh nodes joined by one memnet link with cfg in
// both directions and waits until each can reach the other.
func benchMemNodes(b *testing.B, cfg memnet.LinkConfig) (a, z *mesh.Node, nw *memnet.Network, ca, cz *memnet.Conn) {
	b.Helper()
	m := meshtest.Pair(b, cfg, meshtest.Seed(1), meshtest.Timers(200*time.Millisecond, 3*time.Second),
		meshtest.Network(func(nw *memnet.Network) { nw.SetMTU(benchLossyMTU) }))
	return m.Nodes[0], m.Nodes[1], m.Net, m.Conns[0], m.Conns[1]
}

// benchSinkResult is what the receiving end of a transfer saw.
type benchSinkResult struct {
	n   int64
	end time.Time
	err error
}

// benchSinkStreams accepts streams on l; each is read to its end and the count
// and time of the end are sent on the returned channel.
func benchSinkStreams(b *testing.B, l *Listener) chan benchSinkResult {
	ch := make(chan benchSinkResult, 16)
	var wg sync.WaitGroup
	b.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			st, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer st.Close()
				st.SetReadDeadline(time.Now().Add(5 * time.Minute))
				n, err := io.Copy(io.Discard, st)
				ch <- benchSinkResult{n, time.Now(), err}
			}()
		}
	}()
	return ch
}

// BenchmarkLossyLink moves one msp stream over one memnet link with 10 ms
// delay each way and 0%, 1%, 5% or 10% loss each way, MTU 1500. Each op is
// one transfer: the sender writes for 4 s, then half-closes; the op ends
// when the receiver has read it all. Metrics (per transfer): MB/s of payload
// delivered; link-lost (datagrams memnet dropped, both ways); hop-rtx
// (per-hop DATA retransmissions, both nodes; hop-rtx-timeout and
// hop-rtx-fast are the timer and ACK-gap triggered parts of them,
// hop-dups the DATA frames received twice, i.e. the spurious ones);
// hop-abandoned; e2e-lost-pkts, e2e-rtx-KB, e2e-PTOs and e2e-hystart-exits
// (the sender's msp session; the last counts slow starts ended by rising
// delay), e2e-css-resumes (delay rises that proved transient, so slow start
// went on); srtt-ms and cwnd-KB at the end. With -v the full counters are
// logged.
//
// There is no raw baseline: memnet carries datagrams only, and nothing
// else reliable runs over it to compare against.
func BenchmarkLossyLink(b *testing.B) {
	b.Logf("link: %v each way, MTU %d; no raw-memnet baseline: memnet carries datagrams only and nothing else reliable runs over it", benchLossyDelay, benchLossyMTU)
	for _, loss := range []float64{0, 0.01, 0.05, 0.10} {
		b.Run(fmt.Sprintf("loss=%g%%", loss*100), func(b *testing.B) {
			benchLossyTransfer(b, memnet.LinkConfig{Delay: benchLossyDelay, Loss: loss})
		})
	}
}

func benchLossyTransfer(b *testing.B, cfg memnet.LinkConfig) {
	a, z, nw, ca, cz := benchMemNodes(b, cfg)
	l, err := listenMesh(z, 5000, Config{})
	if err != nil {
		b.Fatal(err)
	}
	results := benchSinkStreams(b, l)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := dialMesh(ctx, a, z.SID(), 5000, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	buf := make([]byte, benchChunk)

	linkLost := func() uint64 {
		return nw.LinkStats(ca.LocalAddr(), cz.LocalAddr()).Lost + nw.LinkStats(cz.LocalAddr(), ca.LocalAddr()).Lost
	}
	hop := func() (s mesh.Stats) {
		sa, sz := a.Stats(), z.Stats()
		s.Retransmits = sa.Retransmits + sz.Retransmits
		s.Timeouts = sa.Timeouts + sz.Timeouts
		s.FastRetransmits = sa.FastRetransmits + sz.FastRetransmits
		s.Abandoned = sa.Abandoned + sz.Abandoned
		s.Duplicates = sa.Duplicates + sz.Duplicates
		return s
	}
	lost0 := linkLost()
	h0 := hop()
	e0 := s.Stats()

	var total int64
	var elapsed time.Duration
	ops := 0
	for b.Loop() {
		ops++
		st, err := s.OpenStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		st.SetWriteDeadline(t0.Add(benchLossyWrite + time.Minute))
		var sent int64
		for time.Since(t0) < benchLossyWrite {
			k, err := st.Write(buf)
			sent += int64(k)
			if err != nil {
				b.Fatalf("write after %d bytes: %v", sent, err)
			}
		}
		if err := st.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			b.Fatal(err)
		}
		var r benchSinkResult
		select {
		case r = <-results:
		case <-time.After(2 * time.Minute):
			b.Fatalf("the receiver did not finish (%d bytes written; session %+v)", sent, s.Stats())
		}
		if r.err != nil || r.n != sent {
			b.Fatalf("received %d of %d bytes: %v", r.n, sent, r.err)
		}
		total += r.n
		elapsed += r.end.Sub(t0)
		st.Close()
	}
	e := s.Stats()
	h := hop()
	per := func(v uint64) float64 { return float64(v) / float64(ops) }
	b.SetBytes(total / int64(ops))
	b.ReportMetric(float64(total)/1e6/elapsed.Seconds(), "MB/s")
	b.ReportMetric(per(linkLost()-lost0), "link-lost")
	b.ReportMetric(per(h.Retransmits-h0.Retransmits), "hop-rtx")
	b.ReportMetric(per(h.Timeouts-h0.Timeouts), "hop-rtx-timeout")
	b.ReportMetric(per(h.FastRetransmits-h0.FastRetransmits), "hop-rtx-fast")
	b.ReportMetric(per(h.Duplicates-h0.Duplicates), "hop-dups")
	b.ReportMetric(per(h.Abandoned-h0.Abandoned), "hop-abandoned")
	b.ReportMetric(per(e.PacketsLost-e0.PacketsLost), "e2e-lost-pkts")
	b.ReportMetric(per(e.BytesRetransmitted-e0.BytesRetransmitted)/1024, "e2e-rtx-KB")
	b.ReportMetric(per(e.PTOs-e0.PTOs), "e2e-PTOs")
	b.ReportMetric(per(e.SlowStartExits-e0.SlowStartExits), "e2e-hystart-exits")
	b.ReportMetric(per(e.CSSResumes-e0.CSSResumes), "e2e-css-resumes")
	b.ReportMetric(per(e.CongestionEvents-e0.CongestionEvents), "e2e-cwnd-cuts")
	b.ReportMetric(per(e.CwndUndos-e0.CwndUndos), "e2e-cwnd-undos")
	b.ReportMetric(per(e.Collapses-e0.Collapses), "e2e-collapses")
	b.ReportMetric(float64(e.SRTT)/float64(time.Millisecond), "srtt-ms")
	b.ReportMetric(float64(e.Cwnd)/1024, "cwnd-KB")
	// The whole picture, with -v.
	b.Logf("node A %+v", a.Stats())
	b.Logf("node Z %+v", z.Stats())
	b.Logf("link A->Z %+v", nw.LinkStats(ca.LocalAddr(), cz.LocalAddr()))
	b.Logf("link Z->A %+v", nw.LinkStats(cz.LocalAddr(), ca.LocalAddr()))
	b.Logf("session at A %+v", e)
}

// benchUDPNodes starts two mesh nodes on loopback UDP and waits until each can
// reach the other.
func benchUDPNodes(b *testing.B) (*mesh.Node, *mesh.Node) {
	a, z := udpNodes(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.WaitReachable(ctx, z.SID()); err != nil {
		b.Fatal(err)
	}
	if err := z.WaitReachable(ctx, a.SID()); err != nil {
		b.Fatal(err)
	}
	return a, z
}

// BenchmarkLoopback measures one msp stream between two nodes of this
// process on loopback UDP, beside raw loopback TCP in the same run: the
// tunnel without the processes and the TCP legs, and a target for
// -cpuprofile. throughput: MB/s and ratio-vs-raw; echo: 64-byte round
// trips, p50-us, p99-us, p50-x-raw and datagrams/op (UDP datagrams both
// nodes sent per round trip).
func BenchmarkLoopback(b *testing.B) {
	a, z := benchUDPNodes(b)
	l, err := listenMesh(z, 5000, Config{})
	if err != nil {
		b.Fatal(err)
	}
	results := benchSinkStreams(b, l)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := dialMesh(ctx, a, z.SID(), 5000, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// Let MTU probing finish so that the first op does not pay for it.
	time.Sleep(500 * time.Millisecond)

	tcpSink := benchTCPServer(b, func(c net.Conn) {
		n, err := io.Copy(io.Discard, c)
		results <- benchSinkResult{n, time.Now(), err}
	})
	tcpEcho := benchTCPServer(b, func(c net.Conn) { io.Copy(c, c) })
	dialTCP := func(ln net.Listener) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		return c
	}
	var rawMBs, rawP50, rawP99 float64
	b.Run("throughput/raw-tcp", func(b *testing.B) {
		c := dialTCP(tcpSink)
		defer c.Close()
		rawMBs = benchPush(b, c, results)
	})
	b.Run("throughput/msp", func(b *testing.B) {
		st, err := s.OpenStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		mbs := benchPush(b, st, results)
		if rawMBs > 0 {
			b.ReportMetric(mbs/rawMBs, "ratio-vs-raw")
		}
	})
	b.Run("echo/raw-tcp", func(b *testing.B) {
		c := dialTCP(tcpEcho)
		defer c.Close()
		rawP50, rawP99 = benchEcho(b, c)
	})
	es, err := listenMesh(z, 5001, Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { es.Close() })
	echoServer(b, es)
	// One session for every echo op, ended with Close (not Shutdown).
	esess, err := dialMesh(ctx, a, z.SID(), 5001, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer esess.Close()
	b.Run("echo/msp", func(b *testing.B) {
		c, err := esess.OpenStream(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		f0 := a.Stats().FramesOut + z.Stats().FramesOut
		p50, p99 := benchEcho(b, c)
		// Datagrams both nodes sent per round trip (data, per-hop ACKs,
		// msp ACKs), warm-up included.
		b.ReportMetric(float64(a.Stats().FramesOut+z.Stats().FramesOut-f0)/float64(b.N+benchEchoWarmup), "datagrams/op")
		if rawP50 > 0 {
			b.ReportMetric(p50/rawP50, "p50-x-raw")
			b.ReportMetric(p99/rawP99, "p99-x-raw")
		}
	})
}

// benchTCPServer runs handle on each connection accepted on a loopback listener.
func benchTCPServer(b *testing.B, handle func(net.Conn)) net.Listener {
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
				handle(c)
			}()
		}
	}()
	return ln
}

// benchPush writes b.N chunks to c, half-closes it and waits for the sink's
// count; it returns MB/s.
func benchPush(b *testing.B, c net.Conn, results <-chan benchSinkResult) float64 {
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	t0 := time.Now()
	c.SetWriteDeadline(t0.Add(5 * time.Minute))
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatalf("write %d: %v", i, err)
		}
	}
	if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	r := <-results
	b.StopTimer()
	if r.err != nil || r.n != int64(b.N)*benchChunk {
		b.Fatalf("sink got %d bytes of %d: %v", r.n, b.N*benchChunk, r.err)
	}
	mbs := float64(r.n) / 1e6 / r.end.Sub(t0).Seconds()
	b.ReportMetric(mbs, "MB/s")
	return mbs
}

// benchEcho makes b.N 64-byte round trips on c (after a warm-up) and returns
// p50 and p99 in microseconds.
func benchEcho(b *testing.B, c net.Conn) (p50, p99 float64) {
	ping, pong := make([]byte, 64), make([]byte, 64)
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	round := func(i int) {
		binary.BigEndian.PutUint64(ping, uint64(i))
		if _, err := c.Write(ping); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		if _, err := io.ReadFull(c, pong); err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		if binary.BigEndian.Uint64(pong) != uint64(i) {
			b.Fatalf("round trip %d: echo out of step", i)
		}
	}
	for i := range benchEchoWarmup {
		round(i)
	}
	d := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		round(i)
		d[i] = time.Since(t0)
	}
	b.StopTimer()
	slices.Sort(d)
	q := func(f float64) float64 {
		return float64(d[min(int(f*float64(len(d))), len(d)-1)]) / float64(time.Microsecond)
	}
	p50, p99 = q(0.50), q(0.99)
	b.ReportMetric(p50, "p50-us")
	b.ReportMetric(p99, "p99-us")
	return p50, p99
}
