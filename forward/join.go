package forward

// Data path (Join):
//
//	a.Read ──copy a->b──► b.Write     a at EOF ─► b.CloseWrite (or b.Close)
//	b.Read ──copy b->a──► a.Write     b at EOF ─► a.CloseWrite (or a.Close)
//
// Each direction is one goroutine running the WriteTo/ReadFrom method of an
// end that has one (smux streams' WriteTo avoids a copy), or a copy through
// a pooled 64 KiB buffer: from a socket, the buffer is taken for each read
// and given back while the socket has nothing to read, so an idle
// direction holds none (copyPolled). An error in either direction, or ctx being
// done, closes both ends at once.

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HalfCloser is implemented by streams that can signal end of data to their
// peer while still receiving, such as *net.TCPConn, smux streams and MSP
// streams.
type HalfCloser interface {
	// CloseWrite shuts down the writing side; the peer reads io.EOF after
	// everything written before.
	CloseWrite() error
}

// BufferSize is the size of each of the two copy buffers Join uses when
// neither end has a WriteTo/ReadFrom method it uses: at most 2*BufferSize
// bytes per joined pair, and none for a direction waiting to read from an
// idle TCP or Unix stream socket.
const BufferSize = 64 << 10

// Join copies a to b and b to a until both directions have finished, then
// closes a and b and returns the bytes copied each way.
//
// Half-close is propagated: when a read from one end reports io.EOF, Join
// calls CloseWrite on the other end if it implements HalfCloser, and keeps the
// opposite direction running, so a peer that half-closes still receives the
// whole reply. An end that cannot half-close is closed instead (the only way
// to deliver the EOF); reads from it that then fail count as its EOF.
//
// If either direction fails with an error other than EOF (a read, a write or a
// CloseWrite), or ctx is done, Join closes both ends at once so the other
// direction cannot hang, and returns the first such error, wrapped with the
// direction ("a->b" copies from a to b), or ctx.Err() wrapped. Both ends are
// always closed when Join returns, and both copying goroutines have ended.
func Join(ctx context.Context, a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	return join(ctx, a, b, nil, "a", "b")
}

// join is Join with names for the ends, used in error messages, and act
// (nil for none) stamped whenever a byte moves. When ctx is done its cause
// (context.Cause) is the error.
func join(ctx context.Context, a, b io.ReadWriteCloser, act *activity, aName, bName string) (aToB, bToA int64, err error) {
	j := &joiner{a: end{rwc: a}, b: end{rwc: b}, act: act}
	if ctx.Err() != nil {
		j.closeBoth()
		return 0, 0, fmt.Errorf("forward: %w", context.Cause(ctx))
	}
	stop := afterFunc(ctx, func() {
		j.mu.Lock()
		finished := j.finished
		j.mu.Unlock()
		if !finished {
			j.fail(fmt.Errorf("forward: %w", context.Cause(ctx)))
		}
	})

	// The calling goroutine copies into a socket end if there is one:
	// its stack already holds the caller's frames, and a socket's Write
	// makes shallower calls than a stream's. The other direction runs on
	// a new goroutine, whose stack starts small. Both stacks keep what
	// they grew to for the life of the pair (BenchmarkInprocIdleStreams).
	ab := func() { aToB = j.pipe(&j.b, &j.a, aName+"->"+bName) }
	ba := func() { bToA = j.pipe(&j.a, &j.b, bName+"->"+aName) }
	here, there := ab, ba
	if isKernel(a) && !isKernel(b) {
		here, there = ba, ab
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		there()
	}()
	here()
	wg.Wait()
	j.mu.Lock()
	j.finished = true // a ctx done from now on is not a failure
	j.mu.Unlock()
	stop()
	j.closeBoth()

	j.mu.Lock()
	defer j.mu.Unlock()
	return aToB, bToA, j.err
}

// end is one side of a join.
type end struct {
	rwc       io.ReadWriteCloser
	closeOnce sync.Once
	// closedForEOF is set before the end is closed because it cannot
	// half-close; read errors after that are its EOF, not failures.
	closedForEOF atomic.Bool
}

func (e *end) close() { e.closeOnce.Do(func() { _ = e.rwc.Close() }) }

// joiner holds the shared state of one Join.
type joiner struct {
	a, b end
	act  *activity // nil: not tracked

	mu       sync.Mutex
	err      error // first failure; guarded by mu
	finished bool  // both directions have ended; guarded by mu
}

