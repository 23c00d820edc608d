package msp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp/internal/seal"
)

// Transport carries a session's datagrams between this node and others.
// MDP ports (a PacketConn of package mesh, a Port of package daemon) and
// NewStreamTransport's (one reliable connection) are transports.
//
// msp learns what a failed WriteTo means from the error: one that has (in
// its chain, through errors.As) a method NoRoute() returning true says that
// nothing reaches the destination yet, so a dial keeps sending its
// handshake until its context ends; one with TooLarge() returning true says
// that the datagram did not fit the path, so the session asks MaxPayload
// again before its next packet. Other errors end a dial.
//
// A transport that reaches one node only, chosen by whoever opened it
// rather than routed by SID (a stream transport), also has a method
// SingleNode() returning true: a listener there hangs up on a handshake for
// another SID, so that the dialer fails at once instead of waiting, and on
// a transport where no session was confirmed within authTimeout (an
// unauthenticated peer holds no connection for long). When the first
// session on it is confirmed, a transport with a method PeerAuthenticated()
// is told (the splitter then lifts the one-block window it gives an
// unauthenticated peer).
//
// A transport that routes (an MDP port) may have a method
// NoProgress(sid identity.SID) bool: a session calls it when nothing it
// sent to sid was acknowledged for three probe timeouts in a row and at
// least 300 ms, and a dial when four INITs (1.5 s) went unanswered, and
// again after more of either. It returns whether the path to sid changed
// (a mesh then avoids the next hop towards sid: a relay that drops is
// routed around); if so, the session probes at once. Other transports
// leave it out.
type Transport interface {
	ReadFrom(p []byte) (int, net.Addr, error)
	WriteTo(p []byte, addr net.Addr) (int, error)
	LocalAddr() net.Addr
	Close() error
	// MaxPayload is the largest datagram that reaches sid now.
	MaxPayload(sid identity.SID) int
	// PeerAddr is the address to write to to reach MDP port on node sid.
	PeerAddr(sid identity.SID, port uint16) net.Addr
	// FromNode reports whether a datagram that ReadFrom returned with
	// address addr may have been sent by node sid. It is false only when
	// the transport knows that another node sent it; the handshake's
	// signature, not this, authenticates the peer.
	FromNode(addr net.Addr, sid identity.SID) bool
}

// noRoute reports whether a transport's write error says that nothing
// reaches the destination yet (see Transport).
func noRoute(err error) bool {
	var e interface{ NoRoute() bool }
	return errors.As(err, &e) && e.NoRoute()
}

// tooLarge reports whether a transport's write error says that the datagram
// did not fit the path (see Transport).
func tooLarge(err error) bool {
	var e interface{ TooLarge() bool }
	return errors.As(err, &e) && e.TooLarge()
}

// singleNode reports whether tr reaches one node only (see Transport).
func singleNode(tr Transport) bool {
	sn, ok := tr.(interface{ SingleNode() bool })
	return ok && sn.SingleNode()
}

// authTimeout is how long a listener keeps a single-node transport on
// which no session has been confirmed.
const authTimeout = 5 * time.Second

// Config tunes sessions. The zero value takes the defaults.
type Config struct {
	// KeepAlive is the idle time after which a session sends a keepalive.
	// Default 1 s.
	KeepAlive time.Duration
	// IdleTimeout ends a session (and fails its streams) when nothing was
	// heard from the peer for this long. Default 10 s, as in Serval.
	IdleTimeout time.Duration
	// Allow, on a listener, admits initiators; nil admits everyone.
	// Refused ones get a signed refusal before any stream exists.
	Allow func(identity.SID) bool
	// Window is the receive window of a session in bytes (and its send
	// buffer). Default 16 MiB: over lossy hops the oldest unacknowledged
	// byte waits for the slowest retransmission, so the window must cover
	// rate x (RTT + that wait). Buffers grow only as far as they are used.
	Window int
	// MaxSessions bounds a listener's sessions. Default 1024.
	MaxSessions int
	// StreamWindow is how many bytes of one stream may be in flight or
	// unread at the receiver (smux's per-stream window). Default 16 MiB:
	// a full window per round trip keeps one stream at speed over a lossy
	// path, and a stream whose reader stops holds no more than this.
	StreamWindow int
	// MaxStreams bounds the streams open at once in one session: a
	// listener resets streams beyond it, OpenStream fails. Default 4096.
	// The session's receive buffer holds 1 GiB (64 full windows of 16
	// MiB; it grows only as used), so streams whose readers stop stop only
	// themselves, never the streams beside them, until more than 63 of
	// them hold a full window each.
	MaxStreams int
	// Logger receives logs; nil is silent.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.KeepAlive <= 0 {
		c.KeepAlive = time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = 10 * time.Second
	}
	if c.Window <= 0 {
		c.Window = 16 << 20
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 1024
	}
	if c.StreamWindow <= 0 {
		c.StreamWindow = 16 << 20
	}
	c.StreamWindow = min(c.StreamWindow, maxSessionBuffer)
	if c.MaxStreams <= 0 {
		c.MaxStreams = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// maxSessionBuffer bounds a session's smux receive buffer (smux counts it
// in an int32).
const maxSessionBuffer = 1 << 30

// Errors callers branch on.
var (
	// ErrRefused: the listener refused this node (its --allow list, or no
	// listener on that port over a split connection).
	ErrRefused = seal.ErrRefused
	// ErrNoAnswer: nothing answered the handshake in time.
	ErrNoAnswer = errors.New("no answer")
	// ErrSessionEnded: the peer ended the session while the stream was open.
	ErrSessionEnded = errors.New("msp: peer ended the session")
)

// portParams encodes the MDP port a session is for into handshake params.
func portParams(port uint16) []byte { return binary.BigEndian.AppendUint16(nil, port) }

func parsePortParams(b []byte) (uint16, error) {
	if len(b) < 2 {
		return 0, fmt.Errorf("msp: handshake params of %d bytes", len(b))
	}
	return binary.BigEndian.Uint16(b), nil
}

// timeoutError is a net.Error timeout.
type timeoutError struct{ msg string }

func (e timeoutError) Error() string   { return e.msg }
func (e timeoutError) Timeout() bool   { return true }
func (e timeoutError) Temporary() bool { return true }
func (e timeoutError) Unwrap() error   { return ErrNoAnswer }
