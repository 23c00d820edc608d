package forward

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// promptly bounds how long a teardown may take before a test fails. It is a
// deadline on a blocking wait, never a sleep.
const promptly = 2 * time.Second

// memConn is one end of an in-memory, half-closable, byte-stream pair built
// from two io.Pipes: CloseWrite makes the peer read io.EOF, Close also ends
// our reads, and breakWith makes the peer's reads and writes fail with err,
// as a dying stream does.
type memConn struct {
	r         *io.PipeReader
	w         *io.PipeWriter
	name      string
	closeOnce sync.Once
}

func memPair() (*memConn, *memConn) {
	r1, w1 := io.Pipe()
	r2, w2 := io.Pipe()
	return &memConn{r: r1, w: w2, name: "mem-a"}, &memConn{r: r2, w: w1, name: "mem-b"}
}

func (c *memConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *memConn) Write(p []byte) (int, error) { return c.w.Write(p) }
func (c *memConn) CloseWrite() error           { return c.w.Close() }

func (c *memConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = nil
		_ = c.w.Close()
		_ = c.r.CloseWithError(net.ErrClosed)
	})
	return err
}

// breakWith fails both directions with err: the peer's reads return err and
// its writes return err.
func (c *memConn) breakWith(err error) {
	_ = c.w.CloseWithError(err)
	_ = c.r.CloseWithError(err)
}

func (c *memConn) LocalAddr() net.Addr              { return memAddr(c.name) }
func (c *memConn) RemoteAddr() net.Addr             { return memAddr(c.name + "-peer") }
func (c *memConn) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (c *memConn) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (c *memConn) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }

var (
	_ net.Conn   = (*memConn)(nil)
	_ HalfCloser = (*memConn)(nil)
)

type memAddr string

func (memAddr) Network() string  { return "mem" }
func (a memAddr) String() string { return string(a) }

// listen returns a TCP listener on 127.0.0.1:0, closed at cleanup.
func listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// tcpPair returns the two ends of a loopback TCP connection, closed at cleanup.
func tcpPair(t testing.TB) (client, server *net.TCPConn) {
	t.Helper()
	ln := listen(t)
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		c.Close()
		t.Fatal(r.err)
	}
	t.Cleanup(func() { c.Close(); r.c.Close() })
	return c.(*net.TCPConn), r.c.(*net.TCPConn)
}

// closedAddr returns a loopback address where nothing listens, so a dial is
// refused.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// randBytes returns n pseudo-random bytes from a logged seed.
func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("data seed %d", seed)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// result is the outcome of a function run by goRun; wait returns it (as
// often as asked), failing the test if it takes longer than d.
type result[T any] struct {
	done chan struct{}
	v    *T
}

func goRun[T any](f func() T) result[T] {
	r := result[T]{done: make(chan struct{}), v: new(T)}
	go func() {
		defer close(r.done)
		*r.v = f()
	}()
	return r
}

func (r result[T]) wait(t testing.TB, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-r.done:
		return *r.v
	case <-timer.C:
		t.Fatalf("%s: not done within %v", what, d)
		panic("unreachable")
	}
}

// joinResult is what Join returns.
type joinResult struct {
	aToB, bToA int64
	err        error
}

func goJoin(ctx context.Context, a, b io.ReadWriteCloser) result[joinResult] {
	return goRun(func() joinResult {
		ab, ba, err := Join(ctx, a, b)
		return joinResult{ab, ba, err}
	})
}

// sum is the SHA-256 of b, for comparing large transfers.
func sum(b []byte) [32]byte { return sha256.Sum256(b) }
