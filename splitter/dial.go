package splitter

// Client side of the handshake: Dial opens the first connection with a
// new-session hello, then the session's manager dials the others with join
// hellos carrying the session id and token the listener chose.
//
//	client: TCP connect -> HELLO -> REPLY (OK: id, token, window | REFUSED: code, params)

import (
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// Dial opens a session to a Listener at addr. It returns once the first
// connection is established and the parameters agreed; the other
// cfg.Conns-1 connections join in the background. A parameter mismatch
// returns a *NegotiationError naming it.
func Dial(ctx context.Context, addr string, cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := newConn(cfg, true, 0, [16]byte{}, 0)
	c, r, err := dialHello(ctx, cfg, addr, wire.Hello{
		Version: wire.Version,
		Kind:    wire.KindNew,
		Params:  cfg.params(),
		Window:  uint32(s.wnd),
	})
	if err != nil {
		s.cancel()
		return nil, err
	}
	s.id, s.token, s.addr = r.Session, r.Token, addr
	s.limit = uint64(max(r.Window, 1))
	s.log = cfg.logger().With("session", s.id, "role", "client")
	if err := s.addLane(c); err != nil {
		c.Close()
		s.cancel()
		return nil, err
	}
	s.start()
	signal(s.managerWake)
	s.log.Debug("splitter: session open", "addr", addr, "conns", cfg.Conns)
	return s, nil
}

// dialJoin opens one more connection of session id.
func dialJoin(ctx context.Context, cfg Config, addr string, id uint64, token [16]byte) (net.Conn, error) {
	c, _, err := dialHello(ctx, cfg, addr, wire.Hello{
		Version: wire.Version,
		Kind:    wire.KindJoin,
		Params:  cfg.params(),
		Session: id,
		Token:   token,
	})
	return c, err
}

// dialHello connects to addr, sends h and reads the reply.
func dialHello(ctx context.Context, cfg Config, addr string, h wire.Hello) (net.Conn, wire.Reply, error) {
	dial := cfg.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.HandshakeTimeout)
	defer cancel()
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, wire.Reply{}, fmt.Errorf("splitter: dial %s: %w", addr, err)
	}
	r, err := clientHandshake(ctx, c, h)
	if err != nil {
		c.Close()
		return nil, wire.Reply{}, err
	}
	if r.Status != wire.StatusOK {
		c.Close()
		return nil, r, refusalError(r, cfg.params(), addr)
	}
	return c, r, nil
}

// clientHandshake writes h on c and reads the reply, within ctx.
func clientHandshake(ctx context.Context, c net.Conn, h wire.Hello) (wire.Reply, error) {
	// The deadline is set only once ctx ends, so that a failed exchange
	// can be told apart (ctx.Err is set by then).
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	r, err := exchange(c, h)
	stopped := stop()
	if err != nil && ctx.Err() != nil {
		err = ctx.Err() // the deadline or cancellation is why the exchange failed
	}
	if err == nil && !stopped {
		err = ctx.Err()
	}
	if err != nil {
		return wire.Reply{}, fmt.Errorf("splitter: handshake with %s: %w", c.RemoteAddr(), err)
	}
	c.SetDeadline(time.Time{})
	return r, nil
}

func exchange(c net.Conn, h wire.Hello) (wire.Reply, error) {
	if _, err := c.Write(wire.AppendHello(nil, h)); err != nil {
		return wire.Reply{}, err
	}
	var buf [wire.HelloPrefixLen + wire.MaxHelloBody]byte
	if _, err := io.ReadFull(c, buf[:wire.HelloPrefixLen]); err != nil {
		return wire.Reply{}, err
	}
	_, _, n, err := wire.ParsePrefix(buf[:wire.HelloPrefixLen])
	if err != nil {
		return wire.Reply{}, err
	}
	if _, err := io.ReadFull(c, buf[wire.HelloPrefixLen:wire.HelloPrefixLen+n]); err != nil {
		return wire.Reply{}, err
	}
	r, _, err := wire.ParseReply(buf[:wire.HelloPrefixLen+n])
	if err != nil {
		return wire.Reply{}, err
	}
	if r.Status == wire.StatusOK && r.Version != wire.Version {
		return wire.Reply{}, fmt.Errorf("listener accepted with protocol version %d, want %d", r.Version, wire.Version)
	}
	return r, nil
}

func fecString(p wire.Params) string { return fmt.Sprintf("%d:%d", p.DataShards, p.ParityShards) }

// refusalError turns a REFUSED reply into a typed error from the
// dialler's point of view.
func refusalError(r wire.Reply, local wire.Params, remote string) error {
	switch r.Code {
	case wire.RefuseVersion:
		return &NegotiationError{Param: "version", Local: strconv.Itoa(wire.Version),
			Peer: strconv.Itoa(int(r.Version)), ByPeer: true, Remote: remote}
	case wire.RefuseFEC:
		return &NegotiationError{Param: "fec", Local: fecString(local), Peer: fecString(r.Params), ByPeer: true, Remote: remote}
	case wire.RefusePayload:
		return &NegotiationError{Param: "payload size", Local: strconv.Itoa(local.PayloadSize),
			Peer: strconv.Itoa(r.Params.PayloadSize), ByPeer: true, Remote: remote}
	}
	reason := refuseText(r.Code)
	if r.Reason != "" && reason != r.Reason {
		reason += ": " + r.Reason
	}
	return &RefusedError{Reason: reason, ByPeer: true, Remote: remote, code: r.Code}
}

func refuseText(code uint8) string {
	switch code {
	case wire.RefuseUnknownSession:
		return "unknown session"
	case wire.RefuseBadToken:
		return "bad session token"
	case wire.RefuseSessionFull:
		return "session has its maximum of connections"
	case wire.RefuseBusy:
		return "listener busy (accept backlog full)"
	case wire.RefuseMalformed:
		return "malformed hello"
	case wire.RefuseClosing:
		return "listener closing"
	}
	return "refusal code " + strconv.Itoa(int(code))
}

// fatal reports whether a refused join means the session is gone for good.
func (e *RefusedError) fatal() bool {
	switch e.code {
	case wire.RefuseUnknownSession, wire.RefuseBadToken, wire.RefuseMalformed:
		return true
	}
	return false
}