// pipe copies src to dst, then propagates EOF to dst or fails the join.
func (j *joiner) pipe(dst, src *end, dir string) int64 {
	n, err := copyStream(dst.rwc, src.rwc, j.act)
	if err != nil && src.closedForEOF.Load() {
		err = nil // we closed src ourselves to pass on its peer's EOF
	}
	if err == nil {
		if hc, ok := dst.rwc.(HalfCloser); ok {
			err = hc.CloseWrite()
		} else {
			dst.closedForEOF.Store(true)
			dst.close()
		}
	}
	if err != nil {
		j.fail(fmt.Errorf("forward: %s: %w", dir, err))
	}
	return n
}

// fail records err if it is the first failure and closes both ends.
func (j *joiner) fail(err error) {
	j.mu.Lock()
	if j.err == nil {
		j.err = err
	}
	j.mu.Unlock()
	j.closeBoth()
}

func (j *joiner) closeBoth() {
	j.a.close()
	j.b.close()
}

// afterFunc runs f in its own goroutine once ctx is done. The returned stop
// function prevents f from starting, or waits for it to finish if it has.
func afterFunc(ctx context.Context, f func()) (stop func()) {
	done := make(chan struct{})
	unregister := context.AfterFunc(ctx, func() {
		defer close(done)
		f()
	})
	return func() {
		if !unregister() {
			<-done
		}
	}
}

// copyStream copies src to dst until EOF (nil error) or an error, stamping
// act (if not nil) whenever bytes move.
//
// It uses the WriteTo method of src or the ReadFrom method of dst when the
// end is not a kernel-backed type (smux streams deliver their frames without
// an extra copy); otherwise, from a TCP or Unix stream socket, copyPolled,
// which holds its BufferSize buffer only while the socket has data, and
// from anything else io.CopyBuffer with a BufferSize buffer. The
// kernel types' own methods are bypassed: their generic fallback copies
// through a 32 KiB buffer, and their splice(2) path between two TCP sockets
// measured slower than the 64 KiB copy on loopback (BenchmarkJoin).
//
// The activity stamp costs one clock read per Read or Write call on the
// path (a call moves up to BufferSize bytes, or one smux frame): the
// WriteTo path stamps the writes it makes to dst, the ReadFrom path the
// reads it makes from src, and the buffered path both.
func copyStream(dst io.Writer, src io.Reader, act *activity) (int64, error) {
	switch copyPath(dst, src) {
	case viaWriterTo:
		if act != nil {
			dst = writerOnly{dst, act}
		}
		return src.(io.WriterTo).WriteTo(dst)
	case viaReaderFrom:
		if act != nil {
			src = readerOnly{src, act}
		}
		return dst.(io.ReaderFrom).ReadFrom(src)
	}
	if c, rc, ok := polledSource(src); ok {
		return copyPolled(writerOnly{dst, act}, c, rc, act)
	}
	buf := bigBuffers.get() // src is not a socket: its blocked Read holds buf
	defer bigBuffers.put(buf)
	return io.CopyBuffer(writerOnly{dst, act}, readerOnly{src, act}, *buf)
}

// polledSource returns the raw connection of src if copyPolled can read it:
// a TCP or stream Unix socket, whose zero-byte read is its EOF.
func polledSource(src io.Reader) (net.Conn, syscall.RawConn, bool) {
	var rc syscall.RawConn
	var err error
	switch c := src.(type) {
	case *net.TCPConn:
		rc, err = c.SyscallConn()
	case *net.UnixConn:
		if c.LocalAddr() == nil || c.LocalAddr().Network() != "unix" {
			return nil, nil, false
		}
		rc, err = c.SyscallConn()
	default:
		return nil, nil, false
	}
	return src.(net.Conn), rc, err == nil
}

// copyPolled copies the socket behind rc to dst until EOF (nil error) or an
// error, like io.CopyBuffer, but holds a copy buffer only while the socket
// has data: each read takes a pooled buffer, and a read that would block
// gives it back before waiting in the poller. An idle direction so costs
// no buffer (an idle join used to hold BufferSize bytes in its blocked
// Read). The first read after a wait takes a small buffer (smallBufferSize:
// a keystroke, a request line, a pair's first byte), and only a read that
// fills its buffer moves on to a BufferSize one, kept from read to read
// while the socket has more: many pairs waking at once (opening, say)
// hold small buffers while their writes wait, not 64 KiB ones. Deadlines
// and Close wake the wait as they wake Read.
func copyPolled(dst io.Writer, c net.Conn, rc syscall.RawConn, act *activity) (written int64, err error) {
	var buf *[]byte
	pool := smallBuffers
	defer func() {
		if buf != nil {
			pool.put(buf)
		}
	}()
	var n int
	var rerr error
	read := func(fd uintptr) bool {
		if buf == nil {
			buf = pool.get()
		}
		for {
			n, rerr = unix.Read(int(fd), *buf)
			if rerr != unix.EINTR {
				break
			}
		}
		if rerr == unix.EAGAIN {
			pool.put(buf)
			buf, pool = nil, smallBuffers
			return false // wait until readable
		}
		return true
	}
	for {
		if err := rc.Read(read); err != nil {
			return written, err
		}
		if rerr != nil {
			return written, &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", rerr)}
		}
		if n <= 0 {
			return written, nil // EOF
		}
		act.touch()
		nw, werr := dst.Write((*buf)[:n])
		written += int64(nw)
		switch {
		case werr != nil:
			return written, werr
		case nw != n:
			return written, io.ErrShortWrite
		}
		if n == len(*buf) && pool == smallBuffers {
			pool.put(buf) // more is likely waiting: read it in bulk
			buf, pool = nil, bigBuffers
		}
	}
}

