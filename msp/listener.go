package msp

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/servald/servald/identity"
)

// acceptQueue bounds streams accepted by sessions but not yet by Accept.
const acceptQueue = 64

// Listener accepts streams from any number of sessions for one MDP port,
// on the transport given to Listen and on those added with Serve. It
// implements net.Listener.
type Listener struct {
	id   *identity.Identity
	port uint16
	cfg  Config

	streams chan net.Conn
	dq      *dgramQueue // datagrams of all its sessions
	done    chan struct{}
	once    sync.Once

	mu  sync.Mutex
	eps []*endpoint // guarded by mu
}

// Listen accepts sessions for MDP port, and the streams in them, as
// identity id on tr (an MDP port bound on a node or through its daemon),
// and on transports added later with Serve. With tr nil it accepts only on
// those. The listener closes its transports when it closes.
func Listen(tr Transport, id *identity.Identity, port uint16, cfg Config) *Listener {
	l := &Listener{
		id: id, port: port, cfg: cfg.withDefaults(),
		streams: make(chan net.Conn, acceptQueue),
		dq:      newDgramQueue(dgramSessionShare),
		done:    make(chan struct{}),
	}
	if tr != nil {
		l.serve(tr)
	}
	return l
}

// Serve also accepts sessions arriving over tr (for example a split
// connection); the listener closes tr when it closes.
func (l *Listener) Serve(tr Transport) {
	l.serve(tr)
}

func (l *Listener) serve(tr Transport) {
	ep := newEndpoint(tr, l.id, l.port, l.cfg)
	ep.lis = l
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		tr.Close()
		return
	default:
	}
	l.eps = append(l.eps, ep)
	l.mu.Unlock()
	ep.start()
	if singleNode(tr) {
		time.AfterFunc(authTimeout, ep.dropIfUnauthenticated)
	}
}

// forget drops an endpoint that was released (its transport ended).
func (l *Listener) forget(ep *endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.eps {
		if e == ep {
			l.eps = slices.Delete(l.eps, i, i+1)
			return
		}
	}
}

// acceptStreams moves a session's new streams to the accept queue.
func (l *Listener) acceptStreams(s *Session, wg *sync.WaitGroup) {
	defer wg.Done()
	for {
		st, err := s.mux.AcceptStream()
		if err != nil {
			return
		}
		if s.open.Load() >= int64(l.cfg.MaxStreams) {
			st.Close() // the peer's stream fails; the session goes on
			l.cfg.Logger.Debug("msp: stream refused: too many open", "peer", s.peer.Short(), "max", l.cfg.MaxStreams)
			continue
		}
		ws := s.newStream(st)
		select {
		case l.streams <- ws:
		case <-l.done:
			ws.Close()
			return
		case <-s.done:
			ws.Close()
			return
		}
	}
}

// Accept waits for the next stream (a *Stream).
func (l *Listener) Accept() (net.Conn, error) { return l.AcceptContext(context.Background()) }

// AcceptContext waits for the next stream (a *Stream) or for ctx to end.
func (l *Listener) AcceptContext(ctx context.Context) (net.Conn, error) {
	select {
	case st := <-l.streams:
		return st, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Addr returns the node's SID and the port, as "SID:port" on network
// "mdp".
func (l *Listener) Addr() net.Addr { return listenAddr{sid: l.id.SID(), port: l.port} }

// listenAddr is a listener's address.
type listenAddr struct {
	sid  identity.SID
	port uint16
}

func (a listenAddr) Network() string { return "mdp" }
func (a listenAddr) String() string  { return fmt.Sprintf("%s:%d", a.sid, a.port) }

// Close stops accepting and ends every session at once.
func (l *Listener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		close(l.done)
		eps := slices.Clone(l.eps) // forget edits l.eps in place
		l.mu.Unlock()
		for _, ep := range eps {
			ep.close()
		}
		for {
			select {
			case st := <-l.streams:
				st.Close()
			default:
				return
			}
		}
	})
	return nil
}

// Shutdown ends every session gracefully: it waits (until ctx ends) for
// everything written to be acknowledged, then closes the listener.
func (l *Listener) Shutdown(ctx context.Context) error {
	var first error
	for _, s := range l.Sessions() {
		if err := s.Shutdown(ctx); err != nil && first == nil {
			first = err
		}
	}
	l.Close()
	return first
}
