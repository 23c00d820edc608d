package msp

// Endpoints. Packet path: the read loop takes every datagram of one
// transport; INIT goes to the listener's handshake (answered with RESPONSE
// or a signed REFUSE), RESPONSE/REFUSE to the dialer's handshake, DATA is
// opened with the keys of the session its receiver index names and handed
// to that session.

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp/internal/seal"
)

// Bounds of a listener's handshakes. An INIT costs the listener a
// pending entry (keys, no goroutine) until the initiator's first record
// under the new keys confirms it; only then do arq and smux start. One
// pending handshake per initiator SID (a newer INIT replaces it), at most
// maxPending per endpoint (the oldest goes first), each for at most
// pendingTimeout.
const (
	maxAnswered    = 4096 // INIT hashes remembered to answer retransmissions
	maxPending     = 256
	pendingTimeout = 10 * time.Second
)

type epCounters struct {
	malformed, authFailed, replayed, unknownIndex atomic.Uint64
	badInit, refused, writeErrors                 atomic.Uint64
	staleInit, pendingDropped, unauthenticated    atomic.Uint64
}

// pendingHS is a handshake the listener answered and the initiator has not
// confirmed yet.
type pendingHS struct {
	sec     *seal.Session
	peer    identity.SID
	from    net.Addr
	sent    time.Time // the INIT's timestamp
	created time.Time
}

// answer is a RESPONSE or REFUSE sent, kept to answer a retransmitted INIT
// from the same address.
type answer struct {
	reply []byte
	to    string
}

// endpoint is one transport and the sessions on it.
type endpoint struct {
	tr   Transport
	id   *identity.Identity
	cfg  Config
	log  *slog.Logger
	port uint16    // the MDP port sessions here are for
	lis  *Listener // nil on a dialing endpoint
	// ownsTransport: a dialing endpoint closes its transport with its session.
	ownsTransport bool

	stats epCounters

	mu       sync.Mutex
	sessions map[uint32]*Session     // by local index; guarded by mu
	answered map[[32]byte]answer     // INIT hash -> what was sent; guarded by mu
	answerQ  [][32]byte              // answered's keys, oldest first; guarded by mu
	pending  map[uint32]*pendingHS   // by local index; guarded by mu
	pendOf   map[identity.SID]uint32 // the peer's pending handshake; guarded by mu
	hs       *seal.Initiator         // dialing: the handshake under way; guarded by mu
	hsResult chan hsResult           // dialing: where the handshake's end goes
	closed   bool                    // guarded by mu
	readDone bool                    // the read loop has ended: nothing more arrives; guarded by mu
	authed   bool                    // a session on this transport was confirmed; guarded by mu
	released bool                    // transport closed and endpoint dropped; guarded by mu
	wg       sync.WaitGroup
}

type hsResult struct {
	sec *seal.Session
	err error
}

func newEndpoint(tr Transport, id *identity.Identity, port uint16, cfg Config) *endpoint {
	return &endpoint{
		tr: tr, id: id, cfg: cfg, port: port,
		log:      cfg.Logger,
		sessions: map[uint32]*Session{},
		answered: map[[32]byte]answer{},
		pending:  map[uint32]*pendingHS{},
		pendOf:   map[identity.SID]uint32{},
	}
}

func (ep *endpoint) start() {
	ep.wg.Add(1)
	go ep.readLoop()
}

// newIndex picks an unused local index. Called with mu held.
func (ep *endpoint) newIndexLocked() uint32 {
	var b [4]byte
	for {
		rand.Read(b[:])
		if i := binary.BigEndian.Uint32(b[:]); i != 0 && ep.sessions[i] == nil && ep.pending[i] == nil {
			return i
		}
	}
}

func (ep *endpoint) readLoop() {
	defer ep.wg.Done()
	defer ep.transportEnded()
	buf := make([]byte, 65536)
	plain := make([]byte, 0, 65536)
	for {
		k, from, err := ep.tr.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ep.isClosed() {
				return
			}
			continue
		}
		pkt := buf[:k]
		typ, err := seal.PacketType(pkt)
		if err != nil {
			ep.stats.malformed.Add(1)
			continue
		}
		switch typ {
		case seal.TypeInit:
			ep.handleInit(pkt, from)
		case seal.TypeResponse, seal.TypeRefuse:
			ep.handleReply(pkt)
		case seal.TypeData:
			idx, err := seal.ReceiverIndex(pkt)
			if err != nil {
				ep.stats.malformed.Add(1)
				continue
			}
			ep.mu.Lock()
			s := ep.sessions[idx]
			p := ep.pending[idx]
			ep.mu.Unlock()
			if s == nil && p != nil {
				ep.confirmPending(idx, p, pkt, plain[:0], from)
				continue
			}
			if s == nil {
				ep.stats.unknownIndex.Add(1)
				continue
			}
			pt, err := s.sec.Open(plain[:0], pkt)
			if err != nil {
				if errors.Is(err, seal.ErrReplay) {
					ep.stats.replayed.Add(1)
				} else {
					ep.stats.authFailed.Add(1)
				}
				continue
			}
			s.heardFrom(from)
			s.input(pt)
		}
	}
}

