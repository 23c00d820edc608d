package splitter

// A Conn is one session: the application's byte stream in both directions,
// carried by a pool of lanes (TCP connections).
//
//	Write -> open block -> seal (RS encode) -> tx ring -> lane writers -> TCP
//	TCP -> lane readers -> rx ring (RS reconstruct) -> Read
//
// Lock order: writeMu before mu; readMu before rmu; mu and rmu are never
// held together.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/servald/servald/splitter/internal/wire"
)

// Stats are a session's counters. Counts of shards and blocks refer to the
// Reed-Solomon units described in the package documentation.
type Stats struct {
	BytesSent         uint64 // stream bytes accepted by Write and sealed into blocks
	BytesReceived     uint64 // stream bytes returned by Read
	WireBytesSent     uint64 // bytes written to the TCP connections (headers, parity, control)
	WireBytesReceived uint64 // bytes read from the TCP connections
	BlocksSent        uint64 // blocks sealed
	BlocksReceived    uint64 // blocks completed at the receiver
	BlocksRebuilt     uint64 // blocks completed by Reed-Solomon reconstruction (a data shard was lost or later than D others)
	BlocksRerequested uint64 // blocks this end asked to be sent again (NACK), counted once per NACK
	ShardsSent        uint64 // shards written, re-sent ones included
	ShardsReceived    uint64 // shards read and kept
	ShardsResent      uint64 // shards sent again (the peer asked, or parity could not cover a lost connection)
	ShardsLost        uint64 // shards written to a connection that died before they were acknowledged
	ShardsDiscarded   uint64 // shards read but not needed (duplicates, block already complete)
	Probes            uint64 // TAIL probes sent because acks stopped
	ConnsOpened       uint64 // connections that joined the session
	ConnsReopened     uint64 // connections that replaced lost ones
	ConnsLost         uint64 // connections closed by error, reset or stall
	ConnsStalled      uint64 // connections closed because they stopped making progress
	ConnsLive         int    // connections open now
	DialFailures      uint64 // failed connection attempts (client)
}

// Add returns the sum of two sets of counters (for totals over sessions).
func (a Stats) Add(b Stats) Stats {
	return Stats{
		BytesSent:         a.BytesSent + b.BytesSent,
		BytesReceived:     a.BytesReceived + b.BytesReceived,
		WireBytesSent:     a.WireBytesSent + b.WireBytesSent,
		WireBytesReceived: a.WireBytesReceived + b.WireBytesReceived,
		BlocksSent:        a.BlocksSent + b.BlocksSent,
		BlocksReceived:    a.BlocksReceived + b.BlocksReceived,
		BlocksRebuilt:     a.BlocksRebuilt + b.BlocksRebuilt,
		BlocksRerequested: a.BlocksRerequested + b.BlocksRerequested,
		ShardsSent:        a.ShardsSent + b.ShardsSent,
		ShardsReceived:    a.ShardsReceived + b.ShardsReceived,
		ShardsResent:      a.ShardsResent + b.ShardsResent,
		ShardsLost:        a.ShardsLost + b.ShardsLost,
		ShardsDiscarded:   a.ShardsDiscarded + b.ShardsDiscarded,
		Probes:            a.Probes + b.Probes,
		ConnsOpened:       a.ConnsOpened + b.ConnsOpened,
		ConnsReopened:     a.ConnsReopened + b.ConnsReopened,
		ConnsLost:         a.ConnsLost + b.ConnsLost,
		ConnsStalled:      a.ConnsStalled + b.ConnsStalled,
		ConnsLive:         a.ConnsLive + b.ConnsLive,
		DialFailures:      a.DialFailures + b.DialFailures,
	}
}

type counters struct {
	bytesSent, bytesReceived         atomic.Uint64
	wireSent, wireReceived           atomic.Uint64
	blocksSent, blocksReceived       atomic.Uint64
	blocksRebuilt, blocksRerequested atomic.Uint64
	shardsSent, shardsReceived       atomic.Uint64
	shardsResent, shardsDiscarded    atomic.Uint64
	shardsLost                       atomic.Uint64
	lossRequeued                     atomic.Uint64 // shards queued again because parity could not cover a lost lane
	probes                           atomic.Uint64
	connsOpened, connsReopened       atomic.Uint64
	connsLost, connsStalled          atomic.Uint64
	dialFailures                     atomic.Uint64
}

