package mesh

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// askCookie sends a hello of id from c to the node at to without an echo
// and returns the cookie of the COOKIE that answers it (frames of other
// types read meanwhile are skipped).
func askCookie(t testing.TB, c net.PacketConn, to net.Addr, id *identity.Identity) wire.Cookie {
	t.Helper()
	if _, err := c.WriteTo(wire.AppendHello(nil, wire.Hello{SID: id.SID(), Seq: 1, MTU: 1500}, id), to); err != nil {
		t.Fatalf("ask cookie: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	buf := make([]byte, 65536)
	for {
		k, from, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no COOKIE: %v", err)
		}
		if typ, _ := wire.Type(buf[:k]); typ != wire.TypeCookie || from.String() != to.String() {
			continue
		}
		cookie, _, err := wire.ParseCookie(buf[:k])
		if err != nil {
			t.Fatal(err)
		}
		return cookie
	}
}

// settle waits until the node's verifier has handled everything queued.
func settle(t testing.TB, n *Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.verifier.flush(ctx)
	if ctx.Err() != nil {
		t.Fatal("verifier did not settle")
	}
}

// join makes r a neighbour of the node as h.SID (signed by id): the cookie
// exchange, then h with the echo. It returns the cookie.
func (r *rawPeer) join(id *identity.Identity, h wire.Hello) wire.Cookie {
	r.t.Helper()
	h.Echo = askCookie(r.t, r.c, r.to, id)
	r.startAuth(&h)
	r.send(wire.AppendHello(nil, h, id))
	r.barrier()
	return h.Echo
}

// rawNeighbour is a new memnet endpoint on nw that joins n with a fresh
// identity and the given link epoch; it returns the cookie it echoed.
func rawNeighbour(t *testing.T, nw *memnet.Network, n *Node, epoch uint32) (*rawPeer, *identity.Identity, wire.Cookie) {
	t.Helper()
	id := forgedID(t)
	r := &rawPeer{t: t, c: nw.Listen(), to: n.LocalAddr(), n: n}
	t.Cleanup(func() { r.c.Close() })
	echo := r.join(id, wire.Hello{SID: id.SID(), Epoch: epoch, Seq: 2, MTU: 1500})
	return r, id, echo
}
