package instance

// Plain split tunnels (`split connect --forward`): each TCP connection
// accepted locally becomes one splitter session to the listener.

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/splitter"
)

// SplitForward serves `split connect --forward`: it checks, within
// timeout, that the split listener at addr is there and agrees on cfg's
// --fec and --payload (as msp connect opens its session at start), calls
// ready, then opens one session with dial for each connection ln accepts
// and joins them with f. A negotiation error stops it, since every session
// would meet it; ctx ending (a signal) is a clean stop.
func SplitForward(ctx context.Context, f *forward.Forwarder, ln net.Listener, addr string, cfg splitter.Config, timeout time.Duration,
	dial func(context.Context) (*splitter.Conn, error), ready func()) error {
	if err := splitter.Retry(ctx, timeout, func(ctx context.Context) error {
		return splitter.Probe(ctx, addr, cfg)
	}); err != nil {
		return SplitError(addr, err)
	}
	ready()
	sctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	open := func(ctx context.Context) (net.Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			var ne *splitter.NegotiationError
			if errors.As(err, &ne) {
				stop(err)
			}
			return nil, err
		}
		return splitter.Tunnel(c), nil
	}
	err := f.Serve(sctx, ln, open)
	if cause := context.Cause(sctx); ctx.Err() == nil && cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return IgnoreCanceled(err)
}

// IgnoreCanceled is err, or nil when it says the context was cancelled
// (a command stopped by a signal).
func IgnoreCanceled(err error) error {
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
