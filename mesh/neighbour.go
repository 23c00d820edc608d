package mesh

// Neighbours: nodes heard directly. A neighbour exists once a HELLO signed
// by its SID arrived from an address that echoed our cookie (admission.go);
// its address is where its signed hellos and authenticated frames
// (linkauth.go) come from, so a node behind NAT is reached at the address
// it was heard at.

import (
	"crypto/ecdh"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/ratelimit"
	"github.com/servald/servald/mesh/internal/wire"
)

// probeSizes are the frame sizes tried for a link's MTU, largest first. The
// smallest is assumed to pass (IPv6's minimum MTU less headers).
var probeSizes = []int{32768, 16384, 8972, 1472}

// baseMTU is the frame size every link starts with: 1232 bytes (IPv6's
// minimum MTU less headers) less the authentication trailer. A link's MTU
// counts the frame without that trailer, as do every MTU and payload size
// above the link layer; probes and the probeSizes count whole datagrams.
const baseMTU = 1232 - wire.AuthLen

type neighbour struct {
	n    *Node
	sid  identity.SID
	link *link

	lastHeard atomic.Int64 // unix nanoseconds
	mtu       atomic.Int32 // largest frame known to pass

	mu       sync.Mutex
	addr     net.Addr // guarded by mu
	epoch    uint32   // peer's link epoch; guarded by mu
	helloSeq uint64   // newest hello accepted; guarded by mu
	peerMTU  int      // largest frame the peer reads; guarded by mu
	probes   int      // probe rounds sent; guarded by mu
	since    time.Time

	peerCookie wire.Cookie // its cookie for our address, echoed in our hellos; guarded by mu

	eph   *ecdh.PrivateKey         // our ephemeral key for this link (linkauth.go)
	keys  atomic.Pointer[linkKeys] // nil until the neighbour's ephemeral is known; replaced with n.mu held
	txCtr atomic.Uint64            // counter of the authenticated frames sent to it

	verifyBucket *ratelimit.Bucket // signatures checked for it
	originBucket *ratelimit.Bucket // new origins it introduces

	// Traffic of the link: authenticated frames (DATA, ACK, SKIP, PROBE,
	// PROBEACK) whole, trailer included, counted where they are written
	// (sendLink) and read (handleLink). Hellos are not counted.
	bytesIn, bytesOut   atomic.Uint64
	framesIn, framesOut atomic.Uint64
}

func (nb *neighbour) heard() { nb.lastHeard.Store(time.Now().UnixNano()) }

func (nb *neighbour) address() net.Addr {
	nb.mu.Lock()
	defer nb.mu.Unlock()
	return nb.addr
}

// sidAt returns the SID of the neighbour at addr, or zero.
func (n *Node) sidAt(addr net.Addr) identity.SID {
	if nb := n.neighbourAt(addr); nb != nil {
		return nb.sid
	}
	return identity.SID{}
}

// neighbourAt returns the neighbour whose frames come from addr.
func (n *Node) neighbourAt(addr net.Addr) *neighbour {
	k := addr.String()
	n.mu.RLock()
	nb := n.byAddr[k]
	n.mu.RUnlock()
	return nb
}

// sendHello sends one signed hello to addr with our cookie for it and the
// echo of its cookie for us (zero if we have none). A hello to a
// neighbour (nb not nil) carries our ephemeral key for the link and the
// neighbour's one we hold.
func (n *Node) sendHello(to net.Addr, nb *neighbour, flags byte, echo wire.Cookie) {
	h := wire.Hello{SID: n.sid, Epoch: n.epoch, Seq: n.helloSeq.Add(1), MTU: maxDatagram, Flags: flags,
		Cookie: n.cookies.make(to), Echo: echo}
	if nb != nil {
		h.To, h.Eph = nb.sid, ephPublic(nb.eph)
		if k := nb.keys.Load(); k != nil {
			h.PeerEph = k.peerEph
		}
	}
	n.stats.controlOut.Add(wire.HelloLen)
	n.stats.helloOut.Add(wire.HelloLen)
	n.send(wire.AppendHello(nil, h, n.id), to)
}

// Probe rounds: the first fullProbeRounds try every size above the link's
// MTU; up to probeRounds in all (one per hello interval) retry only the
// smallest, which costs little and keeps a link that lost its first
// probes (or their answers) from staying at baseMTU for good.
const (
	fullProbeRounds = 3
	probeRounds     = 10
)

// probe sends one round of MTU probes to nb for the sizes above its MTU,
// once the link is keyed (see confirm).
func (n *Node) probe(nb *neighbour) {
	if !nb.ready() {
		return
	}
	nb.mu.Lock()
	if nb.probes >= probeRounds {
		nb.mu.Unlock()
		return
	}
	nb.probes++
	round := nb.probes
	peerMTU, addr := nb.peerMTU, nb.addr
	nb.mu.Unlock()
	cur := int(nb.mtu.Load()) + wire.AuthLen
	for i, size := range probeSizes {
		if size <= cur || size > peerMTU || (round > fullProbeRounds && i < len(probeSizes)-1) {
			continue
		}
		n.stats.controlOut.Add(uint64(size))
		n.stats.probeOut.Add(uint64(size))
		n.sendLink(nb, wire.AppendProbe(make([]byte, 0, size), uint32(size), size-wire.AuthLen), addr)
	}
}

