// Connector side: one SOCKS5 client connection becomes one stream.
//
//	client ─ greeting ─► method (no auth, or RFC 1929 when Auth is set)
//	client ─ CONNECT ──► open(ctx) stream ─ Request ─► exit
//	client ◄─ reply with the exit's status ◄─ Reply ─┘
//	client ◄──────────── forward.Join ──────────────► stream

package socks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/forward"
)

// SetupTimeout is the default bound on setting up one connection: the SOCKS
// handshake, opening the stream and the exit's reply (the exit's dial takes
// up to forward.DialTimeout of it).
const SetupTimeout = 30 * time.Second

// SOCKS5 constants (RFC 1928, RFC 1929).
const (
	socksVersion     = 5
	methodNoAuth     = 0x00
	methodUserPass   = 0x02
	methodNone       = 0xff
	userPassVersion  = 1
	cmdConnect       = 1
	userPassSuccess  = 0
	userPassFailure  = 1
	socksRequestHead = 3 // VER CMD RSV before the address
)

// Server is the local SOCKS5 server of `msp connect --socks`.
type Server struct {
	// Open opens a stream to the exit; it must return when ctx is done.
	Open func(ctx context.Context) (net.Conn, error)
	// Auth, when not nil, requires RFC 1929 username/password
	// authentication; otherwise the server accepts clients without
	// authentication only.
	Auth *Auth
	// Timeout bounds the setup of one connection (0: SetupTimeout).
	Timeout time.Duration
	// Logger receives per-connection errors at Warn, the rest at Debug;
	// nil for silence.
	Logger *slog.Logger

	clients, connected, authFailures, badClients, exitFailures atomic.Uint64
}

// ServerStats counts what a Server did with its clients.
type ServerStats struct {
	Clients      uint64 // connections handled
	Connected    uint64 // clients connected through the exit
	AuthFailures uint64 // wrong username or password
	BadClients   uint64 // other handshake failures (protocol errors, closed early)
	ExitFailures uint64 // no stream, no reply, or a reply other than Succeeded
}

// Stats returns the Server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Clients: s.clients.Load(), Connected: s.connected.Load(), AuthFailures: s.authFailures.Load(),
		BadClients: s.badClients.Load(), ExitFailures: s.exitFailures.Load(),
	}
}

// Serve accepts SOCKS clients on ln and handles each with ServeConn, at
// most forward.MaxConns at a time, until ctx is done (it returns ctx.Err())
// or ln is closed (nil). It always closes ln, and returns once every
// connection it accepted has ended.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return forward.ServeListener(ctx, ln, s.ServeConn, s.Logger)
}

// ServeConn runs the SOCKS5 handshake with the client c, opens a stream,
// asks the exit for the client's destination, gives the client the exit's
// answer, and on success joins c and the stream until both directions end.
// It always closes c. The error says why the connection failed (nil for a
// clean end).
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	log := logger(s.Logger).With("client", remote(c))
	s.clients.Add(1)
	timeout := orDefault(s.Timeout, SetupTimeout)
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// When the setup takes too long or ctx is done, closing the stream (or
	// c, before there is a stream) ends the blocking read or write; once
	// the stream is closed the client still gets a reply.
	var mu sync.Mutex
	var stream net.Conn // guarded by mu until the setup ends
	expired := false    // guarded by mu
	stopSetup := context.AfterFunc(sctx, func() {
		mu.Lock()
		defer mu.Unlock()
		expired = true
		if stream != nil {
			_ = stream.Close()
		} else {
			_ = c.Close()
		}
	})
	fail := func(err error) error {
		stopSetup()
		_ = c.Close()
		mu.Lock()
		if stream != nil {
			_ = stream.Close()
		}
		mu.Unlock()
		if sctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("%w (setup took longer than %v)", err, timeout)
		}
		return fmt.Errorf("socks: client %s: %w", remote(c), err)
	}

	dest, err := serverHandshake(c, s.Auth)
	if err != nil {
		if errors.Is(err, errBadPassword) {
			s.authFailures.Add(1)
		} else {
			s.badClients.Add(1)
		}
		return fail(err)
	}
	st, err := s.Open(sctx)
	mu.Lock()
	stream = st
	if err == nil && expired {
		err = sctx.Err() // the stream came too late to be closed by stopSetup
	}
	mu.Unlock()
	if err != nil {
		s.exitFailures.Add(1)
		_, _ = c.Write(socksReply(GeneralFailure, Addr{}))
		return fail(fmt.Errorf("open stream: %w", err))
	}
	if _, err := stream.Write(Request{Dest: dest}.Append(nil)); err != nil {
		s.exitFailures.Add(1)
		_, _ = c.Write(socksReply(GeneralFailure, Addr{}))
		return fail(fmt.Errorf("send request: %w", err))
	}
	rep, err := ReadReply(stream)
	if err != nil {
		s.exitFailures.Add(1)
		_, _ = c.Write(socksReply(GeneralFailure, Addr{}))
		return fail(fmt.Errorf("no reply from the exit: %w", err))
	}
	if _, err := c.Write(socksReply(rep.Status, rep.Bound)); err != nil {
		return fail(err)
	}
	if rep.Status != Succeeded {
		s.exitFailures.Add(1)
		return fail(fmt.Errorf("exit: %s: %s", dest, rep.Status))
	}
	if !stopSetup() {
		return fail(errors.New("setup timed out"))
	}
	s.connected.Add(1)
	log.Debug("socks: connected", "dest", dest.String(), "bound", rep.Bound.String())
	start := time.Now()
	up, down, err := forward.Join(ctx, c, stream)
	log.Debug("socks: closed", "dest", dest.String(), "sent", up, "received", down, "duration", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("socks: client %s: %w", remote(c), err)
	}
	return nil
}

