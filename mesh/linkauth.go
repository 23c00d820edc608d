package mesh

// Link keys: every per-hop frame between two neighbours is authenticated.
//
// Flow: each side makes an ephemeral X25519 key for the link when it
// admits the neighbour and sends its public half in every hello to it,
// signed with the rest of the hello (wire.Hello.Eph), together with the
// neighbour's one it holds (PeerEph). A verified hello addressed to this
// node with a new Eph derives the link keys (deriveLinkKeys): one AES-GCM
// key per direction, used with an empty plaintext, so the 16-byte tag is a
// MAC over the frame (GMAC). The keys are confirmed, and the link starts
// sending DATA and probes, once the neighbour shows it holds them too: a
// hello whose PeerEph is our key, or a frame that passes the MAC.
//
// Sending: seal appends the key id, the next counter of the direction and
// the tag (wire/auth.go). Receiving (node.authenticate, on the read loop):
// the key is found by the frame's source address (or, for an address not
// known, by its key id), the tag checked, the counter checked against a
// sliding window of the ones seen (a replayed frame is dropped), and only
// then is the frame handed on, the neighbour marked heard, or its address
// moved.

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// linkKeyInfo is the HKDF info of link keys.
const linkKeyInfo = "servald mesh link v1"

// replayWindow is how far behind the highest counter received a frame's
// counter may be and still be accepted (once). Frames of one direction
// are reordered only between the goroutines that write them, by a few.
const replayWindow = 1024

// linkKeys are the keys of one link, derived from both sides' ephemeral
// keys. A new pair of ephemerals (either side made a new link) gives new
// keys; the old ones are dropped with their replay window.
type linkKeys struct {
	tx, rx     cipher.AEAD
	txID, rxID uint32      // key ids: ours in frames we send, the peer's in frames it sends
	peerEph    wire.EphKey // the neighbour's ephemeral these keys were made with
	confirmed  atomic.Bool // the neighbour holds these keys too

	mu     sync.Mutex
	replay replayState // guarded by mu
}

// newEph makes an ephemeral X25519 key for a link.
func newEph() (*ecdh.PrivateKey, error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	return k, nil
}

// ephPublic returns the public half of k.
func ephPublic(k *ecdh.PrivateKey) (e wire.EphKey) {
	copy(e[:], k.PublicKey().Bytes())
	return e
}

// deriveLinkKeys derives the keys of the link between own (this node,
// with its ephemeral key) and peer (with its ephemeral public key):
// HKDF-SHA256 over the X25519 shared secret, salted with both SIDs and
// both ephemerals in the order of the SIDs, so both sides derive the same
// four values; the side with the lower SID sends under the first key.
func deriveLinkKeys(ownSID identity.SID, own *ecdh.PrivateKey, peerSID identity.SID, peerEph wire.EphKey) (*linkKeys, error) {
	pub, err := ecdh.X25519().NewPublicKey(peerEph[:])
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	shared, err := own.ECDH(pub) // fails on a low-order key (all-zero secret)
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	ownEph := ephPublic(own)
	low := bytes.Compare(ownSID[:], peerSID[:]) < 0
	salt := make([]byte, 0, 2*identity.SIDLen+2*wire.EphKeyLen)
	if low {
		salt = append(append(append(append(salt, ownSID[:]...), peerSID[:]...), ownEph[:]...), peerEph[:]...)
	} else {
		salt = append(append(append(append(salt, peerSID[:]...), ownSID[:]...), peerEph[:]...), ownEph[:]...)
	}
	okm, err := hkdf.Key(sha256.New, shared, salt, linkKeyInfo, 2*32+2*4)
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	first, second := okm[0:32], okm[32:64]
	firstID, secondID := binary.BigEndian.Uint32(okm[64:]), binary.BigEndian.Uint32(okm[68:])
	if !low {
		first, second, firstID, secondID = second, first, secondID, firstID
	}
	k := &linkKeys{txID: firstID, rxID: secondID, peerEph: peerEph}
	if k.tx, err = newGMAC(first); err != nil {
		return nil, err
	}
	if k.rx, err = newGMAC(second); err != nil {
		return nil, err
	}
	return k, nil
}

func newGMAC(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("mesh: link key: %w", err)
	}
	return g, nil
}

// nonceLen is the GCM nonce: the key id and counter of the trailer, as
// they stand before the tag. The key id is fixed per key and counters
// never repeat under one (see sendLink), so neither do nonces.
const nonceLen = 12

// seal authenticates frame (one whole frame, marked in place) with
// counter ctr: it returns frame with the trailer appended, in frame's
// spare capacity when there is room.
func (k *linkKeys) seal(frame []byte, ctr uint64) []byte {
	b := wire.AppendAuthHeader(frame, k.txID, ctr)
	tag := k.tx.Seal(b[len(b):len(b)], b[len(b)-nonceLen:], nil, b)
	return append(b, tag...)
}

// open reports whether a's tag is right under the receive key.
func (k *linkKeys) open(a *wire.AuthFrame) bool {
	_, err := k.rx.Open(nil, a.Covered[len(a.Covered)-nonceLen:], a.Tag, a.Covered)
	return err == nil
}

// fresh records counter ctr of a frame that passed open and reports
// whether it is new: not seen before and within the window.
func (k *linkKeys) fresh(ctr uint64) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.replay.accept(ctr)
}

// replayState is a sliding window of the counters received: top is the
// highest, bit c%replayWindow of seen is set for every counter in
// (top-replayWindow, top] received.
type replayState struct {
	top  uint64
	seen [replayWindow / 64]uint64
}

