package mesh

import (
	"crypto/ecdh"
	"sync"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// FreshIDs gives the external attack tests (attack_udp_test.go) freshIDs:
// k identities made from seeds, fast and reproducible.
var FreshIDs = freshIDs

// AttackLink is a raw neighbour's side of its link keys, for the external
// attack tests: its ephemeral key goes in the hellos it joins with, and
// the node's hello to it gives the keys its frames are sealed with.
type AttackLink struct {
	sid identity.SID
	eph *ecdh.PrivateKey

	mu   sync.Mutex
	keys *linkKeys
	ctr  uint64
}

// NewAttackLink makes the link side of the neighbour sid; Eph is what its
// hellos carry.
func NewAttackLink(sid identity.SID) (*AttackLink, wire.EphKey, error) {
	eph, err := newEph()
	if err != nil {
		return nil, wire.EphKey{}, err
	}
	return &AttackLink{sid: sid, eph: eph}, ephPublic(eph), nil
}

// Heard takes a frame the node sent; a hello to the neighbour with the
// node's ephemeral key gives the link keys. It reports whether it has them.
func (a *AttackLink) Heard(b []byte) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys != nil {
		return true
	}
	h, err := wire.ParseHello(b)
	if err != nil || h.To != a.sid || h.Eph == (wire.EphKey{}) {
		return false
	}
	if a.keys, err = deriveLinkKeys(a.sid, a.eph, h.SID, h.Eph); err != nil {
		return false
	}
	return true
}

// Eph is the ephemeral key the neighbour's hellos carry.
func (a *AttackLink) Eph() wire.EphKey { return ephPublic(a.eph) }

// Ready reports whether Heard has the link keys.
func (a *AttackLink) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.keys != nil
}

// Seal returns frame authenticated with the link keys (nil before Heard
// had them).
func (a *AttackLink) Seal(frame []byte) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.keys == nil {
		return nil
	}
	a.ctr++
	return a.keys.seal(append([]byte(nil), frame...), a.ctr)
}

// Open returns the frame inside b, a frame the node sent sealed with the
// link keys, or nil if it does not open under them; a plain frame is
// returned as it is.
func (a *AttackLink) Open(b []byte) []byte {
	if len(b) < 2 || b[1]&wire.FlagAuth == 0 {
		return b
	}
	a.mu.Lock()
	k := a.keys
	a.mu.Unlock()
	af, err := wire.ParseAuth(b)
	if err != nil || k == nil || af.KeyID != k.rxID || !k.open(&af) {
		return nil
	}
	return wire.Inner(b)
}

// AvoidCounts are n's router's marks of failing next hops made, and the
// reports of no progress it ignored (mesh/avoid.go).
func AvoidCounts(n *Node) (marks, ignored uint64) {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	return n.router.failMarks, n.router.noProgressIgnored
}
