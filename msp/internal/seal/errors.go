package seal

import (
	"errors"
	"fmt"

	"github.com/servald/servald/identity"
)

// Errors returned (possibly wrapped with detail) by this package. Callers
// branch on them with errors.Is. Every one of them means "drop the packet";
// none of them is fatal to an established Session.
var (
	// ErrMalformed: the bytes are not a well-formed packet of the expected
	// type (wrong length, unknown type, oversized field, invalid UTF-8).
	ErrMalformed = errors.New("seal: malformed packet")
	// ErrVersion: an INIT of a protocol version this package does not speak.
	ErrVersion = errors.New("seal: unsupported protocol version")
	// ErrMisaddressed: an INIT for another SID, or a RESPONSE, REFUSE or
	// DATA packet for another index than the receiving object's.
	ErrMisaddressed = errors.New("seal: packet is addressed to someone else")
	// ErrStale: an INIT whose timestamp is more than MaxInitSkew away from
	// the responder's clock (a replay, or badly skewed clocks).
	ErrStale = errors.New("seal: INIT timestamp outside the accepted clock skew")
	// ErrAuth: a signature, key confirmation or AEAD tag did not verify
	// (forgery, corruption, or a packet for other keys).
	ErrAuth = errors.New("seal: authentication failed")
	// ErrReplay: a DATA packet whose counter was already accepted, is more
	// than ReplayWindow below the highest accepted one, or is beyond MaxPackets.
	ErrReplay = errors.New("seal: replayed or out-of-window packet")
	// ErrRefused is matched (errors.Is) by a *RefusedError: the responder
	// refused the session with a valid signed REFUSE.
	ErrRefused = errors.New("seal: session refused by peer")
	// ErrExhausted: the session has sealed MaxPackets packets; a new
	// handshake is needed. Nonces are never reused.
	ErrExhausted = errors.New("seal: send counter exhausted, a new handshake is needed")
	// ErrFinished: Initiator.Finish after the handshake already ended (a
	// duplicate RESPONSE, or anything after a REFUSE).
	ErrFinished = errors.New("seal: handshake already finished")
)

// RefuseCode says why a responder refused a session.
type RefuseCode uint8

// Refusal reasons. Codes this package does not know are carried and
// reported as they are.
const (
	RefuseUnspecified RefuseCode = 0 // no particular reason
	RefuseNotAllowed  RefuseCode = 1 // the initiator is not on the responder's allow list
	RefuseNoListener  RefuseCode = 2 // nothing listens on the requested port
	RefuseBusy        RefuseCode = 3 // the responder has too many sessions
)

// String returns a short human description of c.
func (c RefuseCode) String() string {
	switch c {
	case RefuseUnspecified:
		return "refused"
	case RefuseNotAllowed:
		return "not allowed"
	case RefuseNoListener:
		return "no listener"
	case RefuseBusy:
		return "busy"
	}
	return fmt.Sprintf("refusal code %d", uint8(c))
}

// RefusedError is returned by Initiator.Finish for a REFUSE that verifies
// under the responder's SID and is bound to this initiator's INIT. It
// matches ErrRefused with errors.Is.
type RefusedError struct {
	Peer   identity.SID // the responder, who signed the refusal
	Code   RefuseCode
	Reason string // the responder's text, valid UTF-8, at most MaxReason bytes; untrusted content
}

// Error implements error. The reason text is quoted, so control characters
// from the peer cannot reach a terminal.
func (e *RefusedError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("seal: %s refused the session: %s", e.Peer.Short(), e.Code)
	}
	return fmt.Sprintf("seal: %s refused the session: %s: %q", e.Peer.Short(), e.Code, e.Reason)
}

// Is reports whether target is ErrRefused.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }
