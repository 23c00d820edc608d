package forward

import (
	"context"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// hidden wraps a connection so that Join sees neither *net.TCPConn nor any
// WriteTo/ReadFrom method: the path taken for stream ends without fast paths.
type hidden struct{ c *net.TCPConn }

func (h hidden) Read(p []byte) (int, error)  { return h.c.Read(p) }
func (h hidden) Write(p []byte) (int, error) { return h.c.Write(p) }
func (h hidden) CloseWrite() error           { return h.c.CloseWrite() }
func (h hidden) Close() error                { return h.c.Close() }

// BenchmarkJoin measures one-way throughput through Join, beside raw
// loopback TCP and the standard library's splice(2) copy, measured in the
// same run:
//
//	raw-tcp:          client -> server
//	tcp:              client -> [Join of two *net.TCPConn] -> server
//	tcp-hidden:       the same, ends hidden behind a plain type
//	splice-reference: client -> [io.Copy each way: splice(2)] -> server
//	mem:              io.Pipe pairs on both sides (no kernel)
//	mem-writeto:      the same, the input end copied from through WriteTo
//
// and each Join path again with the activity stamp that Serve and
// ServeStreams keep for the idle timeout and eviction ("-tracked").
func BenchmarkJoin(b *testing.B) {
	const chunk = 1 << 20
	b.Run("raw-tcp", func(b *testing.B) {
		client, server := tcpPair(b)
		benchStream(b, client, server, chunk)
	})
	b.Run("tcp", func(b *testing.B) {
		client, in := tcpPair(b)
		out, server := tcpPair(b)
		j := goJoin(context.Background(), in, out)
		benchStream(b, client, server, chunk)
		j.wait(b, promptly, "join")
	})
	b.Run("tcp-tracked", func(b *testing.B) {
		client, in := tcpPair(b)
		out, server := tcpPair(b)
		j := goJoinTracked(in, out)
		benchStream(b, client, server, chunk)
		j.wait(b, promptly, "join")
	})
	b.Run("tcp-hidden", func(b *testing.B) {
		client, in := tcpPair(b)
		out, server := tcpPair(b)
		j := goJoin(context.Background(), hidden{in}, hidden{out})
		benchStream(b, client, server, chunk)
		j.wait(b, promptly, "join")
	})
	b.Run("splice-reference", func(b *testing.B) {
		client, in := tcpPair(b)
		out, server := tcpPair(b)
		pipe := func(dst, src *net.TCPConn) result[error] {
			return goRun(func() error {
				_, err := io.Copy(dst, src)
				dst.CloseWrite()
				return err
			})
		}
		up, down := pipe(out, in), pipe(in, out)
		benchStream(b, client, server, chunk)
		up.wait(b, promptly, "splice up")
		down.wait(b, promptly, "splice down")
	})
	for _, tracked := range []bool{false, true} {
		suffix := ""
		if tracked {
			suffix = "-tracked"
		}
		join := func(a, b io.ReadWriteCloser) result[joinResult] {
			if tracked {
				return goJoinTracked(a, b)
			}
			return goJoin(context.Background(), a, b)
		}
		b.Run("mem"+suffix, func(b *testing.B) {
			client, in := memPair()
			out, server := memPair()
			j := join(in, out)
			benchStream(b, client, server, chunk)
			j.wait(b, promptly, "join")
		})
		b.Run("mem-writeto"+suffix, func(b *testing.B) {
			client, in := memPair()
			out, server := memPair()
			j := join(writerToConn{in}, out)
			benchStream(b, client, server, chunk)
			j.wait(b, promptly, "join")
		})
	}
}

// goJoinTracked runs join with an activity stamp, as the serving loops do.
func goJoinTracked(a, b io.ReadWriteCloser) result[joinResult] {
	return goRun(func() joinResult {
		ab, ba, err := join(context.Background(), a, b, &activity{base: time.Now()}, "a", "b")
		return joinResult{ab, ba, err}
	})
}

// benchStream writes chunk-sized blocks into client while server is drained,
// then half-closes both ways and checks the byte count.
func benchStream(b *testing.B, client, server halfConn, chunk int) {
	buf := make([]byte, chunk)
	sink := goRun(func() int64 {
		n, _ := io.Copy(io.Discard, server)
		server.CloseWrite()
		return n
	})
	b.SetBytes(int64(chunk))
	b.ReportAllocs()
	var sent int64
	cpu0 := cpuTime(b)
	for b.Loop() {
		n, err := client.Write(buf)
		sent += int64(n)
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime(b)-cpu0)/float64(sent)*(1<<20), "cpu-ns/MiB")
	client.CloseWrite()
	io.Copy(io.Discard, client)
	if got := sink.wait(b, promptly, "sink"); got != sent {
		b.Fatalf("received %d bytes, sent %d", got, sent)
	}
	client.Close()
	server.Close()
}

// cpuTime is the CPU time (user and system) this process has used, in ns.
func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkJoinShort measures the cost of a short-lived join (one byte each
// way over in-memory pairs): what per-join buffer allocation costs.
func BenchmarkJoinShort(b *testing.B) {
	b.ReportAllocs()
	buf := make([]byte, 1)
	for b.Loop() {
		client, in := memPair()
		out, server := memPair()
		j := goJoin(context.Background(), in, out)
		client.Write([]byte("q"))
		io.ReadFull(server, buf)
		server.Write([]byte("r"))
		io.ReadFull(client, buf)
		client.CloseWrite()
		server.CloseWrite()
		j.wait(b, promptly, "join")
		client.Close()
		server.Close()
	}
}
