// Serving loops: one accepted connection at a time becomes one goroutine
// that joins it with its partner until both directions end.
//
//	Serve:        ln.Accept (local TCP client) ─► slot ─► open(ctx) stream ─► Join(tcp, stream)
//	ServeStreams: accept(ctx) (tunnelled stream) ─► slot ─► dial target ─► Join(stream, tcp)
//
// A slot is taken in the loop's table (fair.go) as soon as the connection
// is accepted; when none is free, the table names a pair to evict.

package forward

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// MaxConns is the default bound on the joined pairs one Serve or
// ServeStreams call holds at a time (Forwarder.MaxConns), and the bound of
// ServeConns and ServeListener. A pair holds at most 2*BufferSize bytes of
// buffers and two goroutines.
const MaxConns = 1024

// DefaultIdleTimeout is the idle timeout of the package's Serve,
// ServeStreams and ServeStreamsTo (Forwarder.IdleTimeout).
const DefaultIdleTimeout = 2 * time.Hour

// DialTimeout bounds how long ServeStreams waits for the TCP target to accept
// a connection.
const DialTimeout = 10 * time.Second

// Serve is Forwarder.Serve with the default limits (MaxConns slots, the
// DefaultIdleTimeout), once and log.
func Serve(ctx context.Context, ln net.Listener, open func(context.Context) (net.Conn, error), once bool, log *slog.Logger) error {
	f := &Forwarder{IdleTimeout: DefaultIdleTimeout, Once: once, Logger: log}
	return f.Serve(ctx, ln, open)
}

// ServeStreams is Forwarder.ServeStreams to the TCP address target with the
// default limits (MaxConns slots, the DefaultIdleTimeout), once, dial and
// log.
func ServeStreams(ctx context.Context, accept func(context.Context) (net.Conn, error), target string, once bool,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) error {
	f := &Forwarder{IdleTimeout: DefaultIdleTimeout, Once: once, Dial: dial, Logger: log}
	return f.ServeStreams(ctx, accept, Endpoint{Network: "tcp", Addr: target})
}

// Forwarder runs the serving loops that join connections with streams
// (Serve: local clients to streams; ServeStreams: streams to a target),
// within limits that keep one client from starving the others:
//
//   - at most MaxConns joined pairs at a time; when all are held, a new
//     connection is not left in the listen backlog: one idle pair is
//     closed to make room (see Serve for which), or if every candidate
//     moved a byte within the last second, the newcomer waits;
//   - a pair in which neither direction has moved a byte for IdleTimeout is
//     closed.
//
// The zero Forwarder is usable: MaxConns slots, no idle timeout, no
// logging. Set the fields before the first call and do not change them
// after. A Forwarder may run several calls at once, each with its own
// slots; Stats sums them.
type Forwarder struct {
	// MaxConns bounds the joined pairs of one call (0: the MaxConns
	// constant); set it to what the other side of a pair can hold at once
	// (the streams an MSP session allows, for Serve). A pair that takes
	// the slot of an evicted one waits for that one's teardown (within
	// EvictLinger) before it opens its stream or dials its target, so
	// what the evicted pair held is free for it. Evicted pairs are not
	// counted: at most as many again may be ending at once.
	MaxConns int
	// IdleTimeout closes a pair in which no byte moved either way for
	// this long (0: never; DefaultIdleTimeout is the CLI's default).
	IdleTimeout time.Duration
	// Once makes a call handle a single connection or stream, return its
	// join's error, and stop accepting as soon as it has it.
	Once bool
	// Dial connects ServeStreams to its target (nil: a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives per-connection errors at Warn, and joins, closes,
	// evictions and idle timeouts at Debug; nil for silence.
	Logger *slog.Logger

	accepted, evicted, idleClosed atomic.Uint64
	active                        atomic.Int64
}

// Stats counts what a Forwarder did.
type Stats struct {
	Accepted   uint64 // connections (Serve) or streams (ServeStreams) accepted
	Active     int64  // joined pairs held now (being set up or joined)
	Evicted    uint64 // pairs closed to make room for a new connection
	IdleClosed uint64 // pairs closed by the idle timeout
}

