package mesh

// The node and its read loop.
//
// Packet path: the read loop takes each datagram off the socket and
// dispatches it by frame type: HELLO and COOKIE to admission (admission.go;
// a verified hello adds or refreshes a neighbour), a plain PROBE is
// answered, and every other frame must be authenticated (linkauth.go:
// MAC and replay check under the neighbour's link key, which also names
// the neighbour) before it goes on by its type: DATA to the
// sending neighbour's link (link_recv.go: it drops duplicates and hands the
// frame on as it arrives, not held back behind a lost one, to deliver in
// relay.go: a local port or the next hop's link), ACK and SKIP to that
// link, PROBE/PROBEACK to MTU discovery; routing messages travel in DATA
// frames to RoutingPort and reach the router through the link.

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/ratelimit"
	"github.com/servald/servald/mesh/internal/wire"
)

// Config configures a Node. Zero fields take the defaults of DefaultConfig.
type Config struct {
	// Identity is the node's key pair (required).
	Identity *identity.Identity
	// Conn is the node's datagram socket (required): a UDP socket from
	// ListenUDP, or a memnet endpoint in tests. The node closes it.
	Conn net.PacketConn
	// Peers are addresses that are sent hellos whether or not anything was
	// heard from them.
	Peers []net.Addr
	// Broadcast are LAN broadcast addresses that are sent hellos. Empty
	// means no broadcast: a node never announces itself by surprise.
	Broadcast []net.Addr
	// HelloInterval is the time between hellos. Default 1 s.
	HelloInterval time.Duration
	// NeighbourTimeout drops a neighbour heard nothing from for this long.
	// Default 5 s.
	NeighbourTimeout time.Duration
	// LinkWindow bounds the frames in flight to one neighbour (sent, not
	// yet acknowledged), rounded up to a multiple of 64; their sequence
	// numbers may span 4 times as many (see spanFactor). Default 4096.
	LinkWindow int
	// LinkQueue bounds the frames queued for one neighbour beyond the
	// window. Default 512.
	LinkQueue int
	// MaxAttempts is how often a frame is sent to a neighbour before it is
	// given up. Default 12.
	MaxAttempts int
	// MinRTO is the least per-hop retransmission timeout. Default 15 ms:
	// losses are mostly found sooner, by later frames arriving first.
	MinRTO time.Duration
	// PortQueue bounds the datagrams waiting on one bound port. Default 2048.
	PortQueue int
	// Trust, when not empty, closes the mesh: only these SIDs are admitted
	// as neighbours (configured peers too); others get nothing but the
	// cookie challenge. Nodes further away are still reached through
	// trusted neighbours.
	Trust []identity.SID
	// MaxNeighbours bounds the neighbours; a configured peer is admitted
	// beyond it. Default 64.
	MaxNeighbours int
	// MaxRoutes bounds the routes (origins) known. Default 2048.
	MaxRoutes int
	// MaxRoutesPerNeighbour bounds the entries kept from one neighbour.
	// Default 1024.
	MaxRoutesPerNeighbour int
	// NewOriginRate bounds the origins one neighbour may introduce per
	// second, after a burst of 1024. Default 64.
	NewOriginRate int
	// VerifyRate bounds the signatures checked per second for one
	// neighbour, after a burst of 2048. Default 256.
	VerifyRate int
	// VerifyQueue bounds the hellos and routing messages waiting for the
	// verifier. Default 1024.
	VerifyQueue int
	// Logger receives the node's logs; nil is silent.
	Logger *slog.Logger
}

// DefaultConfig returns the default settings (without Identity and Conn).
func DefaultConfig() Config {
	return Config{
		HelloInterval:    time.Second,
		NeighbourTimeout: 5 * time.Second,
		LinkWindow:       4096,
		LinkQueue:        512,
		MaxAttempts:      12,
		MinRTO:           15 * time.Millisecond,
		PortQueue:        2048,

		MaxNeighbours:         64,
		MaxRoutes:             2048,
		MaxRoutesPerNeighbour: 1024,
		NewOriginRate:         64,
		VerifyRate:            256,
		VerifyQueue:           1024,
	}
}

