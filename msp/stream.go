package msp

// Streams. A stream is a smux stream; the session counts the ones the
// application holds, so that after the peer ends the session cleanly it
// stays up until the application has read every stream to its end and
// closed it (smux forgets a stream as soon as both FINs passed and its
// buffer drained, which can be before the reader has seen io.EOF).

import (
	"io"
	"net"
	"sync"
	"time"

	"github.com/xtaci/smux"
)

// Stream is one MSP stream: a net.Conn with CloseWrite (half-close).
// OpenStream and Accept return a *Stream.
type Stream struct {
	st   *smux.Stream
	s    *Session
	once sync.Once
}

var (
	_ net.Conn    = (*Stream)(nil)
	_ io.WriterTo = (*Stream)(nil)
)

func (s *Session) newStream(st *smux.Stream) *Stream {
	s.open.Add(1)
	return &Stream{st: st, s: s}
}

// Read reads what the peer wrote; io.EOF after the peer's CloseWrite or
// Close.
func (st *Stream) Read(b []byte) (int, error) {
	n, err := st.st.Read(b)
	if n == 0 && err == io.EOF && len(b) > 0 {
		// smux can report the end over data it holds: a Read that found
		// the buffer empty looks for the end of the stream without the
		// buffer's lock, and once this end has half-closed, the last data
		// and the peer's FIN landing in between end the stream. The FIN
		// has been taken by then, so everything sent before it is in the
		// buffer: a second look finds it, without waiting.
		if n, err2 := st.st.Read(b); n > 0 {
			return n, err2
		}
	}
	return n, err
}

// WriteTo writes what the peer sends to w until io.EOF (returning nil) or
// an error, without an extra copy.
func (st *Stream) WriteTo(w io.Writer) (int64, error) { return st.st.WriteTo(w) }

// Write sends b to the peer; it waits while the peer's window is full.
func (st *Stream) Write(b []byte) (int, error) { return st.st.Write(b) }

// CloseWrite ends this direction: the peer reads io.EOF after everything
// written before. Reading goes on.
func (st *Stream) CloseWrite() error { return st.st.CloseWrite() }

// Close closes both directions of the stream.
func (st *Stream) Close() error {
	err := st.st.Close()
	st.once.Do(func() {
		if st.s.open.Add(-1) == 0 {
			select {
			case st.s.streamsClosed <- struct{}{}:
			default:
			}
		}
	})
	return err
}

// SetDeadline sets the read and write deadlines.
func (st *Stream) SetDeadline(t time.Time) error { return st.st.SetDeadline(t) }

// SetReadDeadline sets the deadline of Read and WriteTo.
func (st *Stream) SetReadDeadline(t time.Time) error { return st.st.SetReadDeadline(t) }

// SetWriteDeadline sets the deadline of Write.
func (st *Stream) SetWriteDeadline(t time.Time) error { return st.st.SetWriteDeadline(t) }

// LocalAddr returns the address of this end on the session's transport.
func (st *Stream) LocalAddr() net.Addr { return st.st.LocalAddr() }

// RemoteAddr returns the peer's address on the session's transport.
func (st *Stream) RemoteAddr() net.Addr { return st.st.RemoteAddr() }
