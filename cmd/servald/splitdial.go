package main

import (
	"context"
	"errors"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/msp"
	"github.com/servald/servald/msp/splitmsp"
	"github.com/servald/servald/splitter"
)

// splitDial returns msp connect --split's dial: it tries the split
// listener again, with back-off, while its TCP address does not answer
// (it may not be up yet) until ctx ends (the redialer's --timeout); a
// parameter mismatch, a listener's refusal or the wrong node end it at
// once. When ctx ends, the error is the last failure before it.
func splitDial(d *splitmsp.Dialer, cfg msp.Config) func(context.Context, identity.SID, uint16) (*msp.Session, error) {
	return func(ctx context.Context, sid identity.SID, port uint16) (*msp.Session, error) {
		var backoff time.Duration
		var last *splitmsp.DialError
		for {
			s, err := d.Dial(ctx, sid, port, cfg)
			var de *splitmsp.DialError
			if !errors.As(err, &de) {
				return s, err // a session, or the listener's answer
			}
			if last == nil || ctx.Err() == nil {
				last = de
			}
			var ne *splitter.NegotiationError
			if errors.As(de.Err, &ne) || ctx.Err() != nil {
				return nil, splitError(last.Addr, last.Err)
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), time.Second)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, splitError(last.Addr, last.Err)
			}
		}
	}
}
