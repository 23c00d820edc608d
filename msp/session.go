package msp

// Sessions. Packet path, sending: a smux frame written to a stream goes
// into the session's arq.Conn; its goroutine cuts packets and calls output,
// which seals each one and writes it to the transport. Receiving: the
// endpoint's read loop opens a DATA packet with the session's keys and hands
// the plaintext to arq.Conn.Input; smux reads the ordered bytes and delivers
// them to streams. Datagrams (datagram.go) bypass arq both ways.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xtaci/smux"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp/internal/arq"
	"github.com/servald/servald/msp/internal/seal"
)

// Session is an authenticated, encrypted session with one peer, carrying
// multiplexed streams.
type Session struct {
	ep     *endpoint
	sec    *seal.Session
	remote atomic.Pointer[net.Addr] // where the peer's last authenticated record came from
	peer   identity.SID
	conn   *arq.Conn
	mux    *smux.Session
	client bool

	sealBuf   []byte // owned by the arq goroutine (output)
	maxPacket atomic.Int64

	dq    *dgramQueue // received datagrams: the dialer's own, or the listener's
	dgram dgramCounters

	open          atomic.Int64  // streams handed to the application and not closed by it
	streamsClosed chan struct{} // cap 1: open reached zero

	closing   chan struct{}
	closeOnce sync.Once
	done      chan struct{}
	err       error // why it ended; set before done closes
}

// smuxConfig: per-stream windows (smux v2) of cfg.StreamWindow, and a
// session buffer of MaxStreams of them, at most maxSessionBuffer, so that
// the session-wide buffer, which stops every stream at once when full,
// fills only when very many streams stopped reading.
func smuxConfig(cfg Config) *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.KeepAliveDisabled = true // arq keeps the session alive
	c.MaxFrameSize = 32768
	c.MaxStreamBuffer = cfg.StreamWindow
	c.MaxReceiveBuffer = int(min(int64(cfg.StreamWindow)*int64(cfg.MaxStreams), maxSessionBuffer))
	return c
}

// newSession starts the arq connection and smux over it.
func newSession(ep *endpoint, sec *seal.Session, remote net.Addr, client bool) (*Session, error) {
	s := &Session{
		ep: ep, sec: sec, peer: sec.Peer(), client: client,
		closing: make(chan struct{}),
		done:    make(chan struct{}),

		streamsClosed: make(chan struct{}, 1),
	}
	s.remote.Store(&remote)
	if s.dq = newDgramQueue(dgramQueueLen); ep.lis != nil {
		s.dq = ep.lis.dq
	}
	mp := s.packetLimit()
	s.maxPacket.Store(int64(mp))
	conn, err := arq.New(arq.Config{
		MaxPacket:   mp,
		RecvWindow:  ep.cfg.Window,
		SendBuffer:  ep.cfg.Window,
		KeepAlive:   ep.cfg.KeepAlive,
		IdleTimeout: ep.cfg.IdleTimeout,
		Output:      s.output,
		Stalled:     s.stalled,
		Logger:      ep.log,
	})
	if err != nil {
		return nil, fmt.Errorf("msp: session: %w", err)
	}
	s.conn = conn
	pipe := &arqPipe{c: conn, s: s}
	if client {
		s.mux, err = smux.Client(pipe, smuxConfig(ep.cfg))
	} else {
		s.mux, err = smux.Server(pipe, smuxConfig(ep.cfg))
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("msp: session: %w", err)
	}
	return s, nil
}

// packetLimit is the largest arq packet that fits the path after sealing.
func (s *Session) packetLimit() int {
	return max(s.ep.tr.MaxPayload(s.peer)-seal.Overhead, arq.MinPacket)
}

// output seals one arq packet and sends it (arq goroutine only).
func (s *Session) output(pkt []byte) error {
	if mp := int64(s.packetLimit()); mp != s.maxPacket.Load() {
		s.maxPacket.Store(mp)
		s.conn.SetMaxPacket(int(mp))
	}
	b, err := s.sec.Seal(s.sealBuf[:0], pkt)
	if err != nil {
		return err
	}
	s.sealBuf = b
	if _, err := s.ep.tr.WriteTo(b, s.RemoteAddr()); err != nil {
		s.ep.stats.writeErrors.Add(1)
		if tooLarge(err) {
			s.maxPacket.Store(0) // look again before the next packet
		}
		return err
	}
	return nil
}

// input takes an opened DATA record (endpoint read loop).
func (s *Session) input(plain []byte) {
	if len(plain) == 0 {
		return // the initiator's key confirmation
	}
	if isDatagram(plain) {
		s.inputDatagram(plain)
		return
	}
	if err := s.conn.Input(plain); err != nil {
		s.ep.stats.malformed.Add(1)
	}
}

