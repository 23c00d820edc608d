package splitter

// Listener side: every accepted TCP connection runs the handshake in its
// own goroutine (at most maxHandshakes at once and maxHandshakesPerAddr
// from one IP address, the hello within helloTimeout, the whole exchange
// within HandshakeTimeout). A new-session hello whose parameters match creates a
// session, queued for Accept; a join hello with the right id and token adds
// the connection to its session.
//
//	TCP accept -> HELLO -> checks -> REPLY -> lane of a new or existing session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// Handshake bounds: the connections a Listener handshakes at once, in all
// and from one IP address (more are closed at once), and how long a new
// connection may take to send its hello. Idle connections from one address
// (a slowloris) take at most maxHandshakesPerAddr slots, each for
// helloTimeout.
const (
	maxHandshakes        = 1024
	maxHandshakesPerAddr = 16
	helloTimeout         = 2 * time.Second
)

// Listener accepts splitter sessions. It implements net.Listener.
type Listener struct {
	cfg      Config
	ln       net.Listener
	log      *slog.Logger
	done     chan struct{}
	wg       sync.WaitGroup
	acceptCh chan *Conn
	hsSem    chan struct{}

	mu       sync.Mutex
	closed   bool
	sessions map[uint64]*Conn
	pending  int
	hs       map[net.Conn]struct{}
	hsOf     map[string]int    // handshakes under way by remote IP
	sessOf   map[string]int    // sessions by remote IP
	sessAddr map[uint64]string // a session's remote IP
	recent   endedIDs          // the sessions that ended last
	ended    Stats             // counters of the sessions that have ended

	accepted, refused, joinsRefused, hsErrors atomic.Uint64
}

// ListenerStats are a Listener's counters.
type ListenerStats struct {
	SessionsAccepted uint64 // sessions opened (queued for Accept)
	SessionsRefused  uint64 // new sessions refused (parameter mismatch, backlog full)
	JoinsRefused     uint64 // connections refused joining a session (unknown id, bad token, full)
	HandshakeErrors  uint64 // connections dropped during the handshake (garbage, timeout, overload)
	SessionsLive     int    // sessions running now
	// Sessions sums the counters of every session the listener opened,
	// ended ones included (ConnsLive counts the live sessions' only).
	Sessions Stats
}

// Listen listens on the TCP address addr.
func Listen(addr string, cfg Config) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("splitter: listen: %w", err)
	}
	return NewListener(ln, cfg)
}

// NewListener serves splitter sessions on an existing listener, which it
// then owns (it is closed on error too).
func NewListener(ln net.Listener, cfg Config) (*Listener, error) {
	if err := cfg.Validate(); err != nil {
		ln.Close()
		return nil, err
	}
	l := &Listener{
		cfg:      cfg,
		ln:       ln,
		log:      cfg.logger().With("listener", ln.Addr().String()),
		done:     make(chan struct{}),
		acceptCh: make(chan *Conn, cfg.AcceptBacklog),
		hsSem:    make(chan struct{}, maxHandshakes),
		sessions: make(map[uint64]*Conn),
		hs:       make(map[net.Conn]struct{}),
		hsOf:     make(map[string]int),
		sessOf:   make(map[string]int),
		sessAddr: make(map[uint64]string),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l, nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Accept waits for the next session; the net.Conn is a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptContext(context.Background())
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptContext waits for the next session or the end of ctx.
func (l *Listener) AcceptContext(ctx context.Context) (*Conn, error) {
	select {
	case s := <-l.acceptCh:
		l.mu.Lock()
		l.pending--
		l.mu.Unlock()
		return s, nil
	case <-l.done:
		return nil, errClosed
	case <-ctx.Done():
		return nil, fmt.Errorf("splitter: accept: %w", ctx.Err())
	}
}

// Close stops listening. Sessions not yet accepted are closed; accepted
// sessions go on over their open connections but can no longer add any.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return errClosed
	}
	l.closed = true
	for c := range l.hs {
		c.Close()
	}
	l.mu.Unlock()
	close(l.done)
	err := l.ln.Close()
	l.wg.Wait()
	for {
		select {
		case s := <-l.acceptCh:
			s.teardown(errClosed, wire.CloseShutdown, "listener closed")
			s.wg.Wait()
			continue
		default:
		}
		break
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("splitter: close listener: %w", err)
	}
	return nil
}

// Stats returns the Listener's counters.
func (l *Listener) Stats() ListenerStats {
	l.mu.Lock()
	live := make([]*Conn, 0, len(l.sessions))
	for _, s := range l.sessions {
		live = append(live, s)
	}
	sum := l.ended
	l.mu.Unlock()
	for _, s := range live {
		sum = sum.Add(s.Stats())
	}
	return ListenerStats{
		SessionsAccepted: l.accepted.Load(),
		SessionsRefused:  l.refused.Load(),
		JoinsRefused:     l.joinsRefused.Load(),
		HandshakeErrors:  l.hsErrors.Load(),
		SessionsLive:     len(live),
		Sessions:         sum,
	}
}

