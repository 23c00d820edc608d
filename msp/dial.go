package msp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp/internal/seal"
)

// DialSession opens a session with the listener at (sid, port) through the
// mesh. It waits for a route and an answer until ctx ends.
func DialSession(ctx context.Context, node *mesh.Node, sid identity.SID, port uint16, cfg Config) (*Session, error) {
	if err := node.WaitReachable(ctx, sid); err != nil {
		return nil, fmt.Errorf("msp: dial %s: %w", sid, err)
	}
	pc, err := node.Bind(0)
	if err != nil {
		return nil, fmt.Errorf("msp: dial: %w", err)
	}
	return DialTransport(ctx, pc, node.Identity(), sid, mesh.Addr{SID: sid, Port: port}, port, cfg)
}

// DialTransport opens a session with peer over tr, whose far end is remote;
// the session owns tr and closes it when it ends.
func DialTransport(ctx context.Context, tr Transport, id *identity.Identity, peer identity.SID, remote net.Addr, port uint16, cfg Config) (*Session, error) {
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
			if _, err := tr.WriteTo(hs.Message(), remote); err != nil && !errors.Is(err, mesh.ErrNoRoute) {
				return fail(fmt.Errorf("msp: dial %s: %w", peer, err))
			}
			t.Reset(wait)
			wait = min(2*wait, time.Second)
		case <-ctx.Done():
			return fail(timeoutError{fmt.Sprintf("msp: dial %s port %d: no answer (is something listening there?)", peer, port)})
		}
	}
}

// Dial opens a session and one stream on it; closing the stream ends the
// session gracefully.
func Dial(ctx context.Context, node *mesh.Node, sid identity.SID, port uint16, cfg Config) (net.Conn, error) {
	s, err := DialSession(ctx, node, sid, port, cfg)
	if err != nil {
		return nil, err
	}
	st, err := s.OpenStream(ctx)
	if err != nil {
		s.Close()
		return nil, err
	}
	return &ownedStream{Conn: st, s: s}, nil
}

// ownedStream is a stream whose session lives and dies with it.
type ownedStream struct {
	net.Conn
	s *Session
}

// CloseWrite half-closes the stream.
func (o *ownedStream) CloseWrite() error {
	if hc, ok := o.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return o.Conn.Close()
}

// Close closes the stream and ends its session, waiting up to 5 s for the
// peer to acknowledge everything written.
func (o *ownedStream) Close() error {
	err := o.Conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o.s.Shutdown(ctx)
	return err
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