// probeAcked raises the link MTU when a probe of that size (the whole
// datagram) got through.
func (nb *neighbour) probeAcked(id uint32, size int) {
	if int(id) != size || size > maxDatagram || size < baseMTU+wire.AuthLen {
		return
	}
	size -= wire.AuthLen
	for {
		cur := nb.mtu.Load()
		if int32(size) <= cur || nb.mtu.CompareAndSwap(cur, int32(size)) {
			break
		}
	}
	nb.mu.Lock()
	nb.probes = probeRounds
	nb.mu.Unlock()
	nb.n.router.mtuChanged(nb)
}

// lowerMTU is called when a frame of size failed to send locally (EMSGSIZE).
func (nb *neighbour) lowerMTU(size int) {
	if size > baseMTU && nb.mtu.Load() >= int32(size) {
		nb.mtu.Store(baseMTU)
		nb.mu.Lock()
		nb.probes = 0
		nb.mu.Unlock()
		nb.n.router.mtuChanged(nb)
	}
}

// maintain sends hellos and probes and expires silent neighbours.
func (n *Node) maintain() {
	defer n.wg.Done()
	n.helloRound()
	t := time.NewTicker(n.cfg.HelloInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.cookies.maybeRotate(time.Now())
			n.expire()
			n.helloRound()
			n.router.tick()
		}
	}
}

// helloRound sends a hello to every broadcast address, every neighbour
// and every configured peer that is not one, and retries MTU probes that
// got no answer. A peer not yet a neighbour answers with a COOKIE, and
// handleCookie sends the hello that admits us.
func (n *Node) helloRound() {
	sent := map[string]bool{}
	for _, a := range n.cfg.Broadcast {
		if !sent[a.String()] {
			sent[a.String()] = true
			n.sendHello(a, nil, wire.FlagBroadcast, wire.Cookie{})
		}
	}
	for _, nb := range n.neighbours() {
		nb.mu.Lock()
		a, echo := nb.addr, nb.peerCookie
		nb.mu.Unlock()
		if !sent[a.String()] {
			sent[a.String()] = true
			n.sendHello(a, nb, 0, echo)
		}
		n.probe(nb)
	}
	for _, a := range n.cfg.Peers {
		if !sent[a.String()] {
			sent[a.String()] = true
			n.sendHello(a, nil, 0, wire.Cookie{})
		}
	}
}

// expire drops neighbours not heard from within NeighbourTimeout.
func (n *Node) expire() {
	limit := time.Now().Add(-n.cfg.NeighbourTimeout).UnixNano()
	var gone []*neighbour
	n.mu.Lock()
	for _, nb := range n.bySID {
		if nb.lastHeard.Load() < limit {
			n.dropLocked(nb)
			gone = append(gone, nb)
		}
	}
	if len(gone) > 0 {
		n.notifyChangedLocked()
	}
	n.mu.Unlock()
	for _, nb := range gone {
		n.log.Info("neighbour down", "sid", nb.sid.Short(), "silent", n.cfg.NeighbourTimeout)
		nb.link.stop()
	}
}

// dropLocked forgets neighbour nb and the routes through it; the caller
// stops its link once n.mu is released. Called with n.mu held.
func (n *Node) dropLocked(nb *neighbour) {
	delete(n.bySID, nb.sid)
	if n.byAddr[nb.address().String()] == nb {
		delete(n.byAddr, nb.address().String())
	}
	if k := nb.keys.Load(); k != nil && n.byKeyID[k.rxID] == nb {
		delete(n.byKeyID, k.rxID)
	}
	n.router.neighbourDownUnderNodeMu(nb)
}

func (n *Node) neighbours() []*neighbour {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*neighbour, 0, len(n.bySID))
	for _, nb := range n.bySID {
		out = append(out, nb)
	}
	return out
}

// Neighbour describes a directly heard node.
type Neighbour struct {
	SID       identity.SID
	Addr      net.Addr
	MTU       int           // largest frame known to pass the link, less the authentication trailer
	SRTT      time.Duration // smoothed per-hop round trip
	Loss      float64       // fraction of frames sent that needed resending, recent (loss out)
	LossIn    float64       // fraction of the neighbour's DATA frames missing at their first sending (gaps in sequence numbers), recent
	Delivery  float64       // fraction of hellos that get through, both ways multiplied
	Cost      int           // routing cost of the link: 256 when clean
	LastHeard time.Time
	Up        time.Time

	// Link traffic since the neighbour came up: authenticated frames
	// (DATA, ACK, SKIP, PROBE, PROBEACK; not hellos) and their bytes as
	// datagrams, authentication trailer included.
	BytesIn, BytesOut   uint64
	FramesIn, FramesOut uint64
}

// Neighbours lists the directly heard nodes, by SID.
func (n *Node) Neighbours() []Neighbour {
	var out []Neighbour
	for _, nb := range n.neighbours() {
		srtt, loss, lossIn := nb.link.quality()
		delivery, cost := n.router.linkInfo(nb)
		nb.mu.Lock()
		out = append(out, Neighbour{
			SID: nb.sid, Addr: nb.addr, MTU: int(nb.mtu.Load()), SRTT: srtt, Loss: loss, LossIn: lossIn,
			Delivery: delivery, Cost: cost,
			LastHeard: time.Unix(0, nb.lastHeard.Load()), Up: nb.since,
			BytesIn: nb.bytesIn.Load(), BytesOut: nb.bytesOut.Load(),
			FramesIn: nb.framesIn.Load(), FramesOut: nb.framesOut.Load(),
		})
		nb.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].SID.String() < out[j].SID.String() })
	return out
}
