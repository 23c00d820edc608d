// Endpoints. Packet path: the read loop takes every datagram of one
// transport; INIT goes to the listener's handshake (answered with RESPONSE
// or a signed REFUSE), RESPONSE/REFUSE to the dialer's handshake, DATA is
// opened with the keys of the session its receiver index names and handed
// to that session.
package msp

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

// maxAnswered bounds the INIT hashes remembered to answer retransmissions.
const maxAnswered = 4096

type epCounters struct {
	malformed, authFailed, replayed, unknownIndex atomic.Uint64
	badInit, refused, writeErrors                 atomic.Uint64
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
	sessions map[uint32]*Session // by local index; guarded by mu
	answered map[[32]byte][]byte // INIT hash -> RESPONSE or REFUSE sent; guarded by mu
	hs       *seal.Initiator     // dialing: the handshake under way; guarded by mu
	hsResult chan hsResult       // dialing: where the handshake's end goes
	closed   bool                // guarded by mu
	readDone bool                // the read loop has ended: nothing more arrives; guarded by mu
	released bool                // transport closed and endpoint dropped; guarded by mu
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
		answered: map[[32]byte][]byte{},
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
		if i := binary.BigEndian.Uint32(b[:]); i != 0 && ep.sessions[i] == nil {
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
			ep.mu.Unlock()
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
	if reply := ep.answered[h]; reply != nil {
		ep.mu.Unlock()
		ep.tr.WriteTo(reply, from) // a retransmitted INIT: the same answer
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
		idx := ep.newIndexLocked()
		sec, resp, err := in.Accept(idx, nil)
		if err != nil {
			return
		}
		s, err := newSession(ep, sec, from, false)
		if err != nil {
			ep.log.Warn("msp: session", "err", err)
			return
		}
		ep.sessions[idx] = s
		ep.wg.Add(2)
		go s.watch()
		go ep.lis.acceptStreams(s, &ep.wg)
		reply = resp
		ep.log.Info("msp: session accepted", "peer", peer.Short(), "from", from)
	}
	if len(ep.answered) >= maxAnswered {
		clear(ep.answered)
	}
	ep.answered[h] = reply
	ep.tr.WriteTo(reply, from)
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
