package mesh

// Admission: who becomes a neighbour, and what an address that has not
// proved itself can make a node do.
//
// Flow (read loop): a HELLO whose echo is not a valid cookie for the address
// it came from is answered with a COOKIE (34 bytes, smaller than the hello)
// and nothing else: no neighbour, goroutine, ring or routing state, no
// signature check. A COOKIE whose echo is our cookie for its source proves
// that address receives what we send it, and is answered with a HELLO that
// echoes its cookie; one whose echo is our cookie for a broadcast address
// (a node that heard our LAN hello) is answered with a COOKIE of the same
// size. A HELLO with a valid echo passes the cheap checks (trust list, the
// address not held by another neighbour, not stale) and then goes to the
// verifier (verify.go) for its signature; only then is the neighbour made
// (admit), within the neighbour cap.

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"net"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/ratelimit"
	"github.com/servald/servald/mesh/internal/wire"
)

// cookieRotate is how often the cookie secret changes; a cookie made under
// the previous secret is still accepted, so a cookie lives 2 to 4 minutes.
const cookieRotate = 2 * time.Minute

// cookieSecrets are the current and previous cookie secrets.
type cookieSecrets struct {
	cur, prev [32]byte
	at        time.Time
}

// cookieJar makes and checks address cookies: HMAC-SHA256 over the
// address (as its String) under a rotating secret, truncated to 16 bytes.
type cookieJar struct {
	s atomic.Pointer[cookieSecrets]
}

func newCookieJar() *cookieJar {
	j := &cookieJar{}
	j.rotate(time.Now())
	return j
}

// rotate starts a new secret; the current one becomes the previous one.
func (j *cookieJar) rotate(now time.Time) {
	s := &cookieSecrets{at: now}
	if old := j.s.Load(); old != nil {
		s.prev = old.cur
	} else {
		rand.Read(s.prev[:])
	}
	rand.Read(s.cur[:])
	j.s.Store(s)
}

// maybeRotate rotates the secret when it is cookieRotate old.
func (j *cookieJar) maybeRotate(now time.Time) {
	if now.Sub(j.s.Load().at) >= cookieRotate {
		j.rotate(now)
	}
}

func cookieFor(secret *[32]byte, addr net.Addr) (c wire.Cookie) {
	m := hmac.New(sha256.New, secret[:])
	m.Write([]byte(addr.String()))
	copy(c[:], m.Sum(nil))
	return c
}

// make returns the cookie for addr under the current secret.
func (j *cookieJar) make(addr net.Addr) wire.Cookie {
	return cookieFor(&j.s.Load().cur, addr)
}

// valid reports whether c is a cookie for addr under the current or the
// previous secret. The zero cookie (none) is never valid.
func (j *cookieJar) valid(addr net.Addr, c wire.Cookie) bool {
	if c == (wire.Cookie{}) {
		return false
	}
	s := j.s.Load()
	a, b := cookieFor(&s.cur, addr), cookieFor(&s.prev, addr)
	return hmac.Equal(a[:], c[:]) || hmac.Equal(b[:], c[:])
}

// newBucket is a full token bucket of rate events a second, bursts of
// burst.
func newBucket(rate, burst int) *ratelimit.Bucket {
	return ratelimit.New(float64(rate), float64(burst))
}

// Rates of things an address or a neighbour can make a node do.
const (
	// admitRate bounds the hello signatures checked per second for
	// addresses that are not (yet) neighbours, all together (and, apart,
	// for configured peers); admitBurst lets a node that starts among many
	// at once meet them all.
	admitRate, admitBurst = 100, 128
	// cookieAnswerRate bounds the hellos sent per second in answer to
	// COOKIEs (each is signed).
	cookieAnswerRate, cookieAnswerBurst = 100, 128
	// verifyBurst is how many signatures a neighbour may have checked at
	// once: a full table of a 2,000-node mesh on link-up.
	verifyBurst = 2048
	// originBurst is how many origins a neighbour may introduce at once.
	originBurst = 1024
)

