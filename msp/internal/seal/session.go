// Record layer flow:
//
//	send:    plaintext ─▶ Session.Seal ─▶ DATA packet (type, receiver index, counter, ciphertext+tag) ─▶ MDP
//	receive: MDP ─▶ PacketType / ReceiverIndex (find the Session) ─▶ Session.Open
//	         (AEAD check, then replay window) ─▶ plaintext
//
// Every MSP packet after the handshake goes through here, so Seal and Open
// do not allocate when dst has room.

package seal

import (
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/servald/servald/identity"
)

var be = binary.BigEndian

// Packet types: the first byte of every MSP datagram.
const (
	TypeInit     byte = 0x01 // handshake: initiator to responder
	TypeResponse byte = 0x02 // handshake: responder accepts
	TypeRefuse   byte = 0x03 // handshake: responder refuses
	TypeData     byte = 0x04 // sealed record
)

// Record layer sizes.
const (
	// HeaderLen is the DATA header: type, receiver index (4), counter
	// (8). The index and counter together are the 12-byte AEAD nonce,
	// unique per key since the index is fixed per session and direction.
	HeaderLen = 1 + chacha20poly1305.NonceSize
	// TagLen is the AEAD tag length.
	TagLen = chacha20poly1305.Overhead
	// Overhead is what Seal adds to a plaintext.
	Overhead = HeaderLen + TagLen
	// MaxPackets is how many packets one Session seals before Seal returns
	// ErrExhausted (far beyond any session's life; the check is there so a
	// nonce can never repeat). Open rejects counters at or above it.
	MaxPackets = 1 << 60
)

// PacketType returns the type byte of an MSP datagram, or ErrMalformed for
// an empty datagram or an unknown type.
func PacketType(b []byte) (byte, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty datagram", ErrMalformed)
	}
	switch b[0] {
	case TypeInit, TypeResponse, TypeRefuse, TypeData:
		return b[0], nil
	}
	return 0, fmt.Errorf("%w: unknown packet type %d", ErrMalformed, b[0])
}

// ReceiverIndex returns the index a RESPONSE, REFUSE or DATA packet is
// addressed to: the LocalIndex of the Initiator or Session that must handle
// it. The index is not authenticated until that object accepts the packet.
// An INIT has no receiver index (it is addressed by SID; use ParseInit).
func ReceiverIndex(b []byte) (uint32, error) {
	if len(b) < 1+idxLen {
		return 0, fmt.Errorf("%w: %d-byte packet has no receiver index", ErrMalformed, len(b))
	}
	switch b[0] {
	case TypeResponse, TypeRefuse, TypeData:
		return be.Uint32(b[1:]), nil
	}
	return 0, fmt.Errorf("%w: packet type %d has no receiver index", ErrMalformed, b[0])
}

// Session is one end of an established (initiator) or pending (responder,
// until Confirmed) session: the keys for both directions, the send counter
// and the replay window. Seal and Open are safe for concurrent use, with
// each other and with themselves.
type Session struct {
	peer       identity.SID
	local      uint32
	remote     uint32
	initiator  bool
	initHash   [HashLen]byte
	response   []byte // responder: the RESPONSE, resent for a duplicate INIT
	peerParams []byte
	send       cipher.AEAD // safe for concurrent use (stateless after New)
	recv       cipher.AEAD

	sendCounter atomic.Uint64 // next counter to use
	confirmed   atomic.Bool

	mu     sync.Mutex
	replay replayWindow // guarded by mu
}

type sessionConfig struct {
	peer             identity.SID
	local, remote    uint32
	initiator        bool
	initHash         [HashLen]byte
	response         []byte
	peerParams       []byte
	sendKey, recvKey []byte
}

