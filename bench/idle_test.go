package bench

import (
	"context"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// BenchmarkInprocIdleStreams is the idle half of BenchmarkRealLoopback
// without processes, to see where the bytes of an idle stream are: both
// ends of `msp connect --forward` / `msp listen --forward` in this process
// (a forward.Forwarder serving a TCP listener into one msp session, and
// one serving the session's streams to a TCP target), two mesh nodes on
// one lossless memnet link. Each op opens idleStreams TCP connections
// through the tunnel, sends one byte on each (as the real benchmark's mode
// byte), waits until the target has read every byte, and then, after two
// collections, reports per stream, both ends together (the client's and
// the target's own sockets included): heap-B/stream (live heap),
// stack-B/stream (goroutine stacks) and goroutines/stream.
//
//	go test -run '^$' -bench InprocIdleStreams -benchtime 1x ./bench/
func BenchmarkInprocIdleStreams(b *testing.B) {
	a, z := memPair(b, memnet.LinkConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })

	hold := startHolder(b)
	zp, err := z.Bind(5000)
	if err != nil {
		b.Fatal(err)
	}
	l := msp.Listen(zp, z.Identity(), 5000, msp.Config{})
	b.Cleanup(func() { l.Close() })
	wg.Add(2)
	go func() {
		defer wg.Done()
		f := &forward.Forwarder{IdleTimeout: forward.DefaultIdleTimeout}
		f.ServeStreams(ctx, l.AcceptContext, forward.Endpoint{Network: "tcp", Addr: hold.addr})
	}()
	s := dialPort(b, ctx, a, z, 5000)
	b.Cleanup(func() { s.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		defer wg.Done()
		f := &forward.Forwarder{IdleTimeout: forward.DefaultIdleTimeout}
		f.Serve(ctx, ln, s.OpenStream)
	}()

	var heap, stack, gs float64
	for b.Loop() {
		before := memNow()
		conns := make([]net.Conn, 0, idleStreams)
		base := hold.count()
		for range idleStreams {
			c, err := net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
			if err != nil {
				b.Fatalf("stream %d: %v", len(conns), err)
			}
			conns = append(conns, c)
			if _, err := c.Write([]byte{modeIdle}); err != nil {
				b.Fatalf("stream %d: %v", len(conns), err)
			}
		}
		deadline := time.Now().Add(time.Minute)
		for hold.count()-base < idleStreams {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d idle streams reached the target in a minute", hold.count()-base, idleStreams)
			}
			time.Sleep(20 * time.Millisecond)
		}
		after := memNow()
		heap = float64(after.heap-before.heap) / idleStreams
		stack = float64(after.stack-before.stack) / idleStreams
		gs = float64(after.goroutines-before.goroutines) / idleStreams
		for _, c := range conns {
			c.Close()
		}
		hold.closeAll()
	}
	b.ReportMetric(heap, "heap-B/stream")
	b.ReportMetric(stack, "stack-B/stream")
	b.ReportMetric(gs, "goroutines/stream")
}

// memSample is this process's live heap, stack bytes and goroutines.
type memSample struct {
	heap, stack int64
	goroutines  int
}

// memNow collects garbage twice (so that pools are emptied and stacks
// shrunk where they can be) and samples the process.
func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{int64(ms.HeapAlloc), int64(ms.StackInuse), runtime.NumGoroutine()}
}

// holder is a TCP target that reads one byte from each connection and
// holds it open, without a goroutine per connection.
type holder struct {
	addr  string
	mu    sync.Mutex
	conns []net.Conn // read their byte; guarded by mu
}

func startHolder(b *testing.B) *holder {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	h := &holder{addr: ln.Addr().String()}
	done := make(chan struct{})
	b.Cleanup(func() { ln.Close(); <-done; h.closeAll() })
	go func() {
		defer close(done)
		one := make([]byte, 1)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := c.Read(one); err != nil {
				c.Close()
				continue
			}
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	return h
}

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *holder) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, c := range h.conns {
		c.Close()
	}
	h.conns = nil
}

// dialPort opens an msp session from a to port of z.
func dialPort(b *testing.B, ctx context.Context, a, z *mesh.Node, port uint16) *msp.Session {
	b.Helper()
	ap, err := a.Bind(0)
	if err != nil {
		b.Fatal(err)
	}
	s, err := msp.Dialer{Identity: a.Identity()}.Dial(ctx, ap, z.SID(), port)
	if err != nil {
		b.Fatal(err)
	}
	return s
}
