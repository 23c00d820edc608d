package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/servald/servald/msp"
	"github.com/servald/servald/splitter"
)

// TestExplain: the layers' jargon, as it reaches a user in an error chain,
// reads in the user's words; other messages are left as they are.
func TestExplain(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("stream broke: %w", fmt.Errorf("forward: b->a: %w", io.ErrClosedPipe)), "stream broke: the other side closed the connection"},
		{fmt.Errorf("stream broke: forward: %w", context.Canceled), "stream broke: interrupted"},
		{fmt.Errorf("stream broke: forward: b->a: %w", net.ErrClosed), "stream broke: the other side closed the connection"},
		{context.Canceled, "interrupted"},
		{fmt.Errorf("forward: stream X:5000->client 127.0.0.1:1: %w", io.ErrClosedPipe), "forward: stream X:5000->client 127.0.0.1:1: the other side closed the connection"},
		{fmt.Errorf("msp: dial: %w", msp.ErrRefused), "msp: dial: the other side refused the session"},
		{errors.New("stream broke: msp: arq: peer aborted the connection"), "stream broke: the other side closed the connection"},
		{errors.New("stream broke: arq: peer gone (idle timeout)"), "stream broke: the peer stopped answering for 10 s"},
		{errors.New("arq: shutdown: arq: peer closed the connection"), "the other side closed the connection"},
		{fmt.Errorf("stream broke: forward: b->a: %w", errors.Join(splitter.ErrPeerClosed, errors.New("splitter: peer said: reset"))), "stream broke: the other side closed the connection; it said: reset"},
		{errors.New("TCP port 127.0.0.1:80 is in use"), "TCP port 127.0.0.1:80 is in use"},
	} {
		if got := Explain(tc.err); got != tc.want {
			t.Errorf("Explain(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