func (ep *endpoint) isClosed() bool {
	ep.mu.Lock()
	defer ep.mu.Unlock()
	return ep.closed
}

// handleInit answers an INIT on a listening endpoint.
func (ep *endpoint) handleInit(pkt []byte, from net.Addr) {
	if ep.lis == nil {
		return
	}
	h := seal.HashInit(pkt)
	ep.mu.Lock()
	if a, ok := ep.answered[h]; ok {
		ep.mu.Unlock()
		if a.to == from.String() {
			ep.tr.WriteTo(a.reply, from) // a retransmitted INIT: the same answer
		}
		return
	}
	ep.mu.Unlock()
	in, err := seal.ParseInit(pkt, ep.id, time.Now())
	if err != nil {
		ep.stats.badInit.Add(1)
		if errors.Is(err, seal.ErrMisaddressed) && singleNode(ep.tr) {
			// The transport reaches this node only, not a mesh that
			// routes by SID: the peer dialled another SID. Hang up so
			// that it fails at once instead of waiting for an answer.
			ep.log.Warn("msp: refused a session over a stream transport: it asked for another SID", "from", from, "self", ep.id.SID().String())
			ep.tr.Close()
			return
		}
		ep.log.Debug("msp: INIT rejected", "from", from, "err", err)
		return
	}
	peer := in.Peer()
	if !ep.tr.FromNode(from, peer) {
		// The transport says it came from another node than the one who
		// signed.
		ep.stats.badInit.Add(1)
		return
	}
	var reply []byte
	port, perr := parsePortParams(in.Params())
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.closed {
		return
	}
	switch {
	case perr != nil || port != ep.port:
		reply = in.Refuse(seal.RefuseNoListener, "nothing listens on that port")
	case ep.cfg.Allow != nil && !ep.cfg.Allow(peer):
		reply = in.Refuse(seal.RefuseNotAllowed, "this SID is not allowed to connect")
		ep.stats.refused.Add(1)
		ep.log.Warn("msp: refused a node not in the allow list", "sid", peer.String())
	case len(ep.sessions) >= ep.cfg.MaxSessions:
		reply = in.Refuse(seal.RefuseBusy, "too many sessions")
	default:
		if !ep.makeRoomLocked(peer, in.Time()) {
			ep.stats.staleInit.Add(1)
			return // a replay: the peer's pending handshake is newer
		}
		idx := ep.newIndexLocked()
		sec, resp, err := in.Accept(idx, nil)
		if err != nil {
			return
		}
		ep.pending[idx] = &pendingHS{sec: sec, peer: peer, from: from, sent: in.Time(), created: time.Now()}
		ep.pendOf[peer] = idx
		reply = resp
	}
	if len(ep.answerQ) >= maxAnswered {
		delete(ep.answered, ep.answerQ[0])
		ep.answerQ = ep.answerQ[1:]
	}
	ep.answered[h] = answer{reply: reply, to: from.String()}
	ep.answerQ = append(ep.answerQ, h)
	ep.tr.WriteTo(reply, from)
}

// makeRoomLocked drops pending handshakes that timed out, the peer's older
// one, and the oldest when the table is full. It reports false when the
// peer has a pending handshake at least as new as sent (the INIT is then
// a replay or a stale retransmission).
func (ep *endpoint) makeRoomLocked(peer identity.SID, sent time.Time) bool {
	if idx, ok := ep.pendOf[peer]; ok {
		if !sent.After(ep.pending[idx].sent) {
			return false
		}
		ep.dropPendingLocked(idx)
	}
	now := time.Now()
	var oldest uint32
	for idx, p := range ep.pending {
		if now.Sub(p.created) > pendingTimeout {
			ep.dropPendingLocked(idx)
		} else if oldest == 0 || p.created.Before(ep.pending[oldest].created) {
			oldest = idx
		}
	}
	if len(ep.pending) >= maxPending {
		ep.dropPendingLocked(oldest)
	}
	return true
}

func (ep *endpoint) dropPendingLocked(idx uint32) {
	if p := ep.pending[idx]; p != nil {
		delete(ep.pendOf, p.peer)
		delete(ep.pending, idx)
		ep.stats.pendingDropped.Add(1)
	}
}

