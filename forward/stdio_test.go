package forward

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// recorder is an output that records what was written and whether, and
// when, it was closed.
type recorder struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	closes int
	closed chan struct{}
}

func newRecorder() *recorder { return &recorder{closed: make(chan struct{})} }

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closes > 0 {
		return 0, os.ErrClosed
	}
	return r.buf.Write(p)
}

func (r *recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closes++
	if r.closes == 1 {
		close(r.closed)
	}
	return nil
}

func (r *recorder) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.buf.Bytes())
}

// stuckReader blocks in Read until released, whatever else happens, as a
// read from a terminal does. entered is closed when the first Read starts.
type stuckReader struct {
	release, entered chan struct{}
	once             *sync.Once
}

func newStuckReader() stuckReader {
	return stuckReader{make(chan struct{}), make(chan struct{}), new(sync.Once)}
}

func (s stuckReader) Read([]byte) (int, error) {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return 0, io.EOF
}

// watchedPipe is an io.PipeReader whose entered channel is closed when the
// first Read starts.
type watchedPipe struct {
	*io.PipeReader
	entered chan struct{}
	once    sync.Once
}

func (w *watchedPipe) Read(p []byte) (int, error) {
	w.once.Do(func() { close(w.entered) })
	return w.PipeReader.Read(p)
}

// echoPeer plays the far end of a stream: it reads everything, then sends
// reply and half-closes. It returns what it read.
func echoPeer(peer *memConn, reply []byte) result[[]byte] {
	return goRun(func() []byte {
		got, _ := io.ReadAll(peer)
		peer.Write(reply)
		peer.CloseWrite()
		return got
	})
}

// TestStdioJoin joins stdin/stdout stand-ins with a stream: stdin's EOF must
// reach the far end as EOF, and the reply must reach stdout in full, then
// stdout is flushed/closed and Join returns nil.
func TestStdioJoin(t *testing.T) {
	input := randBytes(t, 200<<10)
	reply := randBytes(t, 300<<10)
	tests := []struct {
		name string
		// setup returns in, out, and a function returning what reached out
		// (called after Join returned).
		setup func(t *testing.T) (io.Reader, io.Writer, func() []byte)
	}{
		{"reader/buffer", func(t *testing.T) (io.Reader, io.Writer, func() []byte) {
			var out bytes.Buffer
			return bytes.NewReader(input), &out, out.Bytes
		}},
		{"io.Pipe/recorder", func(t *testing.T) (io.Reader, io.Writer, func() []byte) {
			pr, pw := io.Pipe()
			go func() {
				for b := input; len(b) > 0; b = b[min(len(b), 1000):] {
					pw.Write(b[:min(len(b), 1000)])
				}
				pw.Close()
			}()
			out := newRecorder()
			return pr, out, func() []byte {
				if out.closes != 1 {
					t.Errorf("out closed %d times, want 1", out.closes)
				}
				return out.bytes()
			}
		}},
		{"bufio writer", func(t *testing.T) (io.Reader, io.Writer, func() []byte) {
			var out bytes.Buffer
			return bytes.NewReader(input), bufio.NewWriterSize(&out, 1<<20), out.Bytes
		}},
		{"os.Pipe", func(t *testing.T) (io.Reader, io.Writer, func() []byte) {
			inR, inW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			outR, outW, err := os.Pipe()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { inR.Close(); inW.Close(); outR.Close(); outW.Close() })
			go func() { inW.Write(input); inW.Close() }()
			got := goRun(func() []byte { b, _ := io.ReadAll(outR); return b })
			return inR, outW, func() []byte { return got.wait(t, promptly, "stdout reader") }
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, out, output := tt.setup(t)
			stream, peer := memPair()
			defer peer.Close()
			far := echoPeer(peer, reply)
			_, _, err := Join(context.Background(), stream, Stdio(in, out))
			if err != nil {
				t.Fatalf("Join: %v", err)
			}
			if got := far.wait(t, promptly, "far end"); !bytes.Equal(got, input) {
				t.Errorf("far end got %d bytes, want %d", len(got), len(input))
			}
			if got := output(); !bytes.Equal(got, reply) {
				t.Errorf("stdout got %d bytes, want %d", len(got), len(reply))
			}
		})
	}
}

// TestStdioStreamEndsFirst checks half-close the other way: the stream's EOF
// closes stdout while stdin is still open, and stdin sent later still
// arrives.
func TestStdioStreamEndsFirst(t *testing.T) {
	stream, peer := memPair()
	defer peer.Close()
	inR, inW := io.Pipe()
	out := newRecorder()
	j := goJoin(context.Background(), stream, Stdio(inR, out))

	if _, err := peer.Write([]byte("greeting")); err != nil {
		t.Fatal(err)
	}
	peer.CloseWrite()
	timer := time.NewTimer(promptly)
	defer timer.Stop()
	select {
	case <-out.closed:
	case <-j.done:
		t.Fatal("Join returned before stdin ended")
	case <-timer.C:
		t.Fatal("stream EOF did not close stdout")
	}
	if got := string(out.bytes()); got != "greeting" {
		t.Fatalf("stdout = %q", got)
	}
	far := goRun(func() []byte { b, _ := io.ReadAll(peer); return b })
	inW.Write([]byte("late input"))
	inW.Close()
	if got := string(far.wait(t, promptly, "far end")); got != "late input" {
		t.Fatalf("far end got %q", got)
	}
	if r := j.wait(t, promptly, "join"); r.err != nil || r.aToB != 8 || r.bToA != 10 {
		t.Fatalf("Join = %+v", r)
	}
}

