package splitter

// Helpers for a splitter session that carries one tunnelled connection
// (split listen/connect): dialling until the listener answers, a Close
// that resets a stream cut short, and turning away sessions a one-shot
// listener does not serve.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// DialRetry opens a session to the listener at addr as Dial does, trying
// again with back-off while nothing answers there, for at most timeout
// (see Retry).
func DialRetry(ctx context.Context, addr string, cfg Config, timeout time.Duration) (*Conn, error) {
	var c *Conn
	err := Retry(ctx, timeout, func(ctx context.Context) error {
		var err error
		c, err = Dial(ctx, addr, cfg)
		return err
	})
	return c, err
}

// Retry runs try until it succeeds, with back-off (50 ms doubling to 1 s),
// for at most timeout. A parameter mismatch (*NegotiationError) and the
// end of ctx end it at once with that error; after timeout the error says
// so and wraps the last failure.
func Retry(ctx context.Context, timeout time.Duration, try func(context.Context) error) error {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var backoff time.Duration
	var last error // the last failure not caused by the timeout
	for {
		err := try(dctx)
		var ne *NegotiationError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ne) || ctx.Err() != nil:
			return err
		case dctx.Err() == nil || last == nil:
			last = err
		}
		backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-dctx.Done():
			t.Stop()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("unreachable after %v: %w", timeout, last)
		}
	}
}

// TunnelConn is a session used as one tunnelled connection. Its Close ends
// the stream cleanly only once this side's direction has ended
// (CloseWrite); a Close before that (the other side of the tunnel failed,
// the process is stopping) resets the session, so that the far end sees
// the tunnel break instead of a stream that looks complete.
type TunnelConn struct {
	*Conn
	ended atomic.Bool // CloseWrite was called
}

// Tunnel wraps c as a TunnelConn.
func Tunnel(c *Conn) *TunnelConn { return &TunnelConn{Conn: c} }

// CloseWrite ends this direction; the far end reads io.EOF.
func (t *TunnelConn) CloseWrite() error {
	t.ended.Store(true)
	return t.Conn.CloseWrite()
}

// Close closes the session, cleanly after CloseWrite, else by Reset.
func (t *TunnelConn) Close() error {
	if t.ended.Load() {
		return t.Conn.Close()
	}
	return t.Conn.Reset()
}

// TurnAway resets every session that arrives, until l is closed: a
// listener that serves one connection (stdio, --once) keeps listening for
// the lanes its session re-opens, and its other clients fail at once
// instead of waiting.
func (l *Listener) TurnAway(log *slog.Logger) {
	for {
		c, err := l.AcceptContext(context.Background())
		if err != nil {
			return // closed
		}
		if log != nil {
			log.Warn("split listen: turned a session away: this listener serves one connection", "remote", c.RemoteAddr())
		}
		c.Reset()
	}
}
