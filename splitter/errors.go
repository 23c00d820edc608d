package splitter

// Errors returned by sessions and listeners.

import (
	"errors"
	"fmt"
	"net"
	"os"
)

// NegotiationError reports a parameter on which the two ends of a session
// disagree (protocol version, FEC data:parity shards, payload size). The
// dialling side gets it from Dial (ByPeer true); the listener passes it to
// Config.OnRefused and logs it (ByPeer false).
type NegotiationError struct {
	Param  string // "version", "fec" or "payload size"
	Local  string // this end's value
	Peer   string // the other end's value
	ByPeer bool   // the peer refused us (true) or we refused the peer (false)
	Remote string // the peer's address
}

// Error names the parameter and both values, from this end's point of view.
func (e *NegotiationError) Error() string {
	if e.ByPeer {
		return fmt.Sprintf("splitter: peer refused: %s mismatch: local %s, peer %s", e.Param, e.Local, e.Peer)
	}
	return fmt.Sprintf("splitter: refused session from %s: %s mismatch: local %s, peer %s", e.Remote, e.Param, e.Local, e.Peer)
}

// RefusedError reports a session or connection refused for a reason other
// than a parameter mismatch (unknown session, bad token, session full,
// backlog full, malformed hello, listener closing).
type RefusedError struct {
	Reason string
	ByPeer bool   // the peer refused us (true) or we refused the peer (false)
	Remote string // the peer's address
	code   uint8
}

// Error says who refused and why.
func (e *RefusedError) Error() string {
	if e.ByPeer {
		return "splitter: peer refused: " + e.Reason
	}
	return fmt.Sprintf("splitter: refused connection from %s: %s", e.Remote, e.Reason)
}

// Errors a session can end with (test with errors.Is).
var (
	// ErrPeerClosed: the peer closed the session before ending its
	// direction of the stream with CloseWrite or Close.
	ErrPeerClosed = errors.New("splitter: peer closed the session")
	// ErrPeerTimeout: no connection to the peer could be kept or re-opened
	// for Config.PeerTimeout.
	ErrPeerTimeout = errors.New("splitter: peer unreachable")
	// ErrProtocol: the peer sent something the protocol does not allow.
	ErrProtocol = errors.New("splitter: protocol error")
	// ErrWriteClosed: Write after CloseWrite.
	ErrWriteClosed = errors.New("splitter: write after CloseWrite")
)

var errClosed = fmt.Errorf("splitter: %w", net.ErrClosed)

func opError(op string, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "splitter", Addr: addr, Err: err}
}

func timeoutError(op string, addr net.Addr) error { return opError(op, addr, os.ErrDeadlineExceeded) }