func (l *Listener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.log.Warn("splitter: accept failed", "err", err, "retry", delay)
			select {
			case <-time.After(delay):
			case <-l.done:
				return
			}
			continue
		}
		delay = 0
		select {
		case l.hsSem <- struct{}{}:
		default:
			l.hsErrors.Add(1)
			l.log.Debug("splitter: too many handshakes, dropping connection", "remote", c.RemoteAddr())
			c.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			c.Close()
			<-l.hsSem
			return
		}
		host := hostOf(c.RemoteAddr())
		if l.hsOf[host] >= maxHandshakesPerAddr {
			l.mu.Unlock()
			c.Close()
			<-l.hsSem
			l.hsErrors.Add(1)
			l.log.Debug("splitter: too many handshakes from one address, dropping connection", "remote", c.RemoteAddr())
			continue
		}
		l.hsOf[host]++
		l.hs[c] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		go l.handshake(c)
	}
}

// handshake runs the server side of the handshake on c and hands c over
// to a session, or closes it.
func (l *Listener) handshake(c net.Conn) {
	defer l.wg.Done()
	defer func() { <-l.hsSem }()
	owned := false
	host := hostOf(c.RemoteAddr())
	defer func() {
		l.mu.Lock()
		delete(l.hs, c)
		if l.hsOf[host]--; l.hsOf[host] <= 0 {
			delete(l.hsOf, host)
		}
		l.mu.Unlock()
		if !owned {
			c.Close()
		}
	}()
	remote := c.RemoteAddr().String()
	start := time.Now()
	c.SetDeadline(start.Add(min(l.cfg.HandshakeTimeout, helloTimeout)))
	h, err := readHello(c)
	c.SetDeadline(start.Add(l.cfg.HandshakeTimeout))
	if err != nil {
		l.hsErrors.Add(1)
		l.log.Debug("splitter: bad handshake", "remote", remote, "err", err)
		if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isTimeout(err) {
			l.reply(c, wire.Reply{Status: wire.StatusRefused, Code: wire.RefuseMalformed})
		}
		return
	}
	if h.Version != wire.Version {
		l.refuse(c, wire.RefuseVersion, &NegotiationError{Param: "version",
			Local: strconv.Itoa(wire.Version), Peer: strconv.Itoa(int(h.Version)), Remote: remote}, true)
		return
	}
	local := l.cfg.params()
	if h.Params.DataShards != local.DataShards || h.Params.ParityShards != local.ParityShards {
		l.refuse(c, wire.RefuseFEC, &NegotiationError{Param: "fec",
			Local: fecString(local), Peer: fecString(h.Params), Remote: remote}, h.Kind == wire.KindNew)
		return
	}
	if h.Params.PayloadSize != local.PayloadSize {
		l.refuse(c, wire.RefusePayload, &NegotiationError{Param: "payload size",
			Local: strconv.Itoa(local.PayloadSize), Peer: strconv.Itoa(h.Params.PayloadSize), Remote: remote}, h.Kind == wire.KindNew)
		return
	}
	if h.Kind == wire.KindNew {
		owned = l.newSession(c, h, remote)
	} else {
		owned = l.join(c, h, remote)
	}
}

