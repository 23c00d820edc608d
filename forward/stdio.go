// Stdio end of a join: stream bytes flow to out through Write; bytes from in
// flow to the stream through Read, which a reader goroutine feeds so that
// Close can end a Read even when in cannot be interrupted (a terminal).
//
//	in ─► reader goroutine (one 64 KiB buffer, reads only on request) ─► Read
//	Write ─► out;  CloseWrite ─► out.Flush, out.Close;  Close ─► in.Close, out.Close

package forward

import (
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// StdioConn is one end of a join made of a reader (usually os.Stdin) and a
// writer (usually os.Stdout). It implements io.ReadWriteCloser and HalfCloser.
//
// Reads from in happen in a goroutine owned by the StdioConn, started by the
// first Read, which reads only while a Read call waits (no read-ahead). Close
// makes a pending Read return at once even if the read from in cannot be
// interrupted, as with a terminal on os.Stdin; that goroutine then ends when
// its read from in returns (Close closes in if it is an io.Closer, which ends
// it at once for pipes), or with the process.
//
// Writes go straight to out, so a Write blocks while out does.
type StdioConn struct {
	in  io.Reader
	out io.Writer

	rmu       sync.Mutex // serialises Read; guards started
	started   bool
	buf       []byte        // owned by the reader goroutine between a request and its result
	req       chan int      // Read -> reader goroutine: read up to n bytes into buf
	res       chan ioResult // reader goroutine -> Read
	readEnded chan struct{} // closed by CloseRead
	closed    chan struct{} // closed by Close
	readOnce  sync.Once     // closes readEnded
	closeOnce sync.Once     // closes closed
	outOnce   sync.Once     // flushes (on CloseWrite) and closes out
	wmu       sync.Mutex    // serialises Write and CloseWrite; guards writeDone
	writeDone bool          // CloseWrite was called
}

type ioResult struct {
	n   int
	err error
}

// Stdio returns a StdioConn reading from in and writing to out.
//
// Ownership is explicit: CloseWrite flushes out if it has a Flush() error
// method (bufio.Writer) and then closes out if it is an io.Closer; Close
// closes in and out when they are io.Closers (without flushing). For
// os.Stdin and os.Stdout in a command that is what is wanted: the process
// reading our stdout sees EOF as soon as the stream has ended. Wrap a writer
// in a type without Close (e.g. struct{ io.Writer }) to keep it open.
func Stdio(in io.Reader, out io.Writer) *StdioConn {
	return &StdioConn{
		in:        in,
		out:       out,
		req:       make(chan int),
		res:       make(chan ioResult),
		readEnded: make(chan struct{}),
		closed:    make(chan struct{}),
	}
}

// Read reads from in. After CloseRead it returns io.EOF, after Close
// net.ErrClosed, and a Read waiting on in returns as soon as either happens.
func (s *StdioConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	s.rmu.Lock()
	defer s.rmu.Unlock()
	if err := s.readErr(); err != nil {
		return 0, err
	}
	if !s.started {
		s.started = true
		s.buf = make([]byte, BufferSize)
		go s.reader()
	}
	select {
	case s.req <- min(len(p), len(s.buf)):
	case <-s.closed:
		return 0, net.ErrClosed
	case <-s.readEnded:
		return 0, io.EOF
	}
	select {
	case r := <-s.res:
		copy(p, s.buf[:r.n])
		return r.n, r.err
	case <-s.closed:
		return 0, net.ErrClosed
	case <-s.readEnded:
		return 0, io.EOF
	}
}

// readErr reports whether reads have been ended, closed taking precedence.
func (s *StdioConn) readErr() error {
	select {
	case <-s.closed:
		return net.ErrClosed
	default:
	}
	select {
	case <-s.readEnded:
		return io.EOF
	default:
		return nil
	}
}

// reader serves Read requests from in until CloseRead or Close.
func (s *StdioConn) reader() {
	for {
		var n int
		select {
		case n = <-s.req:
		case <-s.closed:
			return
		case <-s.readEnded:
			return
		}
		k, err := s.in.Read(s.buf[:n])
		select {
		case s.res <- ioResult{k, err}:
		case <-s.closed:
			return
		case <-s.readEnded:
			return
		}
	}
}

// Write writes p to out. After CloseWrite or Close it returns net.ErrClosed.
func (s *StdioConn) Write(p []byte) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.writeDone {
		return 0, net.ErrClosed
	}
	select {
	case <-s.closed:
		return 0, net.ErrClosed
	default:
	}
	return s.out.Write(p)
}

// CloseWrite ends the output: it waits for a Write in progress, flushes out
// if it has a Flush() error method, and closes out if it is an io.Closer.
// Later calls return net.ErrClosed.
func (s *StdioConn) CloseWrite() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.writeDone {
		return net.ErrClosed
	}
	s.writeDone = true
	select {
	case <-s.closed:
		return net.ErrClosed
	default:
	}
	return s.closeOut(true)
}

// closeOut flushes (if asked) and closes out; only the first call acts, later
// ones return nil.
func (s *StdioConn) closeOut(flush bool) error {
	var err error
	s.outOnce.Do(func() {
		if f, ok := s.out.(interface{ Flush() error }); ok && flush {
			err = f.Flush()
		}
		if c, ok := s.out.(io.Closer); ok {
			if cerr := c.Close(); err == nil {
				err = cerr
			}
		}
	})
	return err
}

// CloseRead ends the input: a pending and every later Read returns io.EOF.
// It does not close in. Later calls return net.ErrClosed.
func (s *StdioConn) CloseRead() error {
	err := net.ErrClosed
	s.readOnce.Do(func() {
		close(s.readEnded)
		err = nil
	})
	return err
}

// Close ends both directions without flushing: a pending Read returns
// net.ErrClosed at once, in and out are closed if they are io.Closers, and
// later Writes fail. It does not wait for a Write blocked in out (closing out
// may end it). Later calls return net.ErrClosed.
func (s *StdioConn) Close() error {
	err := net.ErrClosed
	s.closeOnce.Do(func() {
		close(s.closed)
		err = nil
		if c, ok := s.in.(io.Closer); ok {
			err = c.Close()
		}
		if cerr := s.closeOut(false); err == nil {
			err = cerr
		}
	})
	return err
}

// TerminalStdio is Stdio with one difference when in is a terminal: the
// far end finishing also ends our input, so that `msp listen 5000 > file`
// typed at a prompt exits when the sender is done, as in Serval, instead of
// waiting for ^D. Otherwise half-close is strict (EOF on in ends our
// direction only).
func TerminalStdio(in io.Reader, out io.Writer) io.ReadWriteCloser {
	sc := Stdio(in, out)
	if f, ok := in.(*os.File); ok {
		if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err == nil {
			return endInputWithOutput{sc}
		}
	}
	return sc
}

type endInputWithOutput struct{ *StdioConn }

func (s endInputWithOutput) CloseWrite() error {
	err := s.StdioConn.CloseWrite()
	s.CloseRead()
	return err
}
