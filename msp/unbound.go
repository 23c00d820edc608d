package msp

// The node's answer for MDP ports nothing listens on: an INIT that
// arrives on such a port (mesh.Node.SetUnbound hands it here) gets the
// signed REFUSE "no listener" at once, as a listener answers an INIT for
// another port, so that the dialer fails at once instead of waiting for
// its timeout. Anything else is dropped.

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/ratelimit"
	"github.com/servald/servald/msp/internal/seal"
)

// Bounds of the refuser: the refusals signed per second (each costs a
// signature check and a signature), and the answers kept for INITs that
// are retransmitted.
const (
	maxRefusalsPerSecond = 200
	maxRefusedKept       = 64
)

// Refuser answers INITs that reach a node on MDP ports nothing is bound
// to (see RefuseUnbound).
type Refuser struct {
	tr   Transport
	id   *identity.Identity
	log  *slog.Logger
	done chan struct{}
	once sync.Once
}

// RefuseUnbound answers every INIT read from tr, which receives the
// datagrams for this node's unbound ports, with a REFUSE "no listener"
// signed by id, until Close (or tr's end).
func RefuseUnbound(tr Transport, id *identity.Identity, log *slog.Logger) *Refuser {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Refuser{tr: tr, id: id, log: log, done: make(chan struct{})}
	go r.loop()
	return r
}

func (r *Refuser) loop() {
	defer close(r.done)
	buf := make([]byte, 65536)
	kept := map[[seal.HashLen]byte]answer{}
	var order [][seal.HashLen]byte
	signs := ratelimit.New(maxRefusalsPerSecond, maxRefusalsPerSecond)
	for {
		k, from, err := r.tr.ReadFrom(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		pkt := buf[:k]
		if typ, err := seal.PacketType(pkt); err != nil || typ != seal.TypeInit {
			continue
		}
		h := seal.HashInit(pkt)
		if a, ok := kept[h]; ok {
			if a.to == from.String() {
				r.tr.WriteTo(a.reply, from) // a retransmitted INIT
			}
			continue
		}
		if !signs.Take() {
			continue
		}
		in, err := seal.ParseInit(pkt, r.id, time.Now())
		if err != nil || !r.tr.FromNode(from, in.Peer()) {
			continue
		}
		port, _ := parsePortParams(in.Params())
		reply := in.Refuse(seal.RefuseNoListener, "nothing listens on that port")
		r.log.Debug("msp: refused a session for a port nothing listens on", "sid", in.Peer().Short(), "port", port)
		if len(order) >= maxRefusedKept {
			delete(kept, order[0])
			order = order[1:]
		}
		kept[h] = answer{reply: reply, to: from.String()}
		order = append(order, h)
		r.tr.WriteTo(reply, from)
	}
}

// Close stops answering, closes the transport and waits for the
// goroutine. It is idempotent.
func (r *Refuser) Close() error {
	r.once.Do(func() { r.tr.Close() })
	<-r.done
	return nil
}
