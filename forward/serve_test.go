package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// echo copies what c receives back to it, then half-closes and closes c.
func echo(c io.ReadWriteCloser) {
	io.Copy(c, c)
	if hc, ok := c.(HalfCloser); ok {
		hc.CloseWrite()
	}
	c.Close()
}

// memEchoOpener returns an open function for Serve whose streams are
// in-memory pairs with an echo at the far end, and counts the opens.
func memEchoOpener(t *testing.T) (open func(context.Context) (net.Conn, error), opened *atomic.Int32) {
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	opened = new(atomic.Int32)
	return func(context.Context) (net.Conn, error) {
		opened.Add(1)
		a, b := memPair()
		wg.Go(func() { echo(b) })
		return a, nil
	}, opened
}

// tcpEchoServer runs an echo server on 127.0.0.1:0 until cleanup.
func tcpEchoServer(t *testing.T) string {
	ln := listen(t)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { echo(c) })
		}
	})
	return ln.Addr().String()
}

// roundTrip sends msg on c, half-closes, and checks that the echo comes
// back whole. It may run in any goroutine.
func roundTrip(c halfConn, msg []byte) error {
	w := goRun(func() error {
		if _, err := c.Write(msg); err != nil {
			return err
		}
		return c.CloseWrite()
	})
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	<-w.done // the read ended, so the write has
	if err := *w.v; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo returned %d bytes, want %d", len(got), len(msg))
	}
	return nil
}

func mustRoundTrip(t *testing.T, c halfConn, msg []byte) {
	t.Helper()
	if err := roundTrip(c, msg); err != nil {
		t.Fatal(err)
	}
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// expectClosed checks that the peer closes c promptly: a read ends with EOF
// or an error instead of blocking.
func expectClosed(t *testing.T, c io.Reader) {
	t.Helper()
	goRun(func() error {
		_, err := io.Copy(io.Discard, c)
		return err
	}).wait(t, promptly, "read from a connection that should close")
}

func goServe(ctx context.Context, ln net.Listener, open func(context.Context) (net.Conn, error), once bool) result[error] {
	return goRun(func() error { return Serve(ctx, ln, open, once, nil) })
}

func TestServeOnce(t *testing.T) {
	ln := listen(t)
	open, opened := memEchoOpener(t)
	srv := goServe(context.Background(), ln, open, true)
	c := dialTCP(t, ln.Addr().String())
	// while the first connection is being served, the listener is closed
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
		t.Fatal(err)
	}
	if c2, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c2.Close()
		t.Error("a second connection was accepted with once")
	}
	mustRoundTrip(t, c, randBytes(t, 100<<10))
	if err := srv.wait(t, promptly, "Serve once"); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("opened %d streams, want 1", n)
	}
}