// Stats returns the Forwarder's counters.
func (f *Forwarder) Stats() Stats {
	return Stats{Accepted: f.accepted.Load(), Active: f.active.Load(), Evicted: f.evicted.Load(), IdleClosed: f.idleClosed.Load()}
}

// Validate reports a negative MaxConns or IdleTimeout.
func (f *Forwarder) Validate() error {
	if f.MaxConns < 0 {
		return fmt.Errorf("forward: MaxConns %d < 0", f.MaxConns)
	}
	if f.IdleTimeout < 0 {
		return fmt.Errorf("forward: IdleTimeout %v < 0", f.IdleTimeout)
	}
	return nil
}

// Serve accepts TCP connections on ln and joins each with a stream obtained
// from open(ctx); if open fails the connection is closed. With Once it
// handles one connection: it closes ln as soon as that connection is
// accepted and returns, once the join has ended, its error (nil for a clean
// close, the open error, or the Join error).
//
// Otherwise Serve runs until ctx is done (it then returns ctx.Err() after
// every join has been torn down) or ln is closed (it then returns nil after
// every join has ended by itself; cancel ctx to hurry them). open must
// return when its ctx is done. Per-connection errors are logged at Warn and
// do not stop Serve. Serve always closes ln, and no goroutine it started
// outlives it.
//
// Slots are shared fairly between client addresses (the IP, without the
// port; one key for all clients of a Unix socket). While slots are free
// every connection is taken. When all MaxConns are held, a new connection
// from address k takes the slot of one pair of the address holding the
// most (k itself when it holds as many as any other): of that address's
// pairs, one that has not yet moved a byte (the oldest such, even if it
// is still opening its stream) if there is one, otherwise the one idle the
// longest; never one that moved a byte within the last second (if there
// is no other, the newcomer waits until there is or a slot frees). So a
// client address is never cut for another while it holds no more than any
// other, no address can keep another out, a transfer in progress is not
// cut, and when all clients share one address (127.0.0.1) a fresh
// connection still gets in at once, at the cost of an idle one. The
// evicted pair's client is closed at once; its stream is half-closed and
// drained until the far end's EOF, for at most EvictLinger, then closed.
func (f *Forwarder) Serve(ctx context.Context, ln net.Listener, open func(context.Context) (net.Conn, error)) error {
	stop := afterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	if err := f.Validate(); err != nil {
		return err
	}
	log := orDiscard(f.Logger)
	handle := func(ctx context.Context, c net.Conn, act *activity) error {
		clog := log.With("client", addrString(c.RemoteAddr()))
		stream, err := onFreshStack(func() (net.Conn, error) { return open(ctx) })
		if err != nil {
			_ = c.Close()
			return fmt.Errorf("forward: open stream for %s: %w", addrString(c.RemoteAddr()), err)
		}
		clog.Debug("forward: joined", "stream", addrString(stream.RemoteAddr()))
		start := time.Now()
		up, down, err := join(ctx, c, lingerOnEvict(ctx, stream), act, "client "+addrString(c.RemoteAddr()), "stream "+addrString(stream.RemoteAddr()))
		clog.Debug("forward: closed", "sent", up, "received", down, "duration", time.Since(start), "err", err)
		return err
	}
	l := f.loop(log, handle)
	l.accept = ln.Accept
	l.stopAccepting = func() { _ = ln.Close() }
	return l.run(ctx)
}