func readHello(c net.Conn) (wire.Hello, error) {
	var buf [wire.HelloPrefixLen + wire.MaxHelloBody]byte
	if _, err := io.ReadFull(c, buf[:wire.HelloPrefixLen]); err != nil {
		return wire.Hello{}, err
	}
	_, _, n, err := wire.ParsePrefix(buf[:wire.HelloPrefixLen])
	if err != nil {
		return wire.Hello{}, err
	}
	if _, err := io.ReadFull(c, buf[wire.HelloPrefixLen:wire.HelloPrefixLen+n]); err != nil {
		return wire.Hello{}, err
	}
	h, _, err := wire.ParseHello(buf[:wire.HelloPrefixLen+n])
	return h, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (l *Listener) reply(c net.Conn, r wire.Reply) error {
	r.Version = wire.Version
	if r.Status != wire.StatusOK {
		r.Params = l.cfg.params()
	}
	_, err := c.Write(wire.AppendReply(nil, r))
	return err
}

// refuse answers REFUSED with code, logs err, counts it and reports it to
// Config.OnRefused.
func (l *Listener) refuse(c net.Conn, code uint8, err error, session bool) {
	l.reply(c, wire.Reply{Status: wire.StatusRefused, Code: code})
	if session {
		l.refused.Add(1)
	} else {
		l.joinsRefused.Add(1)
	}
	l.log.Warn("splitter: refused", "err", err)
	if l.cfg.OnRefused != nil {
		l.cfg.OnRefused(err)
	}
}

// newSession creates a session for a new-session hello on c.
func (l *Listener) newSession(c net.Conn, h wire.Hello, remote string) bool {
	host := hostOf(c.RemoteAddr())
	total, perAddr := l.cfg.sessionCaps()
	l.mu.Lock()
	if l.closed || l.pending >= l.cfg.AcceptBacklog || len(l.sessions) >= total || l.sessOf[host] >= perAddr {
		code, why := uint8(wire.RefuseBusy), refuseText(wire.RefuseBusy)
		if l.closed {
			code, why = wire.RefuseClosing, refuseText(wire.RefuseClosing)
		}
		l.mu.Unlock()
		l.refuse(c, code, &RefusedError{Reason: why, Remote: remote, code: code}, true)
		return false
	}
	var id uint64
	var token [16]byte
	for id == 0 || l.sessions[id] != nil {
		var b [8]byte
		rand.Read(b[:])
		id = binary.BigEndian.Uint64(b[:])
	}
	rand.Read(token[:])
	s := newConn(l.cfg, false, id, token, h.Window)
	s.onTeardown = l.forget
	// Slot 0 is this connection's: joins that the client sends as soon
	// as it has the reply may arrive before addLane below, and must not
	// take every slot.
	s.slots[0] = true
	l.sessions[id] = s
	l.sessOf[host]++
	l.sessAddr[id] = host
	l.pending++
	l.mu.Unlock()

	err := l.reply(c, wire.Reply{Status: wire.StatusOK, Session: id, Token: token, Window: uint32(s.recvWindow())})
	if err == nil {
		c.SetDeadline(time.Time{})
		err = s.addLaneAt(c, 0)
	}
	if err != nil {
		l.mu.Lock()
		l.pending--
		l.mu.Unlock()
		s.teardown(err, -1, "") // also ends lanes that joined meanwhile; forget removes it
		l.hsErrors.Add(1)
		l.log.Debug("splitter: session setup failed", "remote", remote, "err", err)
		return false
	}
	s.start()
	l.accepted.Add(1)
	s.log.Debug("splitter: session accepted", "remote", remote)
	l.acceptCh <- s // room reserved by pending
	return true
}

// join adds c to the session named by a join hello.
func (l *Listener) join(c net.Conn, h wire.Hello, remote string) bool {
	l.mu.Lock()
	s := l.sessions[h.Session]
	ended := s == nil && (h.Session == 0 || l.recent.has(h.Session)) // a probe, or a lane racing its session's end
	l.mu.Unlock()
	var code uint8
	switch {
	case ended:
		// Normal, not a warning.
		l.reply(c, wire.Reply{Status: wire.StatusRefused, Code: wire.RefuseUnknownSession})
		l.joinsRefused.Add(1)
		l.log.Debug("splitter: refused a join: a probe, or its session has ended", "remote", remote)
		return false
	case s == nil:
		code = wire.RefuseUnknownSession
	case subtle.ConstantTimeCompare(s.token[:], h.Token[:]) != 1:
		code = wire.RefuseBadToken
	case s.liveLanes() >= s.maxLanes:
		code = wire.RefuseSessionFull
	}
	if code != 0 {
		l.refuse(c, code, &RefusedError{Reason: refuseText(code), Remote: remote, code: code}, false)
		return false
	}
	if err := l.reply(c, wire.Reply{Status: wire.StatusOK, Session: s.id, Token: s.token, Window: uint32(s.recvWindow())}); err != nil {
		l.hsErrors.Add(1)
		return false
	}
	c.SetDeadline(time.Time{})
	if err := s.addLane(c); err != nil {
		l.joinsRefused.Add(1)
		l.log.Debug("splitter: join failed", "remote", remote, "err", err)
		return false
	}
	return true
}

func (s *Conn) liveLanes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lanes)
}

// forget removes a finished session from the join table.
func (l *Listener) forget(s *Conn) {
	st := s.Stats()
	st.ConnsLive = 0
	l.mu.Lock()
	if l.sessions[s.id] == s {
		delete(l.sessions, s.id)
		host := l.sessAddr[s.id]
		delete(l.sessAddr, s.id)
		if l.sessOf[host]--; l.sessOf[host] <= 0 {
			delete(l.sessOf, host)
		}
		l.ended = l.ended.Add(st)
		l.recent.add(s.id)
	}
	l.mu.Unlock()
}

// hostOf is the IP address of a remote TCP address (the whole address
// where it has no port).
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	s := a.String()
	if h, _, err := net.SplitHostPort(s); err == nil {
		return h
	}
	return s
}

var _ net.Listener = (*Listener)(nil)
