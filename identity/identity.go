package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
)

// SeedLen is the length of the private seed an identity is made from.
const SeedLen = ed25519.SeedSize

// SignatureLen is the length of a signature.
const SignatureLen = ed25519.SignatureSize

// Identity is a node's key pair. It is immutable and safe for concurrent use.
type Identity struct {
	priv ed25519.PrivateKey
	sid  SID
}

// Generate makes a new identity from r (crypto/rand when nil).
func Generate(r io.Reader) (*Identity, error) {
	if r == nil {
		r = rand.Reader
	}
	seed := make([]byte, SeedLen)
	if _, err := io.ReadFull(r, seed); err != nil {
		return nil, fmt.Errorf("identity: generate: %w", err)
	}
	return FromSeed(seed)
}

// FromSeed makes the identity for a 32-byte seed.
func FromSeed(seed []byte) (*Identity, error) {
	if len(seed) != SeedLen {
		return nil, fmt.Errorf("identity: seed is %d bytes, want %d", len(seed), SeedLen)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	id := &Identity{priv: priv}
	copy(id.sid[:], priv.Public().(ed25519.PublicKey))
	return id, nil
}

// SID returns the identity's public address.
func (id *Identity) SID() SID { return id.sid }

// Seed returns a copy of the private seed (for the keyring file only).
func (id *Identity) Seed() []byte { return append([]byte(nil), id.priv.Seed()...) }

// Sign signs msg.
func (id *Identity) Sign(msg []byte) []byte { return ed25519.Sign(id.priv, msg) }

// Verify reports whether sig is sid's signature of msg.
func Verify(sid SID, msg, sig []byte) bool {
	if len(sig) != SignatureLen {
		return false
	}
	return ed25519.Verify(sid.PublicKey(), msg, sig)
}