// handleHello runs on the read loop: the cookie check, then cheap checks,
// then the signature on the verifier. See the top of this file.
func (n *Node) handleHello(b []byte, from net.Addr) {
	h, err := wire.ParseHello(b)
	if err != nil {
		n.stats.badHello.Add(1)
		n.log.Debug("mesh: hello rejected", "from", from, "err", err)
		return
	}
	if h.SID == n.sid {
		return // our own broadcast, or a loop back to ourselves
	}
	at := n.neighbourAt(from)
	if !n.cookies.valid(from, h.Echo) {
		if h.Flags&wire.FlagBroadcast != 0 && at != nil {
			return // a neighbour's LAN hello: we talk to it by unicast
		}
		n.sendCookie(from, h.Cookie)
		return
	}
	if n.trust != nil && !n.trust[h.SID] {
		n.stats.untrusted.Add(1)
		return
	}
	if at != nil && at.sid != h.SID {
		// Another identity from a live neighbour's address: it does not
		// displace the neighbour (a forged source, or a NAT mapping
		// reused before the neighbour timed out).
		n.stats.addrTaken.Add(1)
		return
	}
	n.mu.RLock()
	nb := n.bySID[h.SID]
	n.mu.RUnlock()
	bucket := n.admitBucket
	if n.peerAddrs[from.String()] {
		bucket = n.peerBucket // strangers cannot lock configured peers out
	}
	if nb != nil {
		nb.mu.Lock()
		stale := h.Seq <= nb.helloSeq
		nb.mu.Unlock()
		if stale {
			n.stats.staleHello.Add(1)
			return
		}
		if at == nb {
			bucket = nb.verifyBucket
		}
	}
	key := sha256.Sum256(b)
	if n.badSigs.has(key) {
		n.stats.badSigCached.Add(1)
		return
	}
	if !bucket.Take() {
		n.stats.verifyLimited.Add(1)
		return
	}
	frame := append([]byte(nil), b...)
	if !n.verifier.submitHello(len(frame), func() {
		if !wire.VerifyHello(frame) {
			n.badSigs.add(key)
			n.stats.badHello.Add(1)
			return
		}
		n.admit(h, from)
	}) {
		n.stats.verifyQueueDrops.Add(1)
	}
}

// sendCookie answers an address that has not proved itself: a COOKIE,
// smaller than the hello that caused it.
func (n *Node) sendCookie(to net.Addr, echo wire.Cookie) {
	n.stats.cookiesOut.Add(1)
	n.stats.controlOut.Add(wire.CookieMsgLen)
	n.send(wire.AppendCookie(nil, n.cookies.make(to), echo), to)
}

// handleCookie runs on the read loop. See the top of this file.
func (n *Node) handleCookie(b []byte, from net.Addr) {
	cookie, echo, err := wire.ParseCookie(b)
	if err != nil {
		n.stats.malformed.Add(1)
		return
	}
	switch {
	case n.cookies.valid(from, echo):
		if !n.cookieBucket.Take() {
			n.stats.verifyLimited.Add(1)
			return
		}
		nb := n.neighbourAt(from)
		if nb != nil {
			// Our echo had gone stale (a restart, or our hellos lost for
			// minutes): take the fresh one for later hellos too.
			nb.mu.Lock()
			nb.peerCookie = cookie
			nb.mu.Unlock()
		}
		n.sendHello(from, nb, 0, cookie)
	case n.echoesBroadcast(echo):
		n.sendCookie(from, cookie)
	default:
		n.stats.badCookie.Add(1)
	}
}

// echoesBroadcast reports whether c is our cookie for one of our broadcast
// addresses: whoever echoes it heard our LAN hello.
func (n *Node) echoesBroadcast(c wire.Cookie) bool {
	for _, a := range n.cfg.Broadcast {
		if n.cookies.valid(a, c) {
			return true
		}
	}
	return false
}

