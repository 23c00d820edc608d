package instance

// What the layers' errors mean to a user: the one place where an error
// chain's jargon ("context canceled", "io: read/write on closed pipe",
// "arq: peer aborted the connection") becomes words a user can act on.

import (
	"context"
	"io"
	"net"
	"strings"

	"github.com/servald/servald/msp"
	"github.com/servald/servald/splitter"
)

// plainWords maps jargon, as it reads in an error's message, to the
// user's words, in this order. The messages are those of context, io,
// msp, splitter and msp's internal arq and seal layers (whose errors
// cannot be named here); msp's sessions run arq with its default idle
// timeout of 10 s.
var plainWords = []struct{ text, phrase string }{
	{context.Canceled.Error(), "interrupted"},
	{io.ErrClosedPipe.Error(), "the other side closed the connection"},
	{net.ErrClosed.Error(), "the other side closed the connection"},
	{msp.ErrSessionEnded.Error(), "the other side closed the connection"},
	{"arq: peer aborted the connection", "the other side closed the connection"},
	{"arq: peer closed the connection", "the other side closed the connection"},
	{"arq: peer gone (idle timeout)", "the peer stopped answering for 10 s"},
	{msp.ErrRefused.Error(), "the other side refused the session"},
	{splitter.ErrPeerClosed.Error(), "the other side closed the connection"},
	{"splitter: peer said: ", "it said: "},
	{splitter.ErrPeerTimeout.Error(), "the other side stopped answering"},
}

// layerNames are the message prefixes of the layers ("forward: ", the
// direction "a->b: " of a copy, and arq's "shutdown: " before the reason a
// session could not end cleanly), dropped when they lead to a phrase.
var layerNames = map[string]bool{
	"forward": true, "msp": true, "arq": true, "seal": true, "splitter": true,
	"smux": true, "io": true, "a->b": true, "b->a": true, "shutdown": true,
}

// Explain returns err's message on one line, with the jargon of the
// layers below in the user's words: "stream broke: forward: b->a: io:
// read/write on closed pipe" reads "stream broke: the other side closed
// the connection".
func Explain(err error) string {
	msg := strings.ReplaceAll(err.Error(), "\n", "; ")
	for _, p := range plainWords {
		if i := strings.Index(msg, p.text); i >= 0 {
			msg = trimLayers(msg[:i]) + p.phrase + msg[i+len(p.text):]
		}
	}
	return msg
}

// trimLayers drops the trailing "layer: " segments of a message prefix.
func trimLayers(prefix string) string {
	if !strings.HasSuffix(prefix, ": ") {
		return prefix
	}
	segs := strings.Split(strings.TrimSuffix(prefix, ": "), ": ")
	n := len(segs)
	for n > 0 && layerNames[segs[n-1]] {
		n--
	}
	if n == 0 {
		return ""
	}
	return strings.Join(segs[:n], ": ") + ": "
}