// TestStdioTeardown checks that a broken stream or a cancelled ctx ends the
// join at once even though stdin is stuck in a read that Close cannot
// interrupt, and that the error is reported.
func TestStdioTeardown(t *testing.T) {
	tests := []struct {
		name string
		end  func(peer *memConn, cancel context.CancelFunc)
		want error
	}{
		{"stream breaks", func(peer *memConn, _ context.CancelFunc) { peer.breakWith(errBroken) }, errBroken},
		{"ctx cancelled", func(_ *memConn, cancel context.CancelFunc) { cancel() }, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stuck := newStuckReader()
			defer close(stuck.release) // lets the reader goroutine end before goleak looks
			stream, peer := memPair()
			defer peer.Close()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var out bytes.Buffer
			j := goJoin(ctx, stream, Stdio(stuck, &out))
			peer.Write([]byte("partial"))
			<-stuck.entered
			tt.end(peer, cancel)
			r := j.wait(t, promptly, "join with stuck stdin")
			if !errors.Is(r.err, tt.want) {
				t.Fatalf("Join error = %v, want %v", r.err, tt.want)
			}
		})
	}
}

// TestStdioConnMethods checks the close/half-close contract of StdioConn.
func TestStdioConnMethods(t *testing.T) {
	t.Run("CloseRead", func(t *testing.T) {
		stuck := newStuckReader()
		defer close(stuck.release)
		s := Stdio(stuck, io.Discard)
		read := goRun(func() error { _, err := s.Read(make([]byte, 10)); return err })
		<-stuck.entered
		if err := s.CloseRead(); err != nil {
			t.Fatal(err)
		}
		if err := read.wait(t, promptly, "pending Read"); err != io.EOF {
			t.Fatalf("pending Read = %v, want io.EOF", err)
		}
		if _, err := s.Read(make([]byte, 10)); err != io.EOF {
			t.Fatalf("Read after CloseRead = %v, want io.EOF", err)
		}
		if err := s.CloseRead(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second CloseRead = %v", err)
		}
		if _, err := s.Write([]byte("x")); err != nil {
			t.Fatalf("Write after CloseRead = %v", err)
		}
		s.Close()
	})
	t.Run("CloseWrite", func(t *testing.T) {
		var buf bytes.Buffer
		bw := bufio.NewWriter(&buf)
		s := Stdio(bytes.NewReader([]byte("in")), bw)
		if _, err := s.Write([]byte("out")); err != nil {
			t.Fatal(err)
		}
		if buf.Len() != 0 {
			t.Fatal("test needs a buffering writer")
		}
		if err := s.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != "out" {
			t.Fatalf("CloseWrite did not flush: %q", buf.String())
		}
		if _, err := s.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after CloseWrite = %v", err)
		}
		if err := s.CloseWrite(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second CloseWrite = %v", err)
		}
		b, err := io.ReadAll(s)
		if err != nil || string(b) != "in" {
			t.Fatalf("Read after CloseWrite = %q, %v", b, err)
		}
		s.Close()
	})
	t.Run("Close", func(t *testing.T) {
		stuck := newStuckReader()
		defer close(stuck.release)
		inR, inW := io.Pipe()
		defer inW.Close()
		pipe := &watchedPipe{PipeReader: inR, entered: make(chan struct{})}
		for _, in := range []struct {
			r       io.Reader
			entered chan struct{}
		}{{stuck, stuck.entered}, {pipe, pipe.entered}} {
			out := newRecorder()
			s := Stdio(in.r, out)
			read := goRun(func() error { _, err := s.Read(make([]byte, 10)); return err })
			<-in.entered
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := read.wait(t, promptly, "pending Read"); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("pending Read = %v, want net.ErrClosed", err)
			}
			for name, err := range map[string]error{
				"Close":      s.Close(),
				"CloseWrite": s.CloseWrite(),
				"Read":       func() error { _, err := s.Read(make([]byte, 1)); return err }(),
				"Write":      func() error { _, err := s.Write([]byte("x")); return err }(),
			} {
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("%s after Close = %v, want net.ErrClosed", name, err)
				}
			}
			if out.closes != 1 {
				t.Errorf("out closed %d times, want once", out.closes)
			}
		}
		if _, err := inW.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
			t.Errorf("in was not closed: write to it = %v", err)
		}
	})
}