// ServeStreams accepts streams with accept(ctx) and joins each with a new
// connection to target, made with Dial within DialTimeout. If the dial fails
// (the target refuses) the stream is closed at once, so the far end sees its
// connection end, and serving continues. With Once it handles one stream and
// returns, once the join has ended, its error (nil for a clean close, the
// dial error, or the Join error).
//
// Otherwise it runs until ctx is done (it then returns ctx.Err() after every
// join has been torn down), accept returns net.ErrClosed (nil, after every
// join has ended by itself), or accept fails otherwise (that error, after the
// joins have ended). accept and Dial must return when their ctx is done.
// Per-stream errors are logged at Warn. No goroutine it started outlives it.
//
// Slots are shared between peers as Serve shares them between client
// addresses; a stream's peer is the host part of its RemoteAddr (the SID of
// an MSP stream over the mesh, whose address is SID:port; the IP of a
// stream over a TCP transport), or the whole address string if it has no
// port.
func (f *Forwarder) ServeStreams(ctx context.Context, accept func(context.Context) (net.Conn, error), target Endpoint) error {
	if err := f.Validate(); err != nil {
		return err
	}
	log := orDiscard(f.Logger)
	dial := f.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	handle := func(ctx context.Context, stream net.Conn, act *activity) error {
		slg := log.With("stream", addrString(stream.RemoteAddr()))
		dctx, cancel := context.WithTimeout(ctx, DialTimeout)
		c, err := onFreshStack(func() (net.Conn, error) { return dial(dctx, target.Network, target.Addr) })
		cancel()
		if err != nil {
			_ = stream.Close()
			return fmt.Errorf("forward: stream %s: %w", addrString(stream.RemoteAddr()), err)
		}
		slg.Debug("forward: joined", "target", target)
		start := time.Now()
		down, up, err := join(ctx, stream, c, act, "stream "+addrString(stream.RemoteAddr()), "target "+target.Addr)
		slg.Debug("forward: closed", "received", down, "sent", up, "duration", time.Since(start), "err", err)
		return err
	}
	l := f.loop(log, handle)
	l.accept = func() (net.Conn, error) { return accept(ctx) }
	return l.run(ctx)
}

// loop returns the serving loop of f with handle; the caller sets accept.
func (f *Forwarder) loop(log *slog.Logger, handle func(context.Context, net.Conn, *activity) error) *loop {
	return &loop{
		handle: handle, once: f.Once, max: cmp.Or(f.MaxConns, MaxConns), evict: true,
		idleTimeout: f.IdleTimeout, log: log, f: f,
	}
}

// ServeConns accepts connections with accept(ctx) and runs handle on each in
// its own goroutine, at most MaxConns at a time, for protocols that do more
// than join (a SOCKS server, a SOCKS exit). At the bound it stops accepting
// until a handler returns, leaving new connections waiting. It retries
// transient accept errors with back-off, and runs until ctx is done (it then
// returns ctx.Err()), accept returns net.ErrClosed (nil), or accept fails
// otherwise (that error); in every case after all handlers have returned.
// handle must return when its ctx is done; its errors are logged to log at
// Warn (at Debug once ctx is done; nil log for silence). accept must return
// when its ctx is done.
func ServeConns(ctx context.Context, accept func(context.Context) (net.Conn, error),
	handle func(context.Context, net.Conn) error, log *slog.Logger) error {
	return plainLoop(func() (net.Conn, error) { return accept(ctx) }, handle, log).run(ctx)
}

// ServeListener is ServeConns on a listener: it closes ln when ctx is done,
// and always before it returns.
func ServeListener(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn) error, log *slog.Logger) error {
	stop := afterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	return plainLoop(ln.Accept, handle, log).run(ctx)
}

// plainLoop is the loop of ServeConns: MaxConns slots, no eviction, no idle
// timeout.
func plainLoop(accept func() (net.Conn, error), handle func(context.Context, net.Conn) error, log *slog.Logger) *loop {
	return &loop{
		accept: accept, max: MaxConns, log: orDiscard(log), f: &Forwarder{},
		handle: func(ctx context.Context, c net.Conn, _ *activity) error { return handle(ctx, c) },
	}
}

// retryable reports whether an accept error is a transient resource
// shortage (as net/http treats them) rather than the end of the listener.
func retryable(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func orDiscard(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}

// addrString formats a possibly nil address.
func addrString(a net.Addr) string {
	if a == nil {
		return "?"
	}
	return a.String()
}