// admit adds or refreshes the neighbour of a verified hello that came with
// a valid echo from addr. It runs on the verifier.
func (n *Node) admit(h wire.Hello, from net.Addr) {
	key := from.String()
	n.mu.Lock()
	if n.closed.Load() {
		// Close has collected (or is about to collect) the links to stop;
		// one made now would never be stopped.
		n.mu.Unlock()
		return
	}
	if at := n.byAddr[key]; at != nil && at.sid != h.SID {
		n.mu.Unlock()
		n.stats.addrTaken.Add(1)
		return
	}
	nb := n.bySID[h.SID]
	isNew := nb == nil
	if isNew {
		if len(n.bySID) >= n.cfg.MaxNeighbours && !n.peerAddrs[key] {
			n.mu.Unlock()
			n.stats.neighbourCap.Add(1)
			return
		}
		eph, err := newEph()
		if err != nil {
			n.mu.Unlock()
			n.log.Warn("mesh: neighbour not admitted", "sid", h.SID.Short(), "err", err)
			return
		}
		nb = &neighbour{n: n, sid: h.SID, addr: from, since: time.Now(), eph: eph,
			verifyBucket: newBucket(n.cfg.VerifyRate, verifyBurst),
			originBucket: newBucket(n.cfg.NewOriginRate, originBurst)}
		nb.mtu.Store(baseMTU)
		nb.link = newLink(n, nb)
		n.bySID[h.SID] = nb
		n.byAddr[key] = nb
	}
	nb.mu.Lock()
	if !isNew && h.Seq <= nb.helloSeq {
		nb.mu.Unlock()
		n.mu.Unlock()
		n.stats.staleHello.Add(1)
		return
	}
	restarted := !isNew && nb.epoch != h.Epoch
	if old := nb.addr.String(); old != key {
		if !mayMove(h, n.sid, restarted) {
			nb.mu.Unlock()
			n.mu.Unlock()
			n.stats.staleHello.Add(1)
			return
		}
		delete(n.byAddr, old)
		n.byAddr[key] = nb
		nb.addr = from
		n.log.Info("neighbour moved", "sid", h.SID.Short(), "addr", from, "restarted", restarted)
	}
	nb.helloSeq = h.Seq
	nb.peerCookie = h.Cookie
	unicast := h.Flags&wire.FlagBroadcast == 0
	nb.peerMTU = int(h.MTU)
	nb.epoch = h.Epoch
	if restarted {
		nb.probes = 0
		nb.mtu.Store(baseMTU)
	}
	nb.mu.Unlock()
	if restarted {
		// The keys were made with the old incarnation's ephemeral: the new
		// one cannot use them. Its hello to us brings new ones.
		n.dropKeysLocked(nb)
	}
	// Link keys: only a hello addressed to us carries the ephemeral the
	// neighbour keeps for its link to us. A new one (its first, or it made
	// a new link: restarted, or dropped us and admitted us again) gives new
	// keys, answered at once with our hello so it learns we hold them.
	var rekeyed, confirmed bool
	var keys *linkKeys
	if h.To == n.sid {
		rekeyed = n.rekeyLocked(nb, h.Eph)
		keys = nb.keys.Load()
		confirmed = keys != nil && h.PeerEph == ephPublic(nb.eph)
	}
	nb.heard()
	switch {
	case isNew:
		n.router.neighbourUpUnderNodeMu(nb)
	case restarted:
		// A new incarnation knows none of our routes (nor has our
		// signatures), and the old one's adverts are void: routing starts
		// over with it as with a new neighbour, full table first.
		n.router.neighbourDownUnderNodeMu(nb)
		n.router.neighbourUpUnderNodeMu(nb)
	case unicast:
		n.router.helloHeard(nb)
	}
	if isNew || restarted {
		n.notifyChangedLocked()
	}
	n.mu.Unlock()
	if isNew {
		n.log.Info("neighbour up", "sid", h.SID.Short(), "addr", from)
		nb.link.start()
	}
	if isNew || rekeyed || restarted {
		// Answer at once so the other side admits us too, and learns our
		// ephemeral key (and that we hold its one): a restarted neighbour
		// is a new one to us.
		n.sendHello(from, nb, 0, h.Cookie)
	}
	if confirmed {
		n.confirm(nb, keys)
	}
}

// mayMove reports whether hello h, verified and fresh, may move its
// neighbour to the new address it came from (the cookie check proved the
// sender receives there). A hello addressed to us may: the neighbour's own
// hello to us (NAT rebinding, roaming). So may a first-contact hello (to
// zero) of a new incarnation, restarted (its epoch is not the one we hold):
// a node restarted on a new port is heard at once rather than after the
// old entry's timeout. Anything else may not: a hello sent to another
// node, or a first-contact hello of the incarnation we hold (which anyone
// can have the neighbour sign, echoing our cookie for their own address, by
// answering its hello with a COOKIE). A replayed hello of an old
// incarnation is stale (its seq is older), and has been dropped already.
func mayMove(h wire.Hello, self identity.SID, restarted bool) bool {
	return h.To == self || (restarted && h.To == identity.SID{})
}

// trustSet is the set of SIDs a closed mesh admits; nil admits every SID.
func trustSet(sids []identity.SID) map[identity.SID]bool {
	if len(sids) == 0 {
		return nil
	}
	m := make(map[identity.SID]bool, len(sids))
	for _, s := range sids {
		m[s] = true
	}
	return m
}
