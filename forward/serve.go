// Serving loops: one accepted connection at a time becomes one goroutine
// that joins it with its partner until both directions end.
//
//	Serve:        ln.Accept (local TCP client) ─► open(ctx) stream ─► Join(tcp, stream)
//	ServeStreams: accept(ctx) (tunnelled stream) ─► dial target ─► Join(stream, tcp)

package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// MaxConns bounds the joined pairs one Serve or ServeStreams call runs at a
// time; at the bound it stops accepting until a pair ends, leaving new
// connections waiting in the listener's backlog. A pair holds at most
// 2*BufferSize bytes of buffers and two goroutines.
const MaxConns = 1024

// DialTimeout bounds how long ServeStreams waits for the TCP target to accept
// a connection.
const DialTimeout = 10 * time.Second

// Serve accepts TCP connections on ln and joins each with a stream obtained
// from open(ctx); if open fails the connection is closed. With once it
// handles one connection: it closes ln as soon as that connection is
// accepted and returns, once the join has ended, its error (nil for a clean
// close, the open error, or the Join error).
//
// Otherwise Serve runs until ctx is done (it then returns ctx.Err() after
// every join has been torn down) or ln is closed (it then returns nil after
// every join has ended by itself; cancel ctx to hurry them). open must
// return when its ctx is done. Per-connection errors are logged to log at
// Warn (nil for silence; joins and closes at Debug) and do not stop Serve.
// Serve always closes ln, and no goroutine it started outlives it.
func Serve(ctx context.Context, ln net.Listener, open func(context.Context) (net.Conn, error), once bool, log *slog.Logger) error {
	log = orDiscard(log)
	stop := afterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()

	handle := func(ctx context.Context, c net.Conn) error {
		clog := log.With("client", addrString(c.RemoteAddr()))
		stream, err := open(ctx)
		if err != nil {
			_ = c.Close()
			return fmt.Errorf("forward: open stream for %s: %w", addrString(c.RemoteAddr()), err)
		}
		clog.Debug("forward: joined", "stream", addrString(stream.RemoteAddr()))
		start := time.Now()
		up, down, err := join(ctx, c, stream, "client "+addrString(c.RemoteAddr()), "stream "+addrString(stream.RemoteAddr()))
		clog.Debug("forward: closed", "sent", up, "received", down, "duration", time.Since(start), "err", err)
		return err
	}
	return serveLoop(ctx, func() (net.Conn, error) { return ln.Accept() }, func() { _ = ln.Close() }, handle, once, log)
}

// ServeStreams accepts streams with accept(ctx) and joins each with a new TCP
// connection to target, made with dial (nil: a net.Dialer) within
// DialTimeout. If the dial fails (the target refuses) the stream is closed at
// once, so the far end sees its connection end, and serving continues.
// With once it handles one stream and returns, once the join has ended, its
// error (nil for a clean close, the dial error, or the Join error).
//
// Otherwise it runs until ctx is done (it then returns ctx.Err() after every
// join has been torn down), accept returns net.ErrClosed (nil, after every
// join has ended by itself), or accept fails otherwise (that error, after the
// joins have ended). accept and dial must return when their ctx is done.
// Per-stream errors are logged to log at Warn (nil for silence; joins and
// closes at Debug). No goroutine it started outlives it.
func ServeStreams(ctx context.Context, accept func(context.Context) (net.Conn, error), target string, once bool,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) error {
	return serveStreams(ctx, accept, "tcp", target, once, dial, log)
}

// serveStreams is ServeStreams to a target on any network.
func serveStreams(ctx context.Context, accept func(context.Context) (net.Conn, error), network, target string, once bool,
	dial func(ctx context.Context, network, addr string) (net.Conn, error), log *slog.Logger) error {
	log = orDiscard(log)
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	handle := func(ctx context.Context, stream net.Conn) error {
		slg := log.With("stream", addrString(stream.RemoteAddr()))
		dctx, cancel := context.WithTimeout(ctx, DialTimeout)
		c, err := dial(dctx, network, target)
		cancel()
		if err != nil {
			_ = stream.Close()
			return fmt.Errorf("forward: stream %s: %w", addrString(stream.RemoteAddr()), err)
		}
		slg.Debug("forward: joined", "target", target)
		start := time.Now()
		down, up, err := join(ctx, stream, c, "stream "+addrString(stream.RemoteAddr()), "target "+target)
		slg.Debug("forward: closed", "received", down, "sent", up, "duration", time.Since(start), "err", err)
		return err
	}
	return serveLoop(ctx, func() (net.Conn, error) { return accept(ctx) }, nil, handle, once, log)
}

// ServeConns accepts connections with accept(ctx) and runs handle on each in
// its own goroutine, at most MaxConns at a time, for protocols that do more
// than join (a SOCKS server, a SOCKS exit). It retries transient accept
// errors with back-off, and runs until ctx is done (it then returns
// ctx.Err()), accept returns net.ErrClosed (nil), or accept fails otherwise
// (that error); in every case after all handlers have returned. handle must
// return when its ctx is done; its errors are logged to log at Warn (at
// Debug once ctx is done; nil log for silence). accept must return when its
// ctx is done.
func ServeConns(ctx context.Context, accept func(context.Context) (net.Conn, error),
	handle func(context.Context, net.Conn) error, log *slog.Logger) error {
	return serveLoop(ctx, func() (net.Conn, error) { return accept(ctx) }, nil, handle, false, orDiscard(log))
}

// ServeListener is ServeConns on a listener: it closes ln when ctx is done,
// and always before it returns.
func ServeListener(ctx context.Context, ln net.Listener, handle func(context.Context, net.Conn) error, log *slog.Logger) error {
	stop := afterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer ln.Close()
	return serveLoop(ctx, func() (net.Conn, error) { return ln.Accept() }, nil, handle, false, orDiscard(log))
}

// serveLoop accepts connections and runs handle on each, at most MaxConns at
// a time, until accept fails; then it waits for the handlers. With once it
// calls stopAccepting (if not nil) after the first connection and returns its
// handler's error.
func serveLoop(ctx context.Context, accept func() (net.Conn, error), stopAccepting func(),
	handle func(context.Context, net.Conn) error, once bool, log *slog.Logger) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	slots := make(chan struct{}, MaxConns)
	var backoff time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		c, err := accept()
		if err != nil {
			<-slots
			switch {
			case ctx.Err() != nil:
				return ctx.Err()
			case errors.Is(err, net.ErrClosed):
				return nil
			case !retryable(err):
				return fmt.Errorf("forward: accept: %w", err)
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			log.Warn("forward: accept failed, retrying", "err", err, "in", backoff)
			if err := sleep(ctx, backoff); err != nil {
				return err
			}
			continue
		}
		backoff = 0
		if once {
			if stopAccepting != nil {
				stopAccepting()
			}
			return handle(ctx, c)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			if err := handle(ctx, c); err != nil {
				if ctx.Err() != nil {
					log.Debug("forward: connection ended", "err", err)
				} else {
					log.Warn("forward: connection ended", "err", err)
				}
			}
		}()
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