func (c *Config) fill() {
	d := DefaultConfig()
	if c.HelloInterval <= 0 {
		c.HelloInterval = d.HelloInterval
	}
	if c.NeighbourTimeout <= 0 {
		c.NeighbourTimeout = d.NeighbourTimeout
	}
	if c.LinkWindow <= 0 {
		c.LinkWindow = d.LinkWindow
	}
	if c.LinkQueue <= 0 {
		c.LinkQueue = d.LinkQueue
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = d.MaxAttempts
	}
	if c.MinRTO <= 0 {
		c.MinRTO = d.MinRTO
	}
	if c.PortQueue <= 0 {
		c.PortQueue = d.PortQueue
	}
	if c.MaxNeighbours <= 0 {
		c.MaxNeighbours = d.MaxNeighbours
	}
	if c.MaxRoutes <= 0 {
		c.MaxRoutes = d.MaxRoutes
	}
	if c.MaxRoutesPerNeighbour <= 0 {
		c.MaxRoutesPerNeighbour = d.MaxRoutesPerNeighbour
	}
	if c.NewOriginRate <= 0 {
		c.NewOriginRate = d.NewOriginRate
	}
	if c.VerifyRate <= 0 {
		c.VerifyRate = d.VerifyRate
	}
	if c.VerifyQueue <= 0 {
		c.VerifyQueue = d.VerifyQueue
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.Identity == nil:
		return errors.New("mesh: config has no identity")
	case c.Conn == nil:
		return errors.New("mesh: config has no socket")
	case c.NeighbourTimeout > 0 && c.HelloInterval > 0 && c.NeighbourTimeout < 2*c.HelloInterval:
		return errors.New("mesh: neighbour timeout must be at least two hello intervals")
	}
	return nil
}

// Errors callers branch on.
var (
	// ErrNoRoute means no path to the SID is known. It has a NoRoute
	// method that returns true (see pathError).
	ErrNoRoute error = &pathError{msg: "no route to node", noRoute: true}
	// ErrTooLarge means a datagram does not fit the path's MTU. It has a
	// TooLarge method that returns true (see pathError).
	ErrTooLarge error = &pathError{msg: "datagram too large for the path"}
	// ErrPortInUse means the MDP port is already bound.
	ErrPortInUse = errors.New("MDP port in use")
)

