package msp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp/internal/seal"
)

// Dialer opens sessions as one identity. The zero Config takes the
// defaults.
type Dialer struct {
	Identity *identity.Identity
	Config   Config
}

// Dial opens a session with the listener on MDP port of node peer over tr,
// sending the handshake to tr.PeerAddr(peer, port) until an answer comes or
// ctx ends (while tr has no route to peer it keeps trying). The session
// owns tr and closes it when it ends, as Dial does when it fails.
func (d Dialer) Dial(ctx context.Context, tr Transport, peer identity.SID, port uint16) (*Session, error) {
	id, cfg := d.Identity, d.Config
	if id == nil {
		tr.Close()
		return nil, fmt.Errorf("msp: dial %s: no identity", peer)
	}
	remote := tr.PeerAddr(peer, port)
	cfg = cfg.withDefaults()
	ep := newEndpoint(tr, id, port, cfg)
	ep.ownsTransport = true
	ep.mu.Lock()
	idx := ep.newIndexLocked()
	hs, err := seal.NewInitiator(id, peer, idx, portParams(port), time.Now())
	if err != nil {
		ep.mu.Unlock()
		tr.Close()
		return nil, fmt.Errorf("msp: dial %s: %w", peer, err)
	}
	ep.hs = hs
	ep.hsResult = make(chan hsResult, 1)
	ep.mu.Unlock()
	ep.start()
	fail := func(err error) (*Session, error) {
		ep.close()
		return nil, err
	}
	// Send the INIT until an answer comes, backing off to 1 s.
	wait := 100 * time.Millisecond
	sends := 0
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case r := <-ep.hsResult:
			if r.err != nil {
				var re *seal.RefusedError
				if errors.As(r.err, &re) {
					return fail(refusedError{peer: peer, code: re.Code.String(), reason: re.Reason})
				}
				return fail(fmt.Errorf("msp: dial %s: %w", peer, r.err))
			}
			s, err := newSession(ep, r.sec, remote, true)
			if err != nil {
				return fail(err)
			}
			ep.mu.Lock()
			ep.hs = nil
			ep.sessions[idx] = s
			ended := ep.readDone // the transport ended after the answer came
			ep.mu.Unlock()
			ep.wg.Add(1)
			go s.watch()
			if ended {
				s.Close()
				return nil, fmt.Errorf("msp: dial %s: transport closed during the handshake: %w", peer, net.ErrClosed)
			}
			if err := s.confirm(); err != nil {
				s.Close()
				return nil, fmt.Errorf("msp: dial %s: %w", peer, err)
			}
			return s, nil
		case <-t.C:
			if sends > 0 && dialStalled(sends) && noProgress(tr, peer) {
				wait = 100 * time.Millisecond // another path: try it at once
			}
			if _, err := tr.WriteTo(hs.Message(), remote); err != nil && !noRoute(err) {
				return fail(fmt.Errorf("msp: dial %s: %w", peer, err))
			}
			sends++
			t.Reset(wait)
			wait = min(2*wait, time.Second)
		case <-ctx.Done():
			return fail(timeoutError{fmt.Sprintf("msp: dial %s port %d: no answer (is something listening there?)", peer, port)})
		}
	}
}

// refusedError is a signed refusal from the listener; errors.Is ErrRefused.
type refusedError struct {
	peer         identity.SID
	code, reason string
}

func (e refusedError) Error() string {
	return fmt.Sprintf("msp: %s refused the connection (%s: %q)", e.peer, e.code, e.reason)
}

func (e refusedError) Is(target error) bool { return target == ErrRefused }