// activity records when a joined pair last moved a byte, in either
// direction, for the idle timeout and for choosing whom to evict. Stamps
// are monotonic nanoseconds since base.
type activity struct {
	base time.Time    // the origin of the stamps (monotonic)
	last atomic.Int64 // the last byte moved; 0: none yet
}

// now is the current stamp: nanoseconds since base, plus one so that no
// stamp is 0.
func (a *activity) now() int64 { return int64(time.Since(a.base)) + 1 }

// touch records that bytes moved now; a nil activity is not tracked.
func (a *activity) touch() {
	if a != nil {
		a.last.Store(a.now())
	}
}

// path is how copyStream moves bytes.
type path int

const (
	viaBuffer     path = iota // io.CopyBuffer with a pooled buffer
	viaWriterTo               // src.WriteTo
	viaReaderFrom             // dst.ReadFrom
)

func copyPath(dst io.Writer, src io.Reader) path {
	switch {
	case !isKernel(src) && isWriterTo(src):
		return viaWriterTo
	case !isKernel(dst) && isReaderFrom(dst):
		return viaReaderFrom
	}
	return viaBuffer
}

// maxIdleBuffers bounds the copy buffers kept for reuse between joins
// (maxIdleBuffers*BufferSize = 2 MiB). Reuse makes a short-lived join about
// 3.5 times cheaper than allocating (BenchmarkJoinShort).
const maxIdleBuffers = 32

// smallBufferSize is the size of copyPolled's first read after a wait;
// maxIdleSmall*smallBufferSize = 512 KiB of them are kept for reuse.
const (
	smallBufferSize = 2 << 10
	maxIdleSmall    = 256
)

// The package's free lists of copy buffers. They hold no state callers
// can observe: only memory kept for reuse.
var (
	bigBuffers   = &freeList{size: BufferSize, idle: make(chan *[]byte, maxIdleBuffers)}
	smallBuffers = &freeList{size: smallBufferSize, idle: make(chan *[]byte, maxIdleSmall)}
)

// freeList is a bounded free list of buffers of one size.
type freeList struct {
	size int
	idle chan *[]byte
}

func (f *freeList) get() *[]byte {
	select {
	case b := <-f.idle:
		return b
	default:
		b := make([]byte, f.size)
		return &b
	}
}

func (f *freeList) put(b *[]byte) {
	select {
	case f.idle <- b:
	default: // full: let the collector have it
	}
}

func isKernel(x any) bool {
	switch x.(type) {
	case *net.TCPConn, *net.UnixConn, *os.File:
		return true
	}
	return false
}

func isWriterTo(r io.Reader) bool {
	_, ok := r.(io.WriterTo)
	return ok
}

func isReaderFrom(w io.Writer) bool {
	_, ok := w.(io.ReaderFrom)
	return ok
}

// readerOnly hides every method but Read from io.CopyBuffer, and stamps
// act (if not nil) when bytes are read.
type readerOnly struct {
	r   io.Reader
	act *activity
}

func (r readerOnly) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.act.touch()
	}
	return n, err
}

// writerOnly hides every method but Write from io.CopyBuffer, and stamps
// act (if not nil) when bytes are written.
type writerOnly struct {
	w   io.Writer
	act *activity
}

func (w writerOnly) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if n > 0 {
		w.act.touch()
	}
	return n, err
}

// onFreshStack runs f on a goroutine of its own and returns what f
// returned. A goroutine's stack keeps the size it grew to, and a joined
// pair's goroutines wait for the rest of its life: setting the pair up
// (dialling the target, opening a stream) makes the deepest calls of all,
// and run on the goroutine that then copies, it would leave every idle
// pair with an 8 KiB stack where the copy needs 4 KiB
// (BenchmarkInprocIdleStreams in bench/). f must return when the context
// it uses is done.
func onFreshStack[T any](f func() (T, error)) (T, error) {
	var v T
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		v, err = f()
	}()
	<-done
	return v, err
}
