package wire

import "encoding/binary"

// Authenticated frames. A per-hop frame (DATA, ACK, PROBE, PROBEACK, SKIP)
// between neighbours is the frame itself with FlagAuth set in its type
// byte, followed by a trailer:
//
//	key id   4  the link key's id (derived with the key; tells a receiver
//	            which neighbour's key to try when a frame comes from an
//	            address it does not know, e.g. after NAT rebinding)
//	counter  8  per-direction counter, strictly increasing: the MAC's nonce
//	tag     16  MAC over every byte before it (frame, key id, counter)
//
// The MAC itself is the mesh package's business; this file only frames it.

// FlagAuth marks an authenticated frame in the type byte.
const FlagAuth byte = 0x80

// TagLen is the length of an authenticated frame's MAC.
const TagLen = 16

// AuthLen is the length of the trailer of an authenticated frame.
const AuthLen = 4 + 8 + TagLen

// AuthFrame is the trailer of an authenticated frame, parsed.
type AuthFrame struct {
	KeyID   uint32
	Counter uint64
	Covered []byte // what the tag covers: everything before it
	Tag     []byte
}

// AppendAuthHeader marks frame (one whole frame from its magic byte, in
// place) as authenticated and appends the key id and counter; the caller
// appends the TagLen-byte MAC over the result.
func AppendAuthHeader(frame []byte, keyID uint32, counter uint64) []byte {
	frame[1] |= FlagAuth
	frame = binary.BigEndian.AppendUint32(frame, keyID)
	return binary.BigEndian.AppendUint64(frame, counter)
}

// ParseAuth decodes the trailer of an authenticated frame. It does not
// check the tag, nor the frame inside.
func ParseAuth(b []byte) (AuthFrame, error) {
	var a AuthFrame
	if len(b) < 2+AuthLen || b[0] != Magic || b[1]&FlagAuth == 0 {
		return a, malformed("authenticated frame of %d bytes", len(b))
	}
	p := len(b) - AuthLen
	a.KeyID = binary.BigEndian.Uint32(b[p:])
	a.Counter = binary.BigEndian.Uint64(b[p+4:])
	a.Covered = b[:p+12]
	a.Tag = b[p+12:]
	return a, nil
}

// Inner returns the frame an authenticated frame b carries: b without its
// trailer and with FlagAuth cleared (in place). b must have passed
// ParseAuth.
func Inner(b []byte) []byte {
	b = b[:len(b)-AuthLen]
	b[1] &^= FlagAuth
	return b
}
