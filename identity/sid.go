// Package identity holds a node's Ed25519 identity and its keyring file.
// A SID (Serval ID) is the 32-byte Ed25519 public key itself, so an address
// cannot be claimed without the private key that signs for it.
package identity

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
)

// SIDLen is the length of a SID in bytes.
const SIDLen = 32

// MinPrefix is the fewest hex digits accepted as a SID prefix.
const MinPrefix = 8

// SID is a node address: its Ed25519 public key.
type SID [SIDLen]byte

// String returns the SID as 64 upper-case hex digits.
func (s SID) String() string { return strings.ToUpper(hex.EncodeToString(s[:])) }

// Short returns the first 8 hex digits, for logs and tables.
func (s SID) Short() string { return s.String()[:MinPrefix] }

// IsZero reports whether s is the zero SID.
func (s SID) IsZero() bool { return s == SID{} }

// MarshalText implements encoding.TextMarshaler.
func (s SID) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *SID) UnmarshalText(b []byte) error {
	v, err := ParseSID(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// PublicKey returns the SID as an Ed25519 public key.
func (s SID) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(s[:]) }

// ErrMalformedSID is returned (wrapped) for text that is not a SID.
var ErrMalformedSID = errors.New("malformed SID")

// ParseSID parses exactly 64 hex digits, in either case.
func ParseSID(s string) (SID, error) {
	var sid SID
	if len(s) != 2*SIDLen {
		return sid, fmt.Errorf("identity: %w %q: want 64 hex digits, got %d characters", ErrMalformedSID, s, len(s))
	}
	if _, err := hex.Decode(sid[:], []byte(s)); err != nil {
		return SID{}, fmt.Errorf("identity: %w %q: not hex", ErrMalformedSID, s)
	}
	return sid, nil
}

// Resolve parses a full SID, or a unique prefix of at least MinPrefix hex
// digits of one of the known SIDs. An ambiguous or unknown prefix is an error
// that lists the candidates.
func Resolve(s string, known []SID) (SID, error) {
	if len(s) == 2*SIDLen {
		return ParseSID(s)
	}
	if len(s) < MinPrefix || len(s) > 2*SIDLen {
		return SID{}, fmt.Errorf("identity: %w %q: want 64 hex digits (or a unique prefix of at least %d)", ErrMalformedSID, s, MinPrefix)
	}
	if _, err := hex.DecodeString(s[:len(s)&^1]); err != nil {
		return SID{}, fmt.Errorf("identity: %w %q: not hex", ErrMalformedSID, s)
	}
	up := strings.ToUpper(s)
	var match []SID
	for _, k := range known {
		if strings.HasPrefix(k.String(), up) {
			match = append(match, k)
		}
	}
	sort.Slice(match, func(i, j int) bool { return match[i].String() < match[j].String() })
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return SID{}, fmt.Errorf("identity: no known node has a SID starting with %s (%d known)", up, len(known))
	default:
		names := make([]string, len(match))
		for i, m := range match {
			names[i] = m.String()
		}
		return SID{}, fmt.Errorf("identity: SID prefix %s is ambiguous: %s", up, strings.Join(names, ", "))
	}
}
