package identity

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SIDLen is the length of a SID in bytes.
const SIDLen = 32

// MinPrefix is the fewest hex digits accepted as a SID prefix.
const MinPrefix = 8

// MinPinPrefix is the fewest hex digits accepted as a prefix where it
// grants something (--allow, --trust): 64 bits, which nobody can grind a
// key to match, where 32 bits take tens of core-hours, far less with a
// vanity grinder.
const MinPinPrefix = 16

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

// ErrUnknownSID is returned (wrapped) by Resolve for a prefix that no
// known SID has; ErrAmbiguousSID for one that several have.
var (
	ErrUnknownSID   = errors.New("unknown SID prefix")
	ErrAmbiguousSID = errors.New("ambiguous SID prefix")
)

// maxCandidates bounds the SIDs an unknown-prefix error lists.
const maxCandidates = 8

// ParsePrefix checks that s is a full SID or at least MinPrefix hex digits
// of one, and returns it in upper case.
func ParsePrefix(s string) (string, error) {
	if len(s) < MinPrefix || len(s) > 2*SIDLen {
		return "", fmt.Errorf("identity: %w %q: want 64 hex digits (or a unique prefix of at least %d)", ErrMalformedSID, s, MinPrefix)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return "", fmt.Errorf("identity: %w %q: not hex", ErrMalformedSID, s)
		}
	}
	return strings.ToUpper(s), nil
}

// Match returns the known SIDs that start with prefix (upper-case hex, as
// ParsePrefix returns it), sorted and without repeats.
func Match(prefix string, known []SID) []SID {
	var out []SID
	for _, k := range known {
		if strings.HasPrefix(k.String(), prefix) {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b SID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

// Resolve parses a full SID, or a unique prefix of at least MinPrefix hex
// digits of one of the known SIDs. An ambiguous prefix is an error
// (wrapping ErrAmbiguousSID) that lists the SIDs it matches; an unknown one
// (wrapping ErrUnknownSID) lists the known SIDs, at most eight of them.
func Resolve(s string, known []SID) (SID, error) {
	if len(s) == 2*SIDLen {
		return ParseSID(s)
	}
	prefix, err := ParsePrefix(s)
	if err != nil {
		return SID{}, err
	}
	match := Match(prefix, known)
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return SID{}, fmt.Errorf("identity: %w %s: no known node has it (%s)", ErrUnknownSID, prefix, candidates(known))
	default:
		return SID{}, fmt.Errorf("identity: %w %s matches %d nodes: %s", ErrAmbiguousSID, prefix, len(match), joinSIDs(match))
	}
}

// candidates describes the known SIDs for an error message.
func candidates(known []SID) string {
	all := Match("", known)
	switch {
	case len(all) == 0:
		return "no node is known"
	case len(all) > maxCandidates:
		return fmt.Sprintf("%d known, among them: %s, ...", len(all), joinSIDs(all[:maxCandidates]))
	}
	return "known: " + joinSIDs(all)
}

func joinSIDs(sids []SID) string {
	names := make([]string, len(sids))
	for i, m := range sids {
		names[i] = m.String()
	}
	return strings.Join(names, ", ")
}