const (
	ctlAck  = 1 << iota // an ACK should be sent
	ctlNack             // s.nackOut holds entries to send
	ctlTail             // a TAIL should be sent
)

// Conn is one end of a splitter session. It implements net.Conn; CloseWrite
// ends this direction of the stream (the peer reads io.EOF) while the other
// keeps flowing. All methods are safe for concurrent use.
type Conn struct {
	cfg      Config
	log      *slog.Logger
	client   bool
	addr     string // client: address dialled for every lane
	id       uint64
	token    [16]byte
	d, p     int // shards of a full block: d >= 1 (FEC off is 1:0)
	shards   int // d + p, the most any block has
	ps       int // largest shard payload
	blockMax int // d * ps
	wnd      int // local window in blocks (rx ring and tx ring size)
	rwnd     int // blocks the peer may send beyond those read (<= wnd; 1 while gated); guarded by rmu
	maxLanes int // cap on lanes open at once
	encMu    sync.Mutex
	encs     []reedsolomon.Encoder // by data shards (see geometry), made when first needed
	tick     time.Duration
	laneAck  uint64 // receiver acks a lane after this many unacknowledged bytes
	maxData  int    // largest DATA frame body

	local, remote net.Addr
	onTeardown    func(*Conn)

	ctx     context.Context // cancelled at teardown: stops dials
	cancel  context.CancelFunc
	done    chan struct{} // closed at teardown
	deadErr error         // why the session ended; written before done is closed
	wg      sync.WaitGroup

	closeFlag               atomic.Bool // Close called
	readDL, writeDL         atomic.Int64
	readWake, writeWake     chan struct{}
	lingerWake, managerWake chan struct{}
	ctlWant                 atomic.Uint32
	st                      counters
	readMu                  sync.Mutex
	readTimer, writeTimer   *time.Timer
	shardScratch            [][]byte // writeMu: shard slices for Encode

	writeMu sync.Mutex // serialises Write, CloseWrite and sealing
	open    []byte     // writeMu: block being filled, nil if none
	openN   int        // writeMu: bytes in open
	finReq  bool       // writeMu: CloseWrite called

	mu sync.Mutex
	sendState
	poolState

	rmu sync.Mutex
	recvState
}

// sendState is guarded by Conn.mu.
type sendState struct {
	dead           bool // teardown started
	writeShut      bool // CloseWrite called
	lanes          []*lane
	slots          [4 * MaxConnsPerSession]bool
	hungry         int    // lane writers waiting with room and nothing they may take
	laneSeq        uint64 // ids of lanes, from 1
	lastLaneAck    time.Time
	next           uint64 // next block number to seal
	cum            uint64 // peer has every block below cum
	limit          uint64 // peer accepts blocks below limit
	txOffset       uint64 // stream offset of block next
	tx             []*txBlock
	txFree         []*txBlock // recycled block records
	txBufs         [][]byte   // recycled block buffers
	sendHead       uint64     // blocks below sendHead have every shard handed out
	retx           []txItem   // shards asked for again, FIFO from retxHead
	retxHead       int
	partialPending bool // open block has data waiting for an idle lane
	writeBlocked   bool // Write waits for the peer's window
	finSet         bool
	finBlock       uint64
	finOffset      uint64
	finAcked       bool
	lastProgress   time.Time // cum or limit last advanced (or waiting began)
	lastProbe      time.Time
	probing        bool // the next TAIL is a probe
}

// poolState is guarded by Conn.mu.
type poolState struct {
	dialing     int
	dialFails   int
	nextDial    time.Time
	dialTokens  float64
	lastRefill  time.Time
	noLaneSince time.Time
	lastDialErr error
}