// accept records ctr and reports whether it was new. Counter 0 is never
// sent.
func (r *replayState) accept(ctr uint64) bool {
	if ctr == 0 {
		return false
	}
	if ctr > r.top {
		if ctr-r.top >= replayWindow {
			clear(r.seen[:])
		} else {
			for c := r.top + 1; c < ctr; c++ {
				r.seen[c/64%uint64(len(r.seen))] &^= 1 << (c % 64)
			}
		}
		r.top = ctr
		r.seen[ctr/64%uint64(len(r.seen))] |= 1 << (ctr % 64)
		return true
	}
	if r.top-ctr >= replayWindow {
		return false
	}
	w, bit := ctr/64%uint64(len(r.seen)), uint64(1)<<(ctr%64)
	if r.seen[w]&bit != 0 {
		return false
	}
	r.seen[w] |= bit
	return true
}

// errNoLinkKey: a frame for a neighbour whose link has no keys yet.
var errNoLinkKey = errors.New("mesh: link has no key yet")

// ready reports whether the link to nb is keyed and the neighbour holds
// the keys too: only then does the link send DATA and MTU probes.
func (nb *neighbour) ready() bool {
	k := nb.keys.Load()
	return k != nil && k.confirmed.Load()
}

// sendLink authenticates frame (in place, using its spare capacity) and
// writes it to nb at to.
func (n *Node) sendLink(nb *neighbour, frame []byte, to net.Addr) error {
	k := nb.keys.Load()
	if k == nil {
		return errNoLinkKey
	}
	b := k.seal(frame, nb.txCtr.Add(1))
	if err := n.send(b, to); err != nil {
		return err
	}
	nb.framesOut.Add(1)
	nb.bytesOut.Add(uint64(len(b)))
	return nil
}

// confirm marks k, nb's keys, as held by the neighbour too; the first
// time, the link starts sending what waited for it and MTU discovery
// starts.
func (n *Node) confirm(nb *neighbour, k *linkKeys) {
	if k.confirmed.Load() || !k.confirmed.CompareAndSwap(false, true) {
		return
	}
	nb.link.kick()
	n.probe(nb)
}

// authenticate checks the authenticated frame in bp from addr (read
// loop): the neighbour's key (by address, or by key id for an address
// that is not a neighbour's), the tag, the counter. On success it strips
// the trailer from bp, moves the neighbour to from if it came from
// elsewhere, and returns the neighbour; otherwise it counts the frame and
// returns nil.
func (n *Node) authenticate(bp *[]byte, from net.Addr) *neighbour {
	a, err := wire.ParseAuth(*bp)
	if err != nil {
		n.stats.malformed.Add(1)
		return nil
	}
	key := from.String()
	n.mu.RLock()
	at := n.byAddr[key]
	nb := at
	if k := nbKeys(at); k == nil || k.rxID != a.KeyID {
		nb = n.byKeyID[a.KeyID]
	}
	n.mu.RUnlock()
	k := nbKeys(nb)
	if k == nil || k.rxID != a.KeyID {
		if at != nil {
			n.stats.badMAC.Add(1)
		} else {
			n.stats.unknownSource.Add(1)
		}
		return nil
	}
	if !k.open(&a) {
		n.stats.badMAC.Add(1)
		return nil
	}
	if !k.fresh(a.Counter) {
		n.stats.replayed.Add(1)
		return nil
	}
	if nb != at && !n.moveNeighbour(nb, from) {
		return nil
	}
	n.confirm(nb, k)
	*bp = wire.Inner(*bp)
	return nb
}

func nbKeys(nb *neighbour) *linkKeys {
	if nb == nil {
		return nil
	}
	return nb.keys.Load()
}

// moveNeighbour moves nb to addr, where an authenticated frame of its
// came from (NAT rebinding, roaming). An address another neighbour holds
// is not taken from it: the frame is dropped and counted as AddrTaken.
func (n *Node) moveNeighbour(nb *neighbour, addr net.Addr) bool {
	key := addr.String()
	n.mu.Lock()
	defer n.mu.Unlock()
	if other := n.byAddr[key]; other != nil && other != nb {
		n.stats.addrTaken.Add(1)
		return false
	}
	if n.bySID[nb.sid] != nb {
		return false // gone meanwhile
	}
	nb.mu.Lock()
	old := nb.addr.String()
	nb.addr = addr
	nb.mu.Unlock()
	if n.byAddr[old] == nb {
		delete(n.byAddr, old)
	}
	n.byAddr[key] = nb
	n.stats.moved.Add(1)
	n.log.Info("neighbour moved", "sid", nb.sid.Short(), "addr", addr, "by", "authenticated frame")
	return true
}

// rekey installs keys for nb made with the neighbour's ephemeral peerEph
// (from its verified hello) unless it has them already; it reports
// whether the keys changed. Called with n.mu held.
func (n *Node) rekeyLocked(nb *neighbour, peerEph wire.EphKey) bool {
	old := nb.keys.Load()
	if peerEph == (wire.EphKey{}) || (old != nil && old.peerEph == peerEph) {
		return false
	}
	k, err := deriveLinkKeys(n.sid, nb.eph, nb.sid, peerEph)
	if err != nil {
		n.stats.badHello.Add(1)
		n.log.Debug("mesh: link key", "sid", nb.sid.Short(), "err", err)
		return false
	}
	if old != nil && n.byKeyID[old.rxID] == nb {
		delete(n.byKeyID, old.rxID)
	}
	n.byKeyID[k.rxID] = nb
	nb.keys.Store(k)
	return true
}

// dropKeysLocked forgets nb's link keys (made with an ephemeral of the
// neighbour's that is gone: it restarted); its link waits for new ones.
// Called with n.mu held.
func (n *Node) dropKeysLocked(nb *neighbour) {
	old := nb.keys.Swap(nil)
	if old != nil && n.byKeyID[old.rxID] == nb {
		delete(n.byKeyID, old.rxID)
	}
}
