package mesh

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/mesh/internal/wire"
)

// FuzzNodeHandle feeds the node's packet handler arbitrary bytes from
// arbitrary addresses (the first byte picks one of a few): it must not
// panic, and its state stays within its bounds. Seeds are the frames a
// peer could send, including hellos that echo the node's valid cookies,
// so the fuzzer reaches admission and the router. With the first byte's
// top bit set, the rest goes authenticated from a keyed neighbour, so the
// fuzzer reaches the link and the router behind the MAC check too.
func FuzzNodeHandle(f *testing.F) {
	nw := memnet.New(1)
	f.Cleanup(func() { nw.Close() })
	cn := nw.Listen()
	n := StartNode(f, Config{HelloInterval: time.Minute, NeighbourTimeout: 2 * time.Minute,
		MaxNeighbours: 2, MaxRoutes: 8, MaxRoutesPerNeighbour: 4}, cn, nil)
	addrs := make([]net.Addr, 4)
	for i := range addrs {
		c := nw.Listen()
		f.Cleanup(func() { c.Close() })
		addrs[i] = c.LocalAddr()
	}
	keyed := &rawPeer{t: f, c: nw.Listen(), to: cn.LocalAddr(), n: n}
	f.Cleanup(func() { keyed.c.Close() })
	kid := forgedID(f)
	keyed.join(kid, wire.Hello{SID: kid.SID(), Epoch: 5, Seq: 2, MTU: 1500})
	keys := keyed.linkKeys()
	kh := wire.DataHeader{Epoch: 5, Seq: 0, TTL: 2, Dst: n.SID(), Src: kid.SID(), DstPort: 9, SrcPort: 9}
	f.Add(append([]byte{0x80}, append(wire.AppendData(nil, &kh), "data"...)...))
	kh.Seq, kh.DstPort, kh.SrcPort = 1, RoutingPort, RoutingPort
	f.Add(append([]byte{0x80}, wire.AppendRouteMsg(wire.AppendData(nil, &kh), &wire.RouteMsg{HasIHU: true, IHU: 100, Entries: originEntries(f, 1)})...))
	f.Add(append([]byte{0x80}, wire.AppendAck(nil, &wire.Ack{Epoch: n.epoch, Cum: 1, Ranges: []wire.Range{{Start: 3, End: 4}}})...))
	f.Add(append([]byte{0x80}, wire.AppendSkip(nil, 5, 3)...))
	f.Add(append([]byte{0x80}, wire.AppendProbe(nil, 1472, 1472-wire.AuthLen)...))
	f.Add(append([]byte{0x80}, wire.AppendProbeAck(nil, 1472, 1472)...))
	ids := freshIDs(f, 3, 4)
	for i, id := range ids {
		echo := n.cookies.make(addrs[i])
		f.Add(append([]byte{byte(i)}, wire.AppendHello(nil, wire.Hello{SID: id.SID(), Seq: 1, MTU: 1500}, id)...))
		f.Add(append([]byte{byte(i)}, wire.AppendHello(nil, wire.Hello{SID: id.SID(), To: n.SID(), Epoch: 3, Seq: 2, MTU: 32768, Echo: echo}, id)...))
		f.Add(append([]byte{byte(i)}, wire.AppendCookie(nil, wire.Cookie{1}, echo)...))
		ents := originEntries(f, 2)
		ents = append(ents, wire.RouteEntry{Origin: ids[(i+1)%3].SID(), Seq: 9, Metric: 0})
		h := wire.DataHeader{Epoch: 3, Seq: 0, TTL: 1, Dst: n.SID(), Src: id.SID(), DstPort: RoutingPort, SrcPort: RoutingPort}
		f.Add(append([]byte{byte(i)}, wire.AppendRouteMsg(wire.AppendData(nil, &h), &wire.RouteMsg{HasIHU: true, IHU: 200, Entries: ents})...))
		h.DstPort, h.Seq = 9, 1
		f.Add(append([]byte{byte(i)}, append(wire.AppendData(nil, &h), "data"...)...))
	}
	f.Add(append([]byte{3}, wire.AppendAck(nil, &wire.Ack{Epoch: 1, Cum: 2, Ranges: []wire.Range{{Start: 4, End: 6}}})...))
	f.Add(append([]byte{3}, wire.AppendProbe(nil, 1, 40)...))
	f.Add(append([]byte{3}, wire.AppendProbeAck(nil, 1472, 1472)...))
	f.Add(append([]byte{3}, wire.AppendSkip(nil, 3, 5)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		if b[0]&0x80 != 0 && len(b) >= 3 {
			inject(n, keys.seal(bytes.Clone(b[1:]), keyed.auth.ctr.Add(1)), keyed.c.LocalAddr())
		} else {
			inject(n, b[1:], addrs[int(b[0])%len(addrs)])
		}
		settle(t, n)
		if k := len(n.neighbours()); k > 2 {
			t.Fatalf("%d neighbours, cap 2", k)
		}
		n.router.mu.Lock()
		defer n.router.mu.Unlock()
		if k := len(n.router.routes); k > 8 {
			t.Fatalf("%d routes, cap 8", k)
		}
		for _, ads := range n.router.adverts {
			if len(ads) > 4 {
				t.Fatalf("%d entries from one neighbour, cap 4", len(ads))
			}
		}
	})
}