func newSession(c sessionConfig) (*Session, error) {
	send, err := chacha20poly1305.New(c.sendKey)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	recv, err := chacha20poly1305.New(c.recvKey)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	s := &Session{
		peer:       c.peer,
		local:      c.local,
		remote:     c.remote,
		initiator:  c.initiator,
		initHash:   c.initHash,
		response:   c.response,
		peerParams: c.peerParams,
		send:       send,
		recv:       recv,
	}
	// The initiator has verified the responder's key confirmation.
	s.confirmed.Store(c.initiator)
	return s, nil
}

// Peer returns the SID at the other end, proven by its signature.
func (s *Session) Peer() identity.SID { return s.peer }

// LocalIndex returns the index DATA packets for this session carry (see
// ReceiverIndex).
func (s *Session) LocalIndex() uint32 { return s.local }

// RemoteIndex returns the peer's index, which Seal writes into each packet.
func (s *Session) RemoteIndex() uint32 { return s.remote }

// IsInitiator reports whether this end started the handshake.
func (s *Session) IsInitiator() bool { return s.initiator }

// Confirmed reports whether the peer has proven it holds the session keys:
// always true on the initiator (the RESPONSE carries a key confirmation);
// on the responder, true once Open has accepted a packet. Only a confirmed
// session may replace an established one with the same peer.
func (s *Session) Confirmed() bool { return s.confirmed.Load() }

// InitHash returns HashInit of the INIT this session came from.
func (s *Session) InitHash() [HashLen]byte { return s.initHash }

// Response returns, on the responder, the RESPONSE Accept produced, to
// resend when the same INIT arrives again (the initiator did not get it);
// nil on the initiator. The caller must not modify it.
func (s *Session) Response() []byte { return s.response }

// PeerParams returns the params the peer sent in its handshake message. The
// caller must not modify them.
func (s *Session) PeerParams() []byte { return s.peerParams }

// Seal appends to dst a DATA packet carrying plaintext, encrypted and
// authenticated for the peer, and returns the extended slice. It adds
// Overhead bytes. dst and plaintext must not overlap, except to seal in
// place: plaintext at buf[HeaderLen:HeaderLen+n] and dst = buf[:0], with
// cap(buf) >= n+Overhead. After MaxPackets packets it returns ErrExhausted.
func (s *Session) Seal(dst, plaintext []byte) ([]byte, error) {
	n := s.sendCounter.Add(1) - 1
	if n >= MaxPackets {
		return dst, ErrExhausted
	}
	hdr := len(dst)
	dst = append(dst, TypeData)
	dst = be.AppendUint32(dst, s.remote)
	dst = be.AppendUint64(dst, n)
	h := dst[hdr:]
	return s.send.Seal(dst, h[1:HeaderLen], plaintext, h), nil
}

// Open authenticates and decrypts a DATA packet, appends the plaintext to
// dst and returns the extended slice. It returns ErrMalformed for a packet
// that is not DATA, ErrMisaddressed for another index, ErrAuth when the
// AEAD check fails, and ErrReplay for a counter already accepted or more
// than ReplayWindow below the highest accepted one. Packets that arrive out
// of order within the window are each accepted once. The replay window only
// moves for authentic packets. dst and packet must not overlap, except to
// open in place: dst = packet[HeaderLen:HeaderLen].
func (s *Session) Open(dst, packet []byte) ([]byte, error) {
	if len(packet) < Overhead || packet[0] != TypeData {
		return nil, ErrMalformed
	}
	if be.Uint32(packet[1:]) != s.local {
		return nil, ErrMisaddressed
	}
	n := be.Uint64(packet[1+idxLen:])
	s.mu.Lock()
	ok := s.replay.check(n)
	s.mu.Unlock()
	if !ok {
		return nil, ErrReplay
	}
	out, err := s.recv.Open(dst, packet[1:HeaderLen], packet[HeaderLen:], packet[:HeaderLen])
	if err != nil {
		return nil, ErrAuth
	}
	s.mu.Lock()
	ok = s.replay.update(n) // again: another Open may have taken n meanwhile
	s.mu.Unlock()
	if !ok {
		return nil, ErrReplay
	}
	if !s.confirmed.Load() {
		s.confirmed.Store(true)
	}
	return out, nil
}