// confirm sends an empty record: it proves to the responder that the
// initiator holds the new keys.
func (s *Session) confirm() error {
	b, err := s.sec.Seal(nil, nil)
	if err != nil {
		return err
	}
	_, err = s.ep.tr.WriteTo(b, s.RemoteAddr())
	return err
}

// watch ends the session when arq or smux ends (one goroutine per session).
func (s *Session) watch() {
	defer s.ep.wg.Done()
	var err error
	select {
	case <-s.conn.Done():
		err = s.conn.Err()
	case <-s.mux.CloseChan():
		err = net.ErrClosed
	case <-s.closing:
		err = net.ErrClosed
	}
	if errors.Is(err, arq.ErrPeerClosed) {
		s.drainStreams() // a clean end: let the application read what arrived
	}
	s.conn.Close()
	s.mux.Close()
	s.err = err
	close(s.done)
	s.ep.removeSession(s)
}

// drainStreams waits until the application has closed every stream, or
// until Close.
func (s *Session) drainStreams() {
	for s.open.Load() > 0 {
		select {
		case <-s.streamsClosed:
		case <-s.closing:
			return
		}
	}
}

// Peer returns the SID of the node at the other end; it is authenticated.
func (s *Session) Peer() identity.SID { return s.peer }

// RemoteAddr returns the peer's address on the transport.
func (s *Session) RemoteAddr() net.Addr { return *s.remote.Load() }

// heardFrom moves the session's reply address to from, where a record
// that authenticated under its keys came from (the peer rebound its port,
// or roamed): an address moves only on an authenticated packet, and only
// to one the transport says may be the peer's.
func (s *Session) heardFrom(from net.Addr) {
	if cur := s.RemoteAddr(); sameAddr(cur, from) || !s.ep.tr.FromNode(from, s.peer) {
		return
	}
	s.remote.Store(&from)
	s.ep.log.Info("msp: peer moved", "peer", s.peer.Short(), "to", from)
}

// sameAddr reports whether a and b are the same address. It runs for
// every packet: equal values of one comparable type (a mesh address) are
// compared as such, without formatting both (two Sprintf and a hex
// encoding of the SID were a tenth of a node's CPU).
func sameAddr(a, b net.Addr) bool {
	if t := reflect.TypeOf(a); t != nil && t == reflect.TypeOf(b) && t.Comparable() && a == b {
		return true
	}
	return a.String() == b.String()
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended (nil while it runs).
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// OpenStream opens a new stream (a *Stream) to the peer.
func (s *Session) OpenStream(ctx context.Context) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if n := s.open.Load(); n >= int64(s.ep.cfg.MaxStreams) {
		return nil, fmt.Errorf("msp: open stream to %s: %d streams open, the most a session holds", s.peer.Short(), n)
	}
	st, err := s.mux.OpenStream()
	if err != nil {
		if e := s.Err(); e != nil {
			err = e
		}
		return nil, fmt.Errorf("msp: open stream to %s: %w", s.peer.Short(), err)
	}
	return s.newStream(st), nil
}

// Shutdown ends the session gracefully: it waits (until ctx ends) for every
// byte written to be acknowledged, then tells the peer and closes.
func (s *Session) Shutdown(ctx context.Context) error {
	err := s.conn.Shutdown(ctx)
	if err != nil && errors.Is(s.conn.Err(), arq.ErrPeerClosed) {
		// The peer ended the session cleanly while we shut it down (both
		// ends finish at once, as stdio does). A peer does so only once
		// its streams have finished: what it had not acknowledged here
		// yet is nothing it wanted (smux window updates, an ACK race).
		err = nil
	}
	s.Close()
	return err
}

// Close ends the session at once; the peer's streams break. It returns when
// the session's goroutines have ended.
func (s *Session) Close() error {
	s.abort()
	<-s.done
	if s.ep.ownsTransport {
		s.ep.wg.Wait()
	}
	return nil
}

// abort asks the session to end at once, without waiting for it (for
// goroutines its end waits for).
func (s *Session) abort() { s.closeOnce.Do(func() { close(s.closing) }) }

