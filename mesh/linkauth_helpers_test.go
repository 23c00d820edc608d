package mesh

import (
	"bytes"
	"crypto/ecdh"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// rawAuth is a raw peer's side of its link keys: its ephemeral key, sent
// in the hello it joins with, and the keys made with the node's one from
// the node's hello.
type rawAuth struct {
	sid  identity.SID
	eph  *ecdh.PrivateKey
	keys atomic.Pointer[linkKeys]
	ctr  atomic.Uint64
}

// startAuth gives the hello r joins with (addressed to the node) r's
// ephemeral key.
func (r *rawPeer) startAuth(h *wire.Hello) {
	r.t.Helper()
	eph, err := newEph()
	if err != nil {
		r.t.Fatal(err)
	}
	r.auth = &rawAuth{sid: h.SID, eph: eph}
	if r.n != nil && h.To == (identity.SID{}) {
		h.To = r.n.SID()
	}
	h.Eph = ephPublic(eph)
}

// heard takes a hello the node sent r: its ephemeral key for the link
// gives r the link keys.
func (r *rawPeer) heard(b []byte) {
	r.t.Helper()
	if r.auth == nil {
		return
	}
	h, err := wire.ParseHello(b)
	if err != nil || h.To != r.auth.sid || h.Eph == (wire.EphKey{}) {
		return
	}
	if k := r.auth.keys.Load(); k != nil && k.peerEph == h.Eph {
		return
	}
	k, err := deriveLinkKeys(r.auth.sid, r.auth.eph, h.SID, h.Eph)
	if err != nil {
		r.t.Fatal(err)
	}
	r.auth.keys.Store(k)
}

// linkKeys returns r's link keys, reading what the node sent until its
// hello with its ephemeral key came.
func (r *rawPeer) linkKeys() *linkKeys {
	r.t.Helper()
	if k := r.auth.keys.Load(); k != nil {
		return k
	}
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer r.c.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	for r.auth.keys.Load() == nil {
		k, _, err := r.c.ReadFrom(buf)
		if err != nil {
			r.t.Fatalf("no hello with the node's link key: %v", err)
		}
		if typ, err := wire.Type(buf[:k]); err == nil && typ == wire.TypeHello {
			r.heard(buf[:k])
		}
	}
	return r.auth.keys.Load()
}

// link returns frame authenticated as r's, with r's next counter.
func (r *rawPeer) link(frame []byte) []byte {
	return r.linkKeys().seal(bytes.Clone(frame), r.auth.ctr.Add(1))
}

// isLinkFrame reports whether b is a plain frame that travels
// authenticated between neighbours (but PROBE: a plain one is a barrier).
func isLinkFrame(b []byte) bool {
	if len(b) < 2 || b[0] != wire.Magic {
		return false
	}
	switch b[1] {
	case wire.TypeData, wire.TypeAck, wire.TypeSkip, wire.TypeProbeAck:
		return true
	}
	return false
}

// unwrap returns the frame inside b if b is authenticated under r's link
// keys, nil if it fails them, and b itself if it is a plain frame.
func (r *rawPeer) unwrap(b []byte) []byte {
	if len(b) < 2 || b[1]&wire.FlagAuth == 0 {
		return b
	}
	a, err := wire.ParseAuth(b)
	k := r.auth.keys.Load()
	if err != nil || k == nil || a.KeyID != k.rxID || !k.open(&a) {
		return nil
	}
	return wire.Inner(b)
}