func TestServeManyThenCancel(t *testing.T) {
	ln := listen(t)
	open, opened := memEchoOpener(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := goServe(ctx, ln, open, false)

	const n = 8
	var wg sync.WaitGroup
	for i := range n {
		c := dialTCP(t, ln.Addr().String())
		wg.Go(func() {
			if err := roundTrip(c, []byte(fmt.Sprintf("client %d %s", i, bytes.Repeat([]byte("x"), i*10000)))); err != nil {
				t.Errorf("client %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	idle := dialTCP(t, ln.Addr().String())
	if _, err := idle.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(idle, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("idle client echo: %q, %v", buf, err)
	}

	cancel()
	if err := srv.wait(t, promptly, "Serve after cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want context.Canceled", err)
	}
	expectClosed(t, idle)
	if got := opened.Load(); got != n+1 {
		t.Fatalf("opened %d streams, want %d", got, n+1)
	}
}

func TestServeOpenFails(t *testing.T) {
	errNoRoute := errors.New("no route to SID")
	t.Run("keeps serving", func(t *testing.T) {
		ln := listen(t)
		echoOpen, _ := memEchoOpener(t)
		var calls atomic.Int32
		open := func(ctx context.Context) (net.Conn, error) {
			if calls.Add(1) == 1 {
				return nil, errNoRoute
			}
			return echoOpen(ctx)
		}
		ctx, cancel := context.WithCancel(context.Background())
		srv := goServe(ctx, ln, open, false)
		expectClosed(t, dialTCP(t, ln.Addr().String()))
		mustRoundTrip(t, dialTCP(t, ln.Addr().String()), []byte("second client"))
		cancel()
		srv.wait(t, promptly, "Serve after cancel")
	})
	t.Run("once", func(t *testing.T) {
		ln := listen(t)
		open := func(context.Context) (net.Conn, error) { return nil, errNoRoute }
		srv := goServe(context.Background(), ln, open, true)
		expectClosed(t, dialTCP(t, ln.Addr().String()))
		if err := srv.wait(t, promptly, "Serve once"); !errors.Is(err, errNoRoute) {
			t.Fatalf("Serve = %v, want the open error", err)
		}
	})
}

func TestServeListenerClosed(t *testing.T) {
	ln := listen(t)
	open, _ := memEchoOpener(t)
	srv := goServe(context.Background(), ln, open, false)
	c := dialTCP(t, ln.Addr().String())
	mustRoundTrip(t, c, []byte("before close")) // the join has ended
	ln.Close()
	if err := srv.wait(t, promptly, "Serve after its listener closed"); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
}

// streamQueue hands out streams to ServeStreams; closing it ends accepting.
type streamQueue chan net.Conn

func (q streamQueue) accept(ctx context.Context) (net.Conn, error) {
	select {
	case c, ok := <-q:
		if !ok {
			return nil, net.ErrClosed
		}
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// push queues the inner end of a new stream and returns the far end.
func (q streamQueue) push(t *testing.T) *memConn {
	a, b := memPair()
	t.Cleanup(func() { a.Close(); b.Close() })
	q <- a
	return b
}

func goServeStreams(ctx context.Context, q streamQueue, target string, once bool,
	dial func(context.Context, string, string) (net.Conn, error)) result[error] {
	return goRun(func() error { return ServeStreams(ctx, q.accept, target, once, dial, nil) })
}

func TestServeStreams(t *testing.T) {
	target := tcpEchoServer(t)
	q := make(streamQueue)
	srv := goServeStreams(context.Background(), q, target, false, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		far := q.push(t)
		msg := randBytes(t, i*50000+1)
		wg.Go(func() {
			if err := roundTrip(far, msg); err != nil {
				t.Errorf("stream %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	close(q)
	if err := srv.wait(t, promptly, "ServeStreams after accept closed"); err != nil {
		t.Fatalf("ServeStreams = %v, want nil", err)
	}
}

// TestServeStreamsTargetRefuses checks that a refused dial closes the stream
// at once and the next stream is still served.
func TestServeStreamsTargetRefuses(t *testing.T) {
	target, refusing := tcpEchoServer(t), closedAddr(t)
	var calls atomic.Int32
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if calls.Add(1) == 1 {
			addr = refusing
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	q := make(streamQueue)
	ctx, cancel := context.WithCancel(context.Background())
	srv := goServeStreams(ctx, q, target, false, dial)
	expectClosed(t, q.push(t))
	mustRoundTrip(t, q.push(t), []byte("second stream"))

	// an idle joined stream is torn down by cancel
	idle := q.push(t)
	idle.Write([]byte("hi"))
	if b := make([]byte, 2); func() error { _, err := io.ReadFull(idle, b); return err }() != nil {
		t.Fatal("idle stream not joined")
	}
	cancel()
	if err := srv.wait(t, promptly, "ServeStreams after cancel"); !errors.Is(err, context.Canceled) {
		t.Fatalf("ServeStreams = %v, want context.Canceled", err)
	}
	expectClosed(t, idle)
}

func TestServeStreamsOnce(t *testing.T) {
	t.Run("served", func(t *testing.T) {
		q := make(streamQueue, 2)
		srv := goServeStreams(context.Background(), q, tcpEchoServer(t), true, nil)
		mustRoundTrip(t, q.push(t), []byte("only one"))
		if err := srv.wait(t, promptly, "ServeStreams once"); err != nil {
			t.Fatalf("ServeStreams = %v", err)
		}
		q.push(t)
		if len(q) != 1 {
			t.Fatal("a second stream was accepted with once")
		}
	})
	t.Run("refused", func(t *testing.T) {
		q := make(streamQueue, 1)
		srv := goServeStreams(context.Background(), q, closedAddr(t), true, nil)
		expectClosed(t, q.push(t))
		if err := srv.wait(t, promptly, "ServeStreams once"); !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("ServeStreams = %v, want connection refused", err)
		}
	})
}

// TestServeAcceptErrors checks which accept errors end serving and which are
// retried.
func TestServeAcceptErrors(t *testing.T) {
	errOther := errors.New("listener broke")
	tests := []struct {
		name string
		errs []error // returned by successive accepts; then net.ErrClosed
		want error
	}{
		{"closed", nil, nil},
		{"other error", []error{errOther}, errOther},
		{"EMFILE retried", []error{fmt.Errorf("accept: %w", syscall.EMFILE), syscall.ECONNABORTED}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var i int
			accept := func(context.Context) (net.Conn, error) {
				if i < len(tt.errs) {
					i++
					return nil, tt.errs[i-1]
				}
				i++
				return nil, net.ErrClosed
			}
			err := ServeStreams(context.Background(), accept, "127.0.0.1:1", false, nil, nil)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("ServeStreams = %v, want %v", err, tt.want)
			}
			if wantCalls := len(tt.errs) + 1; tt.want == nil && i != wantCalls {
				t.Fatalf("accept called %d times, want %d", i, wantCalls)
			}
		})
	}
}
