// Exit side: one stream names its destination in its first bytes.
//
//	stream ─ Request ─► Rules ─► resolve (names) ─► Rules ─► dial
//	stream ◄─ Reply (status, bound address) ◄────────────────┘
//	stream ◄──────────── forward.Join ─────────────► destination

package socks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/servald/servald/forward"
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Exit is the far end of `msp listen --socks`: it connects each stream to
// the destination its Request names, if Rules allow it.
type Exit struct {
	// Rules admit destinations; the zero Rules refuse all.
	Rules Rules
	// Dial makes the TCP connection (nil: a net.Dialer). It is given an
	// IP address and port, never a name.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Resolver resolves names (nil: net.DefaultResolver).
	Resolver Resolver
	// DialTimeout bounds resolving and dialling a destination
	// (0: forward.DialTimeout).
	DialTimeout time.Duration
	// HeaderTimeout bounds the wait for the Request (0: SetupTimeout).
	HeaderTimeout time.Duration
	// Logger receives refused destinations at Warn, failed dials at Info,
	// the rest at Debug; nil for silence.
	Logger *slog.Logger

	streams, connected, refused, unreachable, badRequests atomic.Uint64
}

// ExitStats counts what an Exit did with its streams.
type ExitStats struct {
	Streams     uint64 // streams handled
	Connected   uint64 // destinations connected to (whether the reply got through or not)
	Refused     uint64 // destinations the rules refused
	Unreachable uint64 // destinations that could not be reached
	BadRequests uint64 // streams without a valid Request in time
}

// Stats returns the Exit's counters.
func (e *Exit) Stats() ExitStats {
	return ExitStats{
		Streams: e.streams.Load(), Connected: e.connected.Load(), Refused: e.refused.Load(),
		Unreachable: e.unreachable.Load(), BadRequests: e.badRequests.Load(),
	}
}

// Serve accepts streams with accept(ctx) and handles each with Handle, at
// most forward.MaxConns at a time, until ctx is done (it returns ctx.Err())
// or accept returns net.ErrClosed (nil), after every stream has ended.
// Errors of Handle are logged at Warn, except refusals, which Handle has
// logged already: one line per refused destination.
func (e *Exit) Serve(ctx context.Context, accept func(context.Context) (net.Conn, error)) error {
	handle := func(ctx context.Context, stream net.Conn) error {
		if err := e.Handle(ctx, stream); !errors.Is(err, errRefused) {
			return err
		}
		return nil
	}
	return forward.ServeConns(ctx, accept, handle, e.Logger)
}

// Handle reads the Request on stream, connects to its destination if the
// rules allow it, writes the Reply, and on success joins stream and the
// connection until both directions end. On a failure the Reply carries the
// SOCKS5 code that says why (NotAllowed for a destination the rules refuse)
// and the stream is closed. Handle always closes stream; its error says why
// the connection failed (nil for a clean end).
func (e *Exit) Handle(ctx context.Context, stream net.Conn) error {
	log := logger(e.Logger).With("stream", remote(stream))
	e.streams.Add(1)
	timeout := orDefault(e.HeaderTimeout, SetupTimeout)
	hctx, cancel := context.WithTimeout(ctx, timeout)
	stopHeader := context.AfterFunc(hctx, func() { _ = stream.Close() })
	req, err := ReadRequest(stream)
	headerInTime := stopHeader()
	cancel()
	if err != nil || !headerInTime {
		e.badRequests.Add(1)
	}
	if err != nil {
		status := GeneralFailure
		if errors.Is(err, ErrAddrType) {
			status = AddressTypeNotSupported
		}
		_, _ = stream.Write(Reply{Status: status}.Append(nil))
		_ = stream.Close()
		return fmt.Errorf("socks: stream %s: read request: %w", remote(stream), err)
	}
	if !headerInTime {
		_ = stream.Close()
		return fmt.Errorf("socks: stream %s: no request within %v", remote(stream), timeout)
	}

	c, status, err := e.connect(ctx, req.Dest)
	if err != nil {
		// Counted and logged before the reply, so that a client that has
		// it finds both.
		if status == NotAllowed {
			e.refused.Add(1)
			log.Warn("socks: destination refused by the rules", "dest", req.Dest.String(), "why", err)
		} else {
			e.unreachable.Add(1)
			log.Info("socks: cannot reach destination", "dest", req.Dest.String(), "status", status.String(), "err", err)
		}
		_, _ = stream.Write(Reply{Status: status}.Append(nil))
		_ = stream.Close()
		return fmt.Errorf("socks: stream %s: %s: %w", remote(stream), req.Dest, err)
	}
	var bound Addr
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		bound = Addr{IP: ap.Addr().Unmap(), Port: ap.Port()}
	}
	e.connected.Add(1)
	if _, err := stream.Write(Reply{Status: Succeeded, Bound: bound}.Append(nil)); err != nil {
		_ = stream.Close()
		_ = c.Close()
		return fmt.Errorf("socks: stream %s: write reply: %w", remote(stream), err)
	}
	log.Debug("socks: connected", "dest", req.Dest.String(), "addr", remote(c))
	start := time.Now()
	down, up, err := forward.Join(ctx, stream, c)
	log.Debug("socks: closed", "dest", req.Dest.String(), "sent", down, "received", up, "duration", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("socks: stream %s: %s: %w", remote(stream), req.Dest, err)
	}
	return nil
}