// Node is a running mesh node. Its methods are safe for concurrent use.
type Node struct {
	cfg   Config
	id    *identity.Identity
	sid   identity.SID
	conn  net.PacketConn
	log   *slog.Logger
	epoch uint32
	bufs  *bufPool
	start time.Time

	batch       batchConn   // nil: one datagram per system call (udp_batch.go)
	sendBatches *sync.Pool  // of *sendBatch
	ackDue      []*link     // links to acknowledge after the read batch; read loop only
	flushDue    []*link     // links to flush after the read batch; read loop only
	gsoOff      atomic.Bool // the socket refused a GSO message: no more

	helloSeq atomic.Uint64
	stats    counters

	cookies      *cookieJar
	verifier     *verifier
	badSigs      *badSigCache
	admitBucket  *ratelimit.Bucket     // hello checks for non-neighbours
	peerBucket   *ratelimit.Bucket     // the same, apart, for configured peers
	cookieBucket *ratelimit.Bucket     // hellos sent in answer to COOKIEs
	trust        map[identity.SID]bool // nil: open mesh
	peerAddrs    map[string]bool       // configured peers, by address

	mu         sync.RWMutex
	bySID      map[identity.SID]*neighbour // guarded by mu
	byAddr     map[string]*neighbour       // guarded by mu
	byKeyID    map[uint32]*neighbour       // by the key id of the frames it sends; guarded by mu
	ports      map[uint16]*PacketConn      // guarded by mu
	unbound    *PacketConn                 // guarded by mu; gets datagrams for unbound ports (SetUnbound)
	nextPort   uint16                      // guarded by mu
	changed    chan struct{}               // closed and replaced when neighbours or routes change; guarded by mu
	router     *router
	routerKick chan struct{}

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// New starts a node on cfg.Conn. Close stops it.
func New(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.fill()
	var eb [4]byte
	if _, err := rand.Read(eb[:]); err != nil {
		return nil, fmt.Errorf("mesh: epoch: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		id:       cfg.Identity,
		sid:      cfg.Identity.SID(),
		conn:     cfg.Conn,
		epoch:    binary.BigEndian.Uint32(eb[:]) | 1,
		bufs:     newBufPool(),
		batch:    newBatchConn(cfg.Conn),
		start:    time.Now(),
		bySID:    map[identity.SID]*neighbour{},
		byAddr:   map[string]*neighbour{},
		byKeyID:  map[uint32]*neighbour{},
		ports:    map[uint16]*PacketConn{},
		nextPort: firstEphemeralPort,
		changed:  make(chan struct{}),

		cookies:      newCookieJar(),
		verifier:     newVerifier(cfg.VerifyQueue),
		badSigs:      newBadSigCache(),
		admitBucket:  newBucket(admitRate, admitBurst),
		peerBucket:   newBucket(admitRate, admitBurst),
		cookieBucket: newBucket(cookieAnswerRate, cookieAnswerBurst),
		trust:        trustSet(cfg.Trust),
		sendBatches:  newSendBatchPool(),
		peerAddrs:    map[string]bool{},
	}
	for _, a := range cfg.Peers {
		n.peerAddrs[a.String()] = true
	}
	n.log = cfg.Logger.With("node", n.sid.Short())
	// Hello sequence numbers continue across restarts because they start
	// from the clock: a replayed old hello is always older.
	n.helloSeq.Store(uint64(time.Now().UnixNano()))
	n.router = newRouter(n)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.routerKick = make(chan struct{}, 1)
	n.wg.Add(4)
	go func() { defer n.wg.Done(); n.verifier.run(n.ctx) }()
	go n.readLoop()
	go n.maintain()
	go n.routeLoop()
	n.log.Debug("mesh node started", "addr", n.conn.LocalAddr())
	return n, nil
}

// SID returns the node's address.
func (n *Node) SID() identity.SID { return n.sid }

// Identity returns the node's key pair.
func (n *Node) Identity() *identity.Identity { return n.id }

// LocalAddr returns the address of the node's socket.
func (n *Node) LocalAddr() net.Addr { return n.conn.LocalAddr() }

// Close stops the node: every goroutine ends, every bound port and the socket
// close. It is idempotent.
func (n *Node) Close() error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	n.cancel()
	err := n.conn.Close()
	n.mu.Lock()
	nbs := make([]*neighbour, 0, len(n.bySID))
	for _, nb := range n.bySID {
		nbs = append(nbs, nb)
	}
	ports := make([]*PacketConn, 0, len(n.ports))
	for _, p := range n.ports {
		ports = append(ports, p)
	}
	n.mu.Unlock()
	for _, nb := range nbs {
		nb.link.stop()
	}
	for _, p := range ports {
		p.Close()
	}
	n.wg.Wait()
	return err
}

// notifyChanged wakes everyone waiting for a neighbour or route change.
// Called with n.mu held for writing.
func (n *Node) notifyChangedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// readLoop reads datagrams until the socket closes.
func (n *Node) readLoop() {
	defer n.wg.Done()
	if n.batch != nil {
		n.readBatches(n.batch, n.handle)
		return
	}
	for {
		bp := n.bufs.get(maxDatagram)
		k, from, err := n.conn.ReadFrom(*bp)
		if err != nil {
			n.bufs.put(bp)
			if n.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.Debug("mesh: read", "err", err)
			n.stats.readErrors.Add(1)
			continue
		}
		*bp = (*bp)[:k]
		n.handle(bp, from)
	}
}

// handle dispatches one datagram. It takes ownership of bp.
func (n *Node) handle(bp *[]byte, from net.Addr) {
	b := *bp
	n.stats.framesIn.Add(1)
	typ, err := wire.Type(b)
	if err != nil {
		n.stats.malformed.Add(1)
		n.bufs.put(bp)
		return
	}
	if typ&wire.FlagAuth != 0 {
		size := len(b)
		if nb := n.authenticate(bp, from); nb != nil {
			n.handleLink(nb, bp, typ&^wire.FlagAuth, size)
			return // handleLink owns bp
		}
		n.bufs.put(bp)
		return
	}
	switch typ {
	case wire.TypeHello:
		n.handleHello(b, from)
	case wire.TypeCookie:
		n.handleCookie(b, from)
	case wire.TypeProbe:
		id, size, err := wire.ParseProbe(b)
		if err != nil {
			n.stats.malformed.Add(1)
			break
		}
		// A plain probe (a path test, no neighbour's) is answered for
		// anyone, plainly: the answer is smaller than the probe, and no
		// node takes a plain PROBEACK for a link's MTU.
		n.send(wire.AppendProbeAck(nil, id, size), from)
	case wire.TypeData, wire.TypeDataBudget, wire.TypeAck, wire.TypeSkip, wire.TypeProbeAck:
		if n.neighbourAt(from) != nil {
			n.stats.unauthenticated.Add(1)
		} else {
			n.stats.unknownSource.Add(1)
		}
	default:
		n.stats.malformed.Add(1)
	}
	n.bufs.put(bp)
}

// handleLink dispatches an authenticated frame of nb (its trailer
// stripped) by its type; size is the datagram's length. It owns bp.
func (n *Node) handleLink(nb *neighbour, bp *[]byte, typ byte, size int) {
	b := *bp
	nb.heard()
	nb.framesIn.Add(1)
	nb.bytesIn.Add(uint64(size))
	switch typ {
	case wire.TypeData, wire.TypeDataBudget:
		nb.link.receiveData(bp)
		return // receiveData owns bp
	case wire.TypeAck:
		var a wire.Ack
		if err := wire.ParseAck(b, &a); err != nil {
			n.stats.malformed.Add(1)
			break
		}
		nb.link.receiveAck(&a)
	case wire.TypeSkip:
		epoch, base, err := wire.ParseSkip(b)
		if err != nil {
			n.stats.malformed.Add(1)
			break
		}
		nb.link.receiveSkip(epoch, base)
	case wire.TypeProbe:
		id, _, err := wire.ParseProbe(b)
		if err != nil {
			n.stats.malformed.Add(1)
			break
		}
		// The size answered is the whole datagram's, trailer included.
		n.sendLink(nb, wire.AppendProbeAck(make([]byte, 0, 10+wire.AuthLen), id, size), nb.address())
	case wire.TypeProbeAck:
		id, size, err := wire.ParseProbeAck(b)
		if err != nil {
			n.stats.malformed.Add(1)
			break
		}
		nb.probeAcked(id, size)
	default:
		n.stats.malformed.Add(1)
	}
	n.bufs.put(bp)
}

// send writes one frame to addr, counting errors.
func (n *Node) send(b []byte, to net.Addr) error {
	_, err := n.conn.WriteTo(b, to)
	if err != nil {
		n.stats.writeErrors.Add(1)
		return err
	}
	n.stats.framesOut.Add(1)
	return nil
}

// WaitReachable blocks until a route to sid is known or ctx ends. Without
// any neighbour the error says how to get one.
func (n *Node) WaitReachable(ctx context.Context, sid identity.SID) error {
	for {
		n.mu.RLock()
		ch := n.changed
		ok := sid == n.sid || n.bySID[sid] != nil || n.router.hasRoute(sid)
		n.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return n.noRouteError(sid)
		case <-n.ctx.Done():
			return net.ErrClosed
		}
	}
}