// confirmPending turns a pending handshake into a session when pkt is a
// record under its keys (the initiator's confirmation, or anything after
// it): only now do arq and smux start.
func (ep *endpoint) confirmPending(idx uint32, p *pendingHS, pkt, plain []byte, from net.Addr) {
	pt, err := p.sec.Open(plain, pkt)
	if err != nil {
		ep.stats.authFailed.Add(1)
		return
	}
	ep.mu.Lock()
	if ep.pending[idx] != p || ep.closed {
		ep.mu.Unlock()
		return
	}
	delete(ep.pending, idx)
	delete(ep.pendOf, p.peer)
	if len(ep.sessions) >= ep.cfg.MaxSessions {
		ep.mu.Unlock()
		ep.stats.pendingDropped.Add(1)
		ep.log.Warn("msp: session confirmed while full; dropped", "peer", p.peer.Short())
		return
	}
	// Replies go where the confirmation came from, not where the INIT
	// did: an INIT can be replayed from anywhere, a record only by the
	// peer.
	if !ep.tr.FromNode(from, p.peer) {
		from = p.from
	}
	s, err := newSession(ep, p.sec, from, false)
	if err != nil {
		ep.mu.Unlock()
		ep.log.Warn("msp: session", "err", err)
		return
	}
	ep.sessions[idx] = s
	ep.wg.Add(2)
	go s.watch()
	go ep.lis.acceptStreams(s, &ep.wg)
	first := !ep.authed
	ep.authed = true
	ep.mu.Unlock()
	if a, ok := ep.tr.(interface{ PeerAuthenticated() }); ok && first {
		a.PeerAuthenticated()
	}
	ep.log.Info("msp: session accepted", "peer", p.peer.Short(), "from", p.from)
	s.input(pt)
}

// handleReply passes a RESPONSE or REFUSE to the dial under way.
func (ep *endpoint) handleReply(pkt []byte) {
	ep.mu.Lock()
	hs, ch := ep.hs, ep.hsResult
	ep.mu.Unlock()
	if hs == nil {
		return
	}
	if idx, err := seal.ReceiverIndex(pkt); err != nil || idx != hs.LocalIndex() {
		return
	}
	sec, err := hs.Finish(pkt)
	if err != nil && !errors.Is(err, seal.ErrRefused) {
		return // garbage, a forgery or a duplicate: keep waiting
	}
	select {
	case ch <- hsResult{sec, err}:
	default:
	}
}

// removeSession forgets an ended session. A dialing endpoint closes with
// its session, a listener's endpoint whose transport has ended with its
// last session.
func (ep *endpoint) removeSession(s *Session) {
	ep.mu.Lock()
	if ep.sessions[s.sec.LocalIndex()] == s {
		delete(ep.sessions, s.sec.LocalIndex())
	}
	last := len(ep.sessions) == 0 && (ep.ownsTransport || ep.readDone)
	ep.mu.Unlock()
	if last {
		ep.release()
	}
}

// transportEnded runs when the read loop stops: nothing more can arrive,
// so sessions still running end now (their streams break, as when the
// peer dies) while those the peer ended cleanly keep draining into the
// application. Once no session is left the endpoint is released: a
// listener does not keep endpoints of transports that have ended (such
// as split connections that closed).
func (ep *endpoint) transportEnded() {
	ep.mu.Lock()
	ep.readDone = true
	var running []*Session
	for _, s := range ep.sessions {
		select {
		case <-s.conn.Done():
		default:
			running = append(running, s)
		}
	}
	empty := len(ep.sessions) == 0
	ep.mu.Unlock()
	for _, s := range running {
		s.abort()
	}
	if empty {
		ep.release()
	}
}

// release closes the transport and drops the endpoint from its listener,
// once.
func (ep *endpoint) release() {
	ep.mu.Lock()
	done := ep.released
	ep.released, ep.closed = true, true
	ep.mu.Unlock()
	if done {
		return
	}
	ep.tr.Close()
	if ep.lis != nil {
		ep.lis.forget(ep)
	}
}

// close ends every session at once and the transport; it waits for the
// endpoint's goroutines.
func (ep *endpoint) close() {
	ep.mu.Lock()
	ep.closed = true
	ss := make([]*Session, 0, len(ep.sessions))
	for _, s := range ep.sessions {
		ss = append(ss, s)
	}
	ep.mu.Unlock()
	for _, s := range ss {
		s.Close()
	}
	ep.tr.Close()
	ep.wg.Wait()
}

// dropIfUnauthenticated closes a single-node transport on which no session
// was confirmed in time (see Transport): the peer proved nothing, so it
// holds nothing.
func (ep *endpoint) dropIfUnauthenticated() {
	ep.mu.Lock()
	drop := !ep.authed && !ep.closed
	ep.mu.Unlock()
	if drop {
		ep.stats.unauthenticated.Add(1)
		ep.log.Info("msp: closed a connection that authenticated no session in time", "from", ep.tr.LocalAddr(), "after", authTimeout)
		ep.tr.Close()
	}
}