// errRefused is the error of a destination the rules do not admit.
var errRefused = errors.New("not allowed by the rules")

// connect checks dest against the rules, resolves a name, and dials the
// first allowed address that accepts. On failure it returns the SOCKS5 code
// that says why.
func (e *Exit) connect(ctx context.Context, dest Addr) (net.Conn, Status, error) {
	ctx, cancel := context.WithTimeout(ctx, orDefault(e.DialTimeout, forward.DialTimeout))
	defer cancel()

	if !dest.IP.IsValid() {
		if ip, err := netip.ParseAddr(dest.Name); err == nil {
			if ip.Zone() != "" {
				return nil, HostUnreachable, fmt.Errorf("address %s has a zone", dest.Name)
			}
			dest = Addr{IP: ip, Port: dest.Port} // an address sent as a name is an address
		}
	}
	var candidates []netip.AddrPort
	if dest.IP.IsValid() {
		ap := netip.AddrPortFrom(dest.IP.Unmap(), dest.Port)
		if !e.Rules.AllowAddr(ap) {
			return nil, NotAllowed, errRefused
		}
		candidates = append(candidates, ap)
	} else {
		byName := e.Rules.AllowName(dest.Name, dest.Port)
		if !byName && !e.Rules.addrRulesFor(dest.Port) {
			return nil, NotAllowed, errRefused // no need to resolve
		}
		if !forward.ValidName(dest.Name) {
			return nil, HostUnreachable, fmt.Errorf("%q is not a host name", dest.Name)
		}
		resolver := e.Resolver
		if resolver == nil {
			resolver = net.DefaultResolver
		}
		ips, err := resolver.LookupNetIP(ctx, "ip", dest.Name)
		if err == nil && len(ips) == 0 {
			err = fmt.Errorf("%s has no address", dest.Name)
		}
		if err != nil {
			return nil, HostUnreachable, fmt.Errorf("resolve: %w", err)
		}
		for _, ip := range ips {
			ap := netip.AddrPortFrom(ip.Unmap(), dest.Port)
			if byName || e.Rules.AllowAddr(ap) {
				candidates = append(candidates, ap)
			}
		}
		if len(candidates) == 0 {
			return nil, NotAllowed, fmt.Errorf("%w: none of %v", errRefused, ips)
		}
	}

	dial := e.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	var err error
	for _, ap := range candidates {
		var c net.Conn
		if c, err = dial(ctx, "tcp", ap.String()); err == nil {
			return c, Succeeded, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, StatusOf(err), err
}

// StatusOf maps a dial error to the SOCKS5 reply code that describes it:
// ConnectionRefused, HostUnreachable (also a failed name lookup),
// NetworkUnreachable, TTLExpired for a timeout, GeneralFailure otherwise.
func StatusOf(err error) Status {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case err == nil:
		return Succeeded
	case errors.As(err, &dnsErr):
		return HostUnreachable
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectionRefused
	case errors.Is(err, syscall.EHOSTUNREACH):
		return HostUnreachable
	case errors.Is(err, syscall.ENETUNREACH):
		return NetworkUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &netErr) && netErr.Timeout():
		return TTLExpired
	}
	return GeneralFailure
}
