package daemon

// Buffered frame I/O on a bound connection.
//
// Data path: writers append whole frames to a bounded pending buffer and
// kick the flusher goroutine, which writes everything pending in one
// syscall; while it writes, new frames collect for the next one (group
// commit), so a burst of datagrams costs a few writes, not one each. A full
// buffer makes writers wait (back-pressure). Readers take frames from a
// bufio.Reader large enough for the largest frame, peeking before
// consuming so that a read deadline never leaves half a frame consumed.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// pendingLimit bounds the bytes waiting in a frameWriter.
const pendingLimit = 256 << 10

// errFull: a non-blocking write found the buffer full.
var errFull = errors.New("daemon: write buffer full")

// frameWriter writes frames to conn through a bounded buffer and one
// flusher goroutine.
type frameWriter struct {
	conn net.Conn
	kick chan struct{} // cap 1: something is pending
	done chan struct{} // closed by close
	exit chan struct{} // closed when the flusher has ended

	mu      sync.Mutex
	pending []byte        // guarded by mu
	room    chan struct{} // closed and replaced after each flush; guarded by mu
	waiting bool          // someone waits on room; guarded by mu
	closing bool          // no more frames; flusher drains and ends; guarded by mu
	err     error         // sticky write error; guarded by mu
}

func newFrameWriter(conn net.Conn) *frameWriter {
	w := &frameWriter{
		conn: conn,
		kick: make(chan struct{}, 1),
		done: make(chan struct{}),
		exit: make(chan struct{}),
		room: make(chan struct{}),
	}
	go w.flusher()
	return w
}

// write appends one frame, built by appendFn from the pending buffer, of at
// most size bytes. With block it waits for room until deadline (nil: no
// deadline) closes; without it a full buffer gives errFull.
func (w *frameWriter) write(size int, appendFn func([]byte) []byte, block bool, deadline <-chan struct{}) error {
	w.mu.Lock()
	for {
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return err
		}
		if w.closing {
			w.mu.Unlock()
			return net.ErrClosed
		}
		// One frame larger than the limit still goes when nothing is pending.
		if len(w.pending) == 0 || len(w.pending)+size <= pendingLimit {
			break
		}
		if !block {
			w.mu.Unlock()
			return errFull
		}
		w.waiting = true
		room := w.room
		w.mu.Unlock()
		select {
		case <-room:
		case <-w.done:
			return net.ErrClosed
		case <-deadline:
			return os.ErrDeadlineExceeded
		}
		w.mu.Lock()
	}
	w.pending = appendFn(w.pending)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	return nil
}

// flusher writes what is pending until close.
func (w *frameWriter) flusher() {
	defer close(w.exit)
	var spare []byte
	for {
		select {
		case <-w.kick:
		case <-w.done:
			return
		}
		w.mu.Lock()
		b := w.pending
		w.pending = spare[:0]
		if w.waiting {
			close(w.room)
			w.room = make(chan struct{})
			w.waiting = false
		}
		closing := w.closing
		w.mu.Unlock()
		if len(b) > 0 {
			if _, err := w.conn.Write(b); err != nil {
				w.mu.Lock()
				w.err = err
				if w.waiting {
					close(w.room)
					w.room = make(chan struct{})
					w.waiting = false
				}
				w.mu.Unlock()
				return
			}
		}
		if cap(b) > 4*pendingLimit {
			b = nil // do not keep a buffer grown by one huge frame
		}
		spare = b
		if closing {
			w.mu.Lock()
			empty := len(w.pending) == 0
			w.mu.Unlock()
			if empty {
				return
			}
			select {
			case w.kick <- struct{}{}:
			default:
			}
		}
	}
}

// drain stops new frames, lets the flusher write what is pending for at
// most d, and stops it.
func (w *frameWriter) drain(d time.Duration) {
	w.mu.Lock()
	w.closing = true
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.exit:
	case <-t.C:
		w.conn.SetWriteDeadline(time.Now()) // unblock a stuck write
	}
	w.close()
}

// close stops the flusher at once, dropping what is pending, and waits for
// it. The caller closes conn (a flusher stuck in Write needs that).
func (w *frameWriter) close() {
	w.mu.Lock()
	w.closing = true
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.mu.Unlock()
}

// wait waits for the flusher to end.
func (w *frameWriter) wait() { <-w.exit }

// frameReader reads frames from a buffered connection.
type frameReader struct {
	r       *bufio.Reader
	consume int // bytes of the previous frame not yet discarded
}

// newFrameReader reads frames of at most maxDataFrame bytes from r (which
// may be a smaller bufio.Reader already holding bytes).
func newFrameReader(r *bufio.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, frameHeaderLen+maxDataFrame)}
}

// next returns the next frame; body is valid until the next call. An error
// of the underlying reader (a deadline, say) consumes nothing: calling again
// continues where it stopped.
func (fr *frameReader) next(limit int) (typ byte, body []byte, err error) {
	if fr.consume > 0 {
		fr.r.Discard(fr.consume) // buffered: cannot fail
		fr.consume = 0
	}
	hdr, err := fr.r.Peek(frameHeaderLen)
	if err != nil {
		return 0, nil, err
	}
	l := binary.BigEndian.Uint32(hdr)
	if l < 1 || uint64(l) > uint64(min(limit, maxDataFrame)) {
		return 0, nil, fmt.Errorf("%w: length %d (limit %d)", errMalformed, l, limit)
	}
	b, err := fr.r.Peek(frameHeaderLen + int(l))
	if err != nil {
		return 0, nil, err
	}
	typ, body, n, err := parseFrame(b, limit)
	if err != nil {
		return 0, nil, err
	}
	fr.consume = n
	return typ, body, nil
}
