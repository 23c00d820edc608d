package splitmsp

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
	"github.com/servald/servald/splitter"
)

// ErrWrongNode is matched (errors.Is) by a dial whose listener hung up on
// the handshake: it does not hold the SID asked for.
var ErrWrongNode = errors.New("splitmsp: the node there is not the one asked for")

// WrongNodeError is the error of a dial to Addr whose listener hung up on
// the handshake for SID, which it does not hold.
type WrongNodeError struct {
	Addr string
	SID  identity.SID
}

func (e *WrongNodeError) Error() string {
	return fmt.Sprintf("split %s: the node there is not %s (it hung up on the handshake)", e.Addr, e.SID)
}

// Is matches ErrWrongNode.
func (e *WrongNodeError) Is(target error) bool { return target == ErrWrongNode }

// DialError is the error of a dial whose split session did not open; Err
// is splitter.Dial's (errors.As *splitter.NegotiationError for a
// parameter the two ends disagree on).
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("split %s: %v", e.Addr, e.Err) }

// Unwrap returns splitter.Dial's error.
func (e *DialError) Unwrap() error { return e.Err }

// Sessions counts the split sessions a connecting side opens, and sums
// their counters. The zero value is ready.
type Sessions struct {
	mu    sync.Mutex
	conns []*splitter.Conn // split sessions that may still run
	ended splitter.Stats   // counters of those that ended
	count int              // split sessions opened
}

// Add counts c, and folds the sessions that ended into the totals: a
// long-running dialer opens many, and must not keep every session's
// buffers.
func (ss *Sessions) Add(c *splitter.Conn) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.conns = slices.DeleteFunc(ss.conns, func(c *splitter.Conn) bool {
		if c.Err() == nil {
			return false
		}
		st := c.Stats()
		st.ConnsLive = 0
		ss.ended = ss.ended.Add(st)
		return true
	})
	ss.conns = append(ss.conns, c)
	ss.count++
}

// Stats sums the counters of every split session opened, and counts them.
func (ss *Sessions) Stats() (sessions int, sum splitter.Stats) {
	ss.mu.Lock()
	conns, sum, sessions := slices.Clone(ss.conns), ss.ended, ss.count
	ss.mu.Unlock()
	for _, c := range conns {
		sum = sum.Add(c.Stats())
	}
	return sessions, sum
}

// Dialer opens MSP sessions over split sessions to the split listener at
// Addr, as Identity, and counts the split sessions (Stats).
type Dialer struct {
	Addr     string
	Config   splitter.Config
	Identity *identity.Identity
	Sessions
}

// Dial opens a split session and an MSP session with sid at MDP port on
// it; the MSP session owns the split session and closes it when it ends.
// The split session failing is a *DialError; a listener that does not
// hold sid, a *WrongNodeError; the rest are msp.Dialer.Dial's errors.
func (d *Dialer) Dial(ctx context.Context, sid identity.SID, port uint16, cfg msp.Config) (*msp.Session, error) {
	c, err := splitter.Dial(ctx, d.Addr, d.Config)
	if err != nil {
		return nil, &DialError{Addr: d.Addr, Err: err}
	}
	d.Add(c)
	s, err := msp.Dialer{Identity: d.Identity, Config: cfg}.Dial(ctx, msp.NewStreamTransport(c), sid, port)
	if err != nil && !errors.Is(err, msp.ErrRefused) && errors.Is(c.Err(), splitter.ErrPeerClosed) {
		// The listener hangs up on a handshake for a SID it does not hold.
		return nil, &WrongNodeError{Addr: d.Addr, SID: sid}
	}
	return s, err
}

// Server accepts split sessions and serves MSP over each of them on an
// msp.Listener (which may also serve the mesh).
type Server struct {
	ln  *splitter.Listener
	lis *msp.Listener
	wg  sync.WaitGroup
}

// Serve hands each split session ln accepts to lis, until Close.
func Serve(lis *msp.Listener, ln *splitter.Listener) *Server {
	s := &Server{ln: ln, lis: lis}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.AcceptContext(context.Background())
			if err != nil {
				return // closed
			}
			lis.Serve(msp.NewStreamTransport(c))
		}
	}()
	return s
}

// Close stops accepting split sessions and ends those open, with the MSP
// listener.
func (s *Server) Close() error {
	s.ln.Close()
	s.wg.Wait()
	return s.lis.Close()
}

// Listener is the split listener s serves.
func (s *Server) Listener() *splitter.Listener { return s.ln }

// Stats returns the split listener's counters, with the totals of its
// sessions (ended ones included).
func (s *Server) Stats() splitter.ListenerStats { return s.ln.Stats() }