// noRouteError explains why sid cannot be reached.
func (n *Node) noRouteError(sid identity.SID) error {
	n.mu.RLock()
	nbs := len(n.bySID)
	n.mu.RUnlock()
	if nbs == 0 {
		return fmt.Errorf("mesh: %w %s: this node has no neighbours (add --peer HOST:PORT, or --broadcast on a LAN)", ErrNoRoute, sid)
	}
	return fmt.Errorf("mesh: %w %s (%d neighbours, none leads there)", ErrNoRoute, sid, nbs)
}

// Changed returns a channel closed at the next change of neighbours or routes.
func (n *Node) Changed() <-chan struct{} {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.changed
}

// notifyChanged wakes everyone waiting for a neighbour or route change.
func (n *Node) notifyChanged() {
	n.mu.Lock()
	n.notifyChangedLocked()
	n.mu.Unlock()
}

// kickRouter asks for a triggered routing update soon.
func (n *Node) kickRouter() {
	select {
	case n.routerKick <- struct{}{}:
	default:
	}
}

// routeLoop sends triggered routing updates, batching changes that come
// within a few milliseconds of each other.
func (n *Node) routeLoop() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.routerKick:
		}
		select {
		case <-n.ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
		n.router.flushTriggered()
	}
}

// sendLinkLocal sends payload to a neighbour's port as a one-hop DATA frame
// (routing messages), ahead of queued data (see link.enqueueControl); it is
// dropped, counted as a relay drop, and the error returned, only if many
// are waiting already (or the link is gone).
func (n *Node) sendLinkLocal(nb *neighbour, port uint16, payload []byte) error {
	bp := n.bufs.get(wire.DataHeaderLen + len(payload))
	h := wire.DataHeader{TTL: 1, Dst: nb.sid, Src: n.sid, DstPort: port, SrcPort: port}
	*bp = append(wire.AppendData((*bp)[:0], &h), payload...)
	n.stats.controlOut.Add(uint64(len(*bp)))
	err := nb.link.enqueueControl(bp)
	if err != nil {
		n.stats.relayDrops.Add(1)
		n.bufs.put(bp)
	}
	return err
}