// serverHandshake runs the SOCKS5 handshake on the server side up to the
// CONNECT request and returns its destination. On a failure it sends the
// client the reply the RFCs prescribe, where there is one, and returns an
// error; the caller closes the connection.
func serverHandshake(rw io.ReadWriter, auth *Auth) (Addr, error) {
	var head [2]byte
	if _, err := io.ReadFull(rw, head[:]); err != nil {
		return Addr{}, fmt.Errorf("read greeting: %w", err)
	}
	if head[0] != socksVersion {
		return Addr{}, fmt.Errorf("not SOCKS5: version byte %d", head[0])
	}
	methods := make([]byte, head[1])
	if _, err := io.ReadFull(rw, methods); err != nil {
		return Addr{}, fmt.Errorf("read greeting: %w", err)
	}
	want := byte(methodNoAuth)
	if auth != nil {
		want = methodUserPass
	}
	chosen := byte(methodNone)
	for _, m := range methods {
		if m == want {
			chosen = want
		}
	}
	if _, err := rw.Write([]byte{socksVersion, chosen}); err != nil {
		return Addr{}, err
	}
	if chosen == methodNone {
		return Addr{}, fmt.Errorf("client offers none of our methods (want 0x%02x)", want)
	}
	if auth != nil {
		if err := checkUserPass(rw, auth); err != nil {
			return Addr{}, err
		}
	}

	b, err := readMessage(rw, socksRequestHead)
	switch {
	case errors.Is(err, ErrAddrType):
		_, _ = rw.Write(socksReply(AddressTypeNotSupported, Addr{}))
		return Addr{}, err
	case errors.Is(err, errEmptyName):
		_, _ = rw.Write(socksReply(GeneralFailure, Addr{}))
		return Addr{}, err
	case err != nil:
		return Addr{}, fmt.Errorf("read request: %w", err)
	case b[0] != socksVersion:
		_, _ = rw.Write(socksReply(GeneralFailure, Addr{}))
		return Addr{}, fmt.Errorf("request: version byte %d", b[0])
	case b[1] != cmdConnect:
		_, _ = rw.Write(socksReply(CommandNotSupported, Addr{}))
		return Addr{}, fmt.Errorf("command %d not supported", b[1])
	}
	dest, _, err := ParseAddr(b[socksRequestHead:])
	if err != nil { // cannot happen: readMessage read a whole address
		_, _ = rw.Write(socksReply(GeneralFailure, Addr{}))
		return Addr{}, err
	}
	return dest, nil
}

// errBadPassword is the error of a client that gave a wrong username or
// password.
var errBadPassword = errors.New("wrong username or password")

// checkUserPass runs the RFC 1929 subnegotiation.
func checkUserPass(rw io.ReadWriter, auth *Auth) error {
	// VER ULEN UNAME PLEN PASSWD
	var b [1 + 1 + 255 + 1 + 255]byte
	if _, err := io.ReadFull(rw, b[:2]); err != nil {
		return fmt.Errorf("read username: %w", err)
	}
	if b[0] != userPassVersion {
		_, _ = rw.Write([]byte{userPassVersion, userPassFailure})
		return fmt.Errorf("username/password version %d", b[0])
	}
	ulen := int(b[1])
	if _, err := io.ReadFull(rw, b[2:2+ulen+1]); err != nil {
		return fmt.Errorf("read username: %w", err)
	}
	user := string(b[2 : 2+ulen])
	plen := int(b[2+ulen])
	if _, err := io.ReadFull(rw, b[3+ulen:3+ulen+plen]); err != nil {
		return fmt.Errorf("read password: %w", err)
	}
	if !auth.Check(user, string(b[3+ulen:3+ulen+plen])) {
		_, _ = rw.Write([]byte{userPassVersion, userPassFailure})
		return fmt.Errorf("%w for %q", errBadPassword, user)
	}
	_, err := rw.Write([]byte{userPassVersion, userPassSuccess})
	return err
}

// socksReply encodes a SOCKS5 reply: VER REP RSV ATYP BND.ADDR BND.PORT.
func socksReply(s Status, bound Addr) []byte {
	return unspecified(bound).Append([]byte{socksVersion, byte(s), 0})
}

// remote names the peer of c, which may have no address (a Unix socket
// client).
func remote(c net.Conn) string {
	if a := c.RemoteAddr(); a != nil && a.String() != "" {
		return a.String()
	}
	return "?"
}

// orDefault returns d, or def if d is not positive.
func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