// SessionStats are a session's counters and the state of its reliable
// byte stream (the one all its streams share), at one moment.
type SessionStats struct {
	PacketsSent         uint64 // sealed packets handed to the transport
	PacketsReceived     uint64 // well-formed packets received (duplicates included)
	BytesSent           uint64 // stream bytes sent for the first time
	BytesRetransmitted  uint64 // stream bytes sent again (loss or probe)
	BytesReceived       uint64 // stream bytes delivered in order
	PacketsLost         uint64 // packets declared lost (spurious ones included)
	SpuriousRetransmits uint64 // packets declared lost and acknowledged afterwards
	CwndUndos           uint64 // congestion reductions undone because their losses were spurious
	CongestionEvents    uint64 // loss episodes that cut the congestion window
	Collapses           uint64 // congestion windows collapsed after consecutive probe timeouts
	PTOs                uint64 // probe timeouts fired
	SlowStartExits      uint64 // slow starts ended by rising delay (HyStart) rather than loss
	CSSResumes          uint64 // conservative slow starts ended by the delay falling back
	DuplicatesReceived  uint64 // packets whose number had been received before
	MalformedReceived   uint64 // packets that did not decode, or acknowledged numbers never sent
	FlowViolations      uint64 // data beyond the advertised window: dropped
	ReassemblyDrops     uint64 // data that would pass the reassembly bound: dropped
	OutputErrors        uint64 // transport write errors (the packet counts as lost)
	Stalls              uint64 // times nothing was acknowledged for several PTOs (told to the transport)

	SRTT, RTTVar, MinRTT time.Duration // smoothed round-trip time, its variation, the least seen
	ReorderWindow        time.Duration // how late a packet may arrive before it counts as lost
	Cwnd                 int           // congestion window, bytes
	BytesInFlight        int           // bytes sent, neither acknowledged nor lost
	SendBuffered         int           // bytes written, not yet acknowledged
	RecvBuffered         int           // bytes received in order, not yet read
	PeerWindow           uint64        // stream offset the peer allows us to send up to
	MaxPacket            int           // current packet size bound, before sealing
}

// Stats returns the session's counters.
func (s *Session) Stats() SessionStats { return sessionStats(s.conn.Stats()) }

func sessionStats(a arq.Stats) SessionStats {
	return SessionStats{
		PacketsSent:         a.PacketsSent,
		PacketsReceived:     a.PacketsReceived,
		BytesSent:           a.BytesSent,
		BytesRetransmitted:  a.BytesRetransmitted,
		BytesReceived:       a.BytesReceived,
		PacketsLost:         a.PacketsLost,
		SpuriousRetransmits: a.SpuriousRetransmits,
		CwndUndos:           a.CwndUndos,
		CongestionEvents:    a.CongestionEvents,
		Collapses:           a.Collapses,
		PTOs:                a.PTOs,
		SlowStartExits:      a.SlowStartExits,
		CSSResumes:          a.CSSResumes,
		DuplicatesReceived:  a.DuplicatesReceived,
		MalformedReceived:   a.MalformedReceived,
		FlowViolations:      a.FlowViolations,
		ReassemblyDrops:     a.ReassemblyDrops,
		OutputErrors:        a.OutputErrors,
		Stalls:              a.Stalls,
		SRTT:                a.SRTT,
		RTTVar:              a.RTTVar,
		MinRTT:              a.MinRTT,
		ReorderWindow:       a.ReorderWindow,
		Cwnd:                a.Cwnd,
		BytesInFlight:       a.BytesInFlight,
		SendBuffered:        a.SendBuffered,
		RecvBuffered:        a.RecvBuffered,
		PeerWindow:          a.PeerWindow,
		MaxPacket:           a.MaxPacket,
	}
}

// arqPipe is what smux runs over: the arq byte stream, with addresses, and
// with the end of the session reported as an error rather than EOF (a
// stream that did not get its FIN has been cut off, not finished).
type arqPipe struct {
	c *arq.Conn
	s *Session
}

func (p *arqPipe) Read(b []byte) (int, error) {
	n, err := p.c.Read(b)
	if err == io.EOF {
		// The peer ended the session cleanly, after its streams had ended:
		// nothing more will come. Do not fail streams that still hold data
		// for the application; the session closes once they are done.
		if n > 0 {
			return n, nil
		}
		select {
		case <-p.s.closing:
		case <-p.s.done: // the session ended without Close (its endpoint forgot it)
		}
		return 0, ErrSessionEnded
	}
	return n, err
}

// Write sends bytes to the peer. After the peer ended the session cleanly
// only smux's window updates can still be written (all streams had ended
// on its side); they are dropped.
func (p *arqPipe) Write(b []byte) (int, error) {
	n, err := p.c.Write(b)
	if errors.Is(err, arq.ErrPeerClosed) {
		return len(b), nil
	}
	return n, err
}

func (p *arqPipe) Close() error         { return p.c.Close() }
func (p *arqPipe) LocalAddr() net.Addr  { return p.s.ep.tr.LocalAddr() }
func (p *arqPipe) RemoteAddr() net.Addr { return p.s.RemoteAddr() }