func newConn(cfg Config, client bool, id uint64, token [16]byte, peerWindow uint32) *Conn {
	d, p := cfg.DataShards, cfg.ParityShards
	if d == 0 {
		d = 1
	}
	s := &Conn{
		cfg:         cfg,
		client:      client,
		id:          id,
		token:       token,
		d:           d,
		p:           p,
		shards:      d + p,
		ps:          cfg.PayloadSize,
		blockMax:    d * cfg.PayloadSize,
		wnd:         cfg.windowBlocks(),
		maxLanes:    cfg.maxConns(),
		laneAck:     uint64(cfg.ConnWindow / 4),
		maxData:     wire.DataHeaderLen + cfg.PayloadSize,
		done:        make(chan struct{}),
		readWake:    make(chan struct{}, 1),
		writeWake:   make(chan struct{}, 1),
		lingerWake:  make(chan struct{}, 1),
		managerWake: make(chan struct{}, 1),
	}
	s.tick = min(max(cfg.MaxHold/4, 5*time.Millisecond), 100*time.Millisecond)
	s.tick = min(s.tick, cfg.KeepAlive)
	role := "server"
	if client {
		role = "client"
	} else {
		s.maxLanes = cfg.listenerMaxConns()
	}
	s.log = cfg.logger().With("session", id, "role", role)
	s.encs = make([]reedsolomon.Encoder, d+1)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.tx = make([]*txBlock, s.wnd)
	s.limit = uint64(max(peerWindow, 1))
	s.rwnd = s.wnd
	if cfg.GatedWindow && !client {
		s.rwnd = 1
	}
	s.rx = make([]rxBlock, s.wnd)
	for i := range s.rx {
		s.rx[i].block = noBlock
	}
	s.dialTokens = float64(cfg.Conns)
	now := time.Now()
	s.lastRefill, s.lastProgress, s.noLaneSince, s.lastLaneAck = now, now, now, now
	s.readTimer = stoppedTimer()
	s.writeTimer = stoppedTimer()
	s.shardScratch = make([][]byte, s.shards)
	s.nackOut = make([]wire.NackEntry, 0, wire.MaxNackEntries)
	s.nackBits = make([]byte, wire.MaxNackEntries*wire.BitmapLen(s.shards))
	return s
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// start launches the session's manager goroutine.
func (s *Conn) start() {
	s.wg.Add(1)
	go s.manage()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Read reads stream bytes in order. It returns io.EOF after the peer's
// CloseWrite or Close once every byte has been read.
func (s *Conn) Read(p []byte) (int, error) {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	for {
		if s.closeFlag.Load() {
			return 0, errClosed
		}
		s.rmu.Lock()
		n, err, ack := s.readLocked(p)
		s.rmu.Unlock()
		if ack {
			s.want(ctlAck)
		}
		if n > 0 || err != nil || len(p) == 0 {
			if n > 0 {
				s.st.bytesReceived.Add(uint64(n))
			}
			return n, err
		}
		if err := s.wait(s.readWake, s.readTimer, &s.readDL, "read"); err != nil {
			return 0, err
		}
	}
}

// wait blocks until wake is signalled, the session ends or the deadline in dl passes.
func (s *Conn) wait(wake chan struct{}, t *time.Timer, dl *atomic.Int64, op string) error {
	var tc <-chan time.Time
	if d := dl.Load(); d != 0 {
		left := time.Until(time.Unix(0, d))
		if left <= 0 {
			return timeoutError(op, s.remote)
		}
		t.Reset(left)
		defer t.Stop()
		tc = t.C
	}
	select {
	case <-wake:
	case <-s.done:
	case <-tc:
	}
	return nil
}

// Write writes stream bytes. It blocks while the peer's reorder window is
// full. Bytes counted in n are delivered unless the session fails.
func (s *Conn) Write(p []byte) (int, error) {
	s.writeMu.Lock()
	n, err := s.writeLocked(p)
	partial := s.openN > 0
	s.writeMu.Unlock()
	if partial {
		s.maybeSealPartial()
	}
	if n > 0 {
		s.st.bytesSent.Add(uint64(n))
	}
	return n, err
}

func (s *Conn) writeLocked(p []byte) (int, error) {
	if err := s.writeErr(); err != nil {
		return 0, err
	}
	n := 0
	for {
		if s.openN == s.blockMax {
			if err := s.sealWait(); err != nil {
				return n, err
			}
		}
		if len(p) == 0 {
			break
		}
		if s.open == nil {
			s.open = s.getTxBuf()
		}
		c := copy(s.open[s.openN:s.blockMax], p)
		s.openN += c
		n += c
		p = p[c:]
	}
	if s.openN > 0 {
		s.mu.Lock()
		s.partialPending = true
		s.mu.Unlock()
	}
	return n, nil
}

// writeErr reports why Write cannot proceed, if it cannot.
func (s *Conn) writeErr() error {
	if s.closeFlag.Load() {
		return errClosed
	}
	select {
	case <-s.done:
		return s.deadErr
	default:
	}
	if s.finReq {
		return ErrWriteClosed
	}
	if d := s.writeDL.Load(); d != 0 && time.Now().UnixNano() >= d {
		return timeoutError("write", s.remote)
	}
	return nil
}

// CloseWrite ends this direction of the stream: bytes already written are
// delivered, then the peer's Read returns io.EOF. Reading goes on.
func (s *Conn) CloseWrite() error {
	if s.closeFlag.Load() {
		return errClosed
	}
	s.closeWrite()
	select {
	case <-s.done:
		return s.deadErr
	default:
	}
	return nil
}

func (s *Conn) closeWrite() {
	s.writeMu.Lock()
	s.finReq = true
	s.sealPartialLocked()
	s.writeMu.Unlock()
	s.maybeSealPartial()
}

// Close closes the session. It first waits, up to Config.Linger, for the
// peer to acknowledge what was written, then tells the peer (whose Read
// then returns io.EOF after the data) and closes every connection. Blocked
// Read and Write calls return at once. Later calls return net.ErrClosed.
func (s *Conn) Close() error {
	if !s.closeFlag.CompareAndSwap(false, true) {
		return errClosed
	}
	signal(s.readWake)
	signal(s.writeWake)
	if s.cfg.Linger > 0 && s.alive() {
		s.closeWrite()
		t := time.NewTimer(s.cfg.Linger)
	wait:
		for !s.flushed() {
			select {
			case <-s.lingerWake:
			case <-s.done:
				break wait
			case <-t.C:
				s.log.Debug("splitter: close: linger expired with data unacknowledged")
				break wait
			}
		}
		t.Stop()
	}
	s.teardown(errClosed, wire.CloseNormal, "closed")
	s.wg.Wait()
	return nil
}

// Reset ends the session at once, without the end of stream: what is not
// yet acknowledged is dropped, and the peer's Read returns the data it
// holds and then ErrPeerClosed, never io.EOF, so a stream cut short is
// not mistaken for a complete one (Close, by contrast, ends the stream
// first). Blocked Read and Write calls return at once. Later calls of
// Reset or Close return net.ErrClosed.
func (s *Conn) Reset() error {
	if !s.closeFlag.CompareAndSwap(false, true) {
		return errClosed
	}
	s.teardown(errClosed, wire.CloseError, "reset")
	s.wg.Wait()
	return nil
}

func (s *Conn) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// flushed reports whether everything written has been acknowledged by
// the peer and the end of stream is fixed (the CLOSE frame carries it).
func (s *Conn) flushed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.partialPending && s.cum == s.next && s.finSet
}

// LocalAddr returns the local address of the session's first connection.
func (s *Conn) LocalAddr() net.Addr { return s.local }

// RemoteAddr returns the remote address of the session's first connection.
func (s *Conn) RemoteAddr() net.Addr { return s.remote }

// SetDeadline sets the read and write deadlines.
func (s *Conn) SetDeadline(t time.Time) error {
	s.SetReadDeadline(t)
	return s.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline for Read calls, pending ones included.
func (s *Conn) SetReadDeadline(t time.Time) error {
	s.readDL.Store(deadlineNanos(t))
	signal(s.readWake)
	return nil
}

// SetWriteDeadline sets the deadline for Write calls, pending ones included.
func (s *Conn) SetWriteDeadline(t time.Time) error {
	s.writeDL.Store(deadlineNanos(t))
	signal(s.writeWake)
	return nil
}

func deadlineNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// SessionID returns the session's identifier (chosen by the listener).
func (s *Conn) SessionID() uint64 { return s.id }

// Err returns why the session ended, or nil while it runs.
func (s *Conn) Err() error {
	select {
	case <-s.done:
		return s.deadErr
	default:
		return nil
	}
}

// Done returns a channel closed when the session has ended (Close, peer
// close, timeout or protocol error).
func (s *Conn) Done() <-chan struct{} { return s.done }

// Stats returns a snapshot of the session's counters.
func (s *Conn) Stats() Stats {
	s.mu.Lock()
	live := len(s.lanes)
	s.mu.Unlock()
	c := &s.st
	return Stats{
		BytesSent:         c.bytesSent.Load(),
		BytesReceived:     c.bytesReceived.Load(),
		WireBytesSent:     c.wireSent.Load(),
		WireBytesReceived: c.wireReceived.Load(),
		BlocksSent:        c.blocksSent.Load(),
		BlocksReceived:    c.blocksReceived.Load(),
		BlocksRebuilt:     c.blocksRebuilt.Load(),
		BlocksRerequested: c.blocksRerequested.Load(),
		ShardsSent:        c.shardsSent.Load(),
		ShardsReceived:    c.shardsReceived.Load(),
		ShardsResent:      c.shardsResent.Load(),
		ShardsLost:        c.shardsLost.Load(),
		ShardsDiscarded:   c.shardsDiscarded.Load(),
		Probes:            c.probes.Load(),
		ConnsOpened:       c.connsOpened.Load(),
		ConnsReopened:     c.connsReopened.Load(),
		ConnsLost:         c.connsLost.Load(),
		ConnsStalled:      c.connsStalled.Load(),
		ConnsLive:         live,
		DialFailures:      c.dialFailures.Load(),
	}
}

// want asks a lane writer to send a session control frame.
func (s *Conn) want(bits uint32) {
	s.ctlWant.Or(bits)
	s.mu.Lock()
	s.kickLocked()
	s.mu.Unlock()
}

// kickLocked wakes the lane writers that wait for work.
func (s *Conn) kickLocked() {
	for _, l := range s.lanes {
		if l.waiting {
			signal(l.wake)
		}
	}
}

// fail ends the session with err and tells the peer.
func (s *Conn) fail(err error) {
	s.log.Warn("splitter: session failed", "err", err)
	s.teardown(err, wire.CloseError, err.Error())
}

// teardown ends the session: code >= 0 sends a CLOSE frame with it on
// every lane before closing them. Safe to call more than once and from any
// goroutine; it does not wait for the session's goroutines.
func (s *Conn) teardown(err error, code int, reason string) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return
	}
	s.dead = true
	s.deadErr = err
	dl := time.Now().Add(closeWriteTimeout)
	cf := wire.CloseFrame{Code: uint8(max(code, 0)), Reason: reason}
	if code == wire.CloseNormal && s.finSet {
		cf.Next, cf.EndOffset = s.finBlock, s.finOffset
	} else if code == wire.CloseNormal {
		cf.Code = wire.CloseError // the stream was not ended: the peer must not read EOF
	}
	for _, l := range s.lanes {
		l.sendClose = code >= 0
		l.closeFrame = cf
		l.conn.SetWriteDeadline(dl)
	}
	s.mu.Unlock()
	s.cancel()
	close(s.done)
	s.mu.Lock()
	for _, l := range s.lanes {
		signal(l.wake)
	}
	s.mu.Unlock()
	signal(s.readWake)
	signal(s.writeWake)
	signal(s.lingerWake)
	if s.onTeardown != nil {
		s.onTeardown(s)
	}
}

// closeWriteTimeout bounds the CLOSE frame write at teardown.
const closeWriteTimeout = 250 * time.Millisecond

var _ net.Conn = (*Conn)(nil)
var _ io.ReadWriteCloser = (*Conn)(nil)

// recvWindow is the receive window the peer is told, in blocks.
func (s *Conn) recvWindow() int {
	s.rmu.Lock()
	defer s.rmu.Unlock()
	return s.rwnd
}

// OpenWindow lifts a listener session's receive window from one block to
// the whole reorder window (Config.GatedWindow): the protocol above calls
// it once it has authenticated the peer. It does nothing otherwise.
func (s *Conn) OpenWindow() {
	s.rmu.Lock()
	opened := s.rwnd != s.wnd
	s.rwnd = s.wnd
	s.rmu.Unlock()
	if opened {
		s.want(ctlAck)
	}
}
