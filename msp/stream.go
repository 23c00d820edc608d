// Streams. A stream is a smux stream; the session counts the ones the
// application holds, so that after the peer ends the session cleanly it
// stays up until the application has read every stream to its end and
// closed it (smux forgets a stream as soon as both FINs passed and its
// buffer drained, which can be before the reader has seen io.EOF).
package msp

import (
	"net"
	"sync"

	"github.com/xtaci/smux"
)

// Stream is one MSP stream: a net.Conn with CloseWrite (half-close).
type Stream struct {
	*smux.Stream
	s    *Session
	once sync.Once
}

var _ net.Conn = (*Stream)(nil)

func (s *Session) newStream(st *smux.Stream) *Stream {
	s.open.Add(1)
	return &Stream{Stream: st, s: s}
}

// Close closes both directions of the stream.
func (st *Stream) Close() error {
	err := st.Stream.Close()
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
