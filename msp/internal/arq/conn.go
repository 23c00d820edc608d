package arq

// The Conn and its application-facing side. Write copies bytes into the
// send ring and pokes the sender goroutine (sender.go); Read copies bytes out
// of the receive ring that Input (recv.go) fills. Everything mutable is
// guarded by Conn.mu, which no one holds while calling Output or blocking.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/servald/servald/internal/deadline"
)

// Bounds and defaults of Config.
const (
	MinPacket         = 256     // smallest MaxPacket
	MaxPacketLimit    = 1 << 20 // largest MaxPacket
	DefaultMaxPacket  = 1200
	DefaultRecvWindow = 8 << 20
	DefaultSendBuffer = 8 << 20
	// InitialWindow is the flow-control credit each side may use before the
	// peer's first MAX_DATA arrives; RecvWindow is never below it.
	InitialWindow      = 64 << 10
	MaxRecvWindow      = 1 << 30
	MaxSendBuffer      = 1 << 30
	DefaultKeepAlive   = time.Second
	DefaultIdleTimeout = 10 * time.Second
)

// ErrPeerClosed is the reason a Conn ended when the peer sent CLOSE after a
// Shutdown (everything it wrote was acknowledged). Read returns io.EOF after
// the data already delivered; Write returns this error.
var ErrPeerClosed = errors.New("arq: peer closed the connection")

// ErrPeerAborted is the reason a Conn ended when the peer sent CLOSE from
// Close (it stopped abruptly; data it had in flight may be lost). Read
// returns the data already delivered in order, then this error (not
// io.EOF); Write returns it.
var ErrPeerAborted = errors.New("arq: peer aborted the connection")

// ErrPeerGone is the reason a Conn ended when nothing arrived from the peer
// for Config.IdleTimeout. It is a net.Error whose Timeout() is true.
var ErrPeerGone error = peerGoneError{}

type peerGoneError struct{}

func (peerGoneError) Error() string   { return "arq: peer gone (idle timeout)" }
func (peerGoneError) Timeout() bool   { return true }
func (peerGoneError) Temporary() bool { return true }

// Config configures a Conn. Zero fields take their defaults.
type Config struct {
	// MaxPacket is the largest packet handed to Output, in bytes, in
	// [MinPacket, MaxPacketLimit]. Default DefaultMaxPacket.
	MaxPacket int
	// RecvWindow is the receive buffer in bytes: the flow-control credit
	// advertised to the peer. In [InitialWindow, MaxRecvWindow]. Default 8 MiB.
	RecvWindow int
	// SendBuffer bounds the bytes accepted by Write but not yet
	// acknowledged; Write blocks beyond it. In [1, MaxSendBuffer]. Default 8 MiB.
	SendBuffer int
	// KeepAlive: a PING goes out when nothing was sent for this long.
	// Default 1 s.
	KeepAlive time.Duration
	// IdleTimeout: the peer is gone when nothing arrived for this long.
	// Default 10 s; must exceed KeepAlive.
	IdleTimeout time.Duration
	// Output sends one packet. It may block (back-pressure), but must return
	// eventually; it must not retain pkt, and must not call Close or
	// Shutdown of the same Conn (they wait for the goroutine that calls
	// Output). It is called only from the Conn's goroutine, never with the
	// Conn's lock held. An error counts as a lost packet.
	Output func(pkt []byte) error
	// Stalled, if set, is called when something sent has waited for
	// max(3 PTOs, 300 ms) and nothing new was acknowledged meanwhile, and
	// again after twice as long each time while that lasts (see
	// stall.go); it reports whether the path changed (the probe timeout's
	// back-off then starts again). It is called from the Conn's goroutine
	// without the lock, like Output, and must not block for long.
	Stalled func() bool
	// Logger receives lifecycle events at debug level; nil: silent.
	Logger *slog.Logger
	// Now is the clock (timestamps only; timers use the runtime's clock).
	// Default time.Now.
	Now func() time.Time
}

// DefaultConfig returns a Config with every default filled in except Output.
func DefaultConfig() Config {
	return Config{
		MaxPacket:   DefaultMaxPacket,
		RecvWindow:  DefaultRecvWindow,
		SendBuffer:  DefaultSendBuffer,
		KeepAlive:   DefaultKeepAlive,
		IdleTimeout: DefaultIdleTimeout,
	}
}

func (c Config) withDefaults() Config {
	d := DefaultConfig()
	if c.MaxPacket == 0 {
		c.MaxPacket = d.MaxPacket
	}
	if c.RecvWindow == 0 {
		c.RecvWindow = d.RecvWindow
	}
	if c.SendBuffer == 0 {
		c.SendBuffer = d.SendBuffer
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = d.KeepAlive
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports whether c (with defaults applied to zero fields) is usable.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Output == nil:
		return errors.New("arq: config: Output is nil")
	case c.MaxPacket < MinPacket || c.MaxPacket > MaxPacketLimit:
		return fmt.Errorf("arq: config: MaxPacket %d not in [%d, %d]", c.MaxPacket, MinPacket, MaxPacketLimit)
	case c.RecvWindow < InitialWindow || c.RecvWindow > MaxRecvWindow:
		return fmt.Errorf("arq: config: RecvWindow %d not in [%d, %d]", c.RecvWindow, InitialWindow, MaxRecvWindow)
	case c.SendBuffer < 1 || c.SendBuffer > MaxSendBuffer:
		return fmt.Errorf("arq: config: SendBuffer %d not in [1, %d]", c.SendBuffer, MaxSendBuffer)
	case c.KeepAlive < 0:
		return fmt.Errorf("arq: config: negative KeepAlive %v", c.KeepAlive)
	case c.IdleTimeout <= c.KeepAlive:
		return fmt.Errorf("arq: config: IdleTimeout %v not above KeepAlive %v", c.IdleTimeout, c.KeepAlive)
	}
	return nil
}

// Stats is a snapshot of a Conn's counters and congestion state.
type Stats struct {
	PacketsSent         uint64 // packets handed to Output
	PacketsReceived     uint64 // well-formed packets given to Input (duplicates included)
	BytesSent           uint64 // stream bytes sent for the first time
	BytesRetransmitted  uint64 // stream bytes sent again (loss or probe)
	BytesReceived       uint64 // stream bytes delivered in order into the receive buffer
	PacketsLost         uint64 // packets declared lost (spurious ones included)
	SpuriousRetransmits uint64 // packets declared lost and acknowledged afterwards
	CwndUndos           uint64 // congestion reductions undone because their losses were spurious
	CongestionEvents    uint64 // loss episodes that cut the congestion window
	Collapses           uint64 // congestion windows collapsed after consecutive probe timeouts
	PTOs                uint64 // probe timeouts fired
	SlowStartExits      uint64 // slow starts ended by rising delay (HyStart) rather than loss
	CSSResumes          uint64 // conservative slow starts ended by the delay falling back (slow start resumed)
	DuplicatesReceived  uint64 // packets whose number had been received before
	MalformedReceived   uint64 // packets that did not decode or acknowledged numbers never sent
	FlowViolations      uint64 // STREAM frames beyond the advertised window: dropped, their packets not acknowledged
	ReassemblyDrops     uint64 // STREAM frames that would pass the reassembly bound: dropped, their packets not acknowledged
	OutputErrors        uint64 // errors returned by Output (the packet counts as lost)
	Stalls              uint64 // stalls reported to Config.Stalled

	SRTT, RTTVar, MinRTT time.Duration
	ReorderWindow        time.Duration // current RACK reordering window
	Cwnd                 int           // congestion window, bytes
	BytesInFlight        int           // ack-eliciting bytes sent, neither acknowledged nor lost
	SendBuffered         int           // bytes written, not yet acknowledged
	RecvBuffered         int           // bytes received in order, not yet read
	PeerWindow           uint64        // stream offset the peer allows us to send up to
	MaxPacket            int           // current packet size bound
}

// Conn is a reliable, ordered, flow- and congestion-controlled byte stream
// over an unreliable packet path. It is safe for concurrent use.
type Conn struct {
	cfg    Config
	log    *slog.Logger
	epoch  time.Time
	wake   chan struct{} // cap 1: pokes the sender goroutine
	timer  *time.Timer   // the sender goroutine's; Reset only with mu held
	readC  chan struct{} // cap 1: data (or the end) for a blocked Read
	writeC chan struct{} // cap 1: buffer space (or the end) for a blocked Write
	done   chan struct{} // closed when the Conn ends
	exited chan struct{} // closed when the goroutine has returned
	rdl    deadline.Timer
	wdl    deadline.Timer

	mu sync.Mutex
	// All below guarded by mu.

	// Lifecycle.
	ended       bool  // done is closed
	err         error // why it ended
	closeCalled bool  // Close was called (Read/Write give net.ErrClosed)
	sendClose   bool  // the goroutine sends CLOSE(abort) once, then returns
	finalAck    bool  // the goroutine sends a last ACK (for the peer's CLOSE), then returns
	shutdown    bool  // Shutdown called: no more writes, CLOSE once all is acked
	closeWanted bool  // a CLOSE(graceful) should go out in the next packet
	closeSent   int   // CLOSE(graceful) transmissions
	maxPacket   int
	lastRecv    int64 // time of the last packet received
	lastSent    int64 // time of the last packet sent
	stats       Stats

	// Send side: stream bytes [sndUna, sndEnd) are in sbuf; [sndUna, sndNxt)
	// were sent at least once; ackedBytes holds acknowledged bytes above
	// sndUna; rtx holds bytes declared lost, waiting to be sent again.
	sbuf        ring
	sndUna      uint64
	sndNxt      uint64
	sndEnd      uint64
	ackedBytes  spanSet
	rtx         spanSet
	peerMaxData uint64

	// Sent packets, loss detection and congestion control (recovery.go).
	sent         sentQueue
	ackedPN      spanSet // packet numbers acknowledged (above sent.base)
	lossCursor   uint64  // lowest packet number below rackPN that may be unresolved
	rackValid    bool
	rackPN       uint64 // largest packet number acknowledged
	rackRTT      int64  // RTT measured on it
	lossTime     int64  // when the RACK timer fires; 0: not armed
	sleeping     bool   // the sender goroutine waits for timer (or a poke)
	armedAt      int64  // while sleeping: when timer fires
	lastElicit   int64  // time the last ack-eliciting packet was sent
	ptoCount     int
	waiting      bool  // something ack-eliciting is outstanding (stall.go)
	waitFrom     int64 // since when, or since the last acknowledgement of something new
	stalls       int   // stalls reported since the last acknowledgement
	lastStall    int64 // when a stall was last reported
	stallDue     bool  // Config.Stalled is to be called
	probes       int   // probe packets to send now (PTO)
	pingWanted   bool  // a PING should go out (keepalive, flow-blocked probe)
	blockedProbe int   // flow-blocked probes sent since the window last grew
	rtt          rttState
	cc           cubic
	hs           hyStart
	pace         pacer
	reoMult      int       // reordering window, in units of minRTT/4
	reoPersist   int       // loss episodes left before reoMult resets
	suspects     lossQueue // packets declared lost whose congestion response waits

	// Receive side: stream bytes [readOff, recvNext) are ready for Read; ooo
	// holds received bytes above recvNext; everything is in rbuf.
	rbuf        ring
	readOff     uint64
	recvNext    uint64
	ooo         spanSet
	maxDataSent uint64 // largest MAX_DATA advertised (initially InitialWindow)
	windowWant  bool   // a MAX_DATA should go out now

	recvPN      spanSet // packet numbers received, for ACK frames
	pnFloor     uint64  // numbers below are no longer tracked (maxRecvSpans exceeded)
	ackFloor    uint64  // spans wholly below are no longer reported: the peer saw them acknowledged
	hasRecv     bool
	largestRecv uint64
	largestAt   int64   // when largestRecv arrived
	late        pnQueue // late packets (below largestRecv) not yet reported in an ACK frame
	ackDirty    bool    // something arrived since our last ACK frame
	ackElicited int     // ack-eliciting packets since our last ACK frame
	ackNow      bool
	ackDeadline int64 // 0: none
}

// New validates cfg and starts a Conn and its goroutine.
func New(cfg Config) (*Conn, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Conn{
		cfg:         cfg,
		log:         cfg.Logger,
		epoch:       cfg.Now(),
		wake:        make(chan struct{}, 1),
		timer:       time.NewTimer(time.Hour),
		readC:       make(chan struct{}, 1),
		writeC:      make(chan struct{}, 1),
		done:        make(chan struct{}),
		exited:      make(chan struct{}),
		maxPacket:   cfg.MaxPacket,
		peerMaxData: InitialWindow,
		maxDataSent: InitialWindow,
		reoMult:     minReoMult,
	}
	c.cc.init(cfg.MaxPacket, 4*int64(cfg.SendBuffer)+64*int64(MaxPacketLimit))
	go c.run()
	return c, nil
}

func (c *Conn) now() int64 { return int64(c.cfg.Now().Sub(c.epoch)) }

func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// end marks the Conn ended with err (mu held). The first reason wins.
func (c *Conn) end(err error) {
	if c.ended {
		return
	}
	c.ended = true
	c.err = err
	close(c.done)
	poke(c.wake)
	c.log.Debug("arq: conn ended", "err", err, "sent", c.stats.PacketsSent,
		"received", c.stats.PacketsReceived, "lost", c.stats.PacketsLost)
}

// Read reads stream bytes in order. After the peer's CLOSE it returns the
// data already received in order, then io.EOF (peer's Shutdown) or
// ErrPeerAborted (peer's Close); after an idle timeout, then ErrPeerGone;
// after Close or Shutdown, net.ErrClosed at once.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		if c.rdl.Expired() {
			return 0, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if c.closeCalled || (c.ended && errors.Is(c.err, net.ErrClosed)) {
			c.mu.Unlock()
			return 0, net.ErrClosed
		}
		if avail := c.recvNext - c.readOff; avail > 0 {
			n := int(min(avail, uint64(len(p)), 1<<20))
			c.rbuf.read(c.readOff, p[:n])
			c.readOff += uint64(n)
			more := c.recvNext > c.readOff
			if !c.ended && c.readOff+uint64(c.cfg.RecvWindow)-c.maxDataSent >= uint64(c.cfg.RecvWindow/4) {
				c.windowWant = true
				poke(c.wake)
			}
			c.mu.Unlock()
			if more {
				poke(c.readC)
			}
			return n, nil
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		if c.ended {
			err := c.err
			c.mu.Unlock()
			if err == ErrPeerClosed {
				return 0, io.EOF
			}
			return 0, err
		}
		c.mu.Unlock()
		select {
		case <-c.readC:
		case <-c.done:
		case <-c.rdl.Done():
		}
	}
}

// Write copies p into the send buffer, blocking while it is full
// (SendBuffer bytes written and not acknowledged). It returns the bytes
// accepted and, if not all, why.
func (c *Conn) Write(p []byte) (int, error) {
	n := 0
	for {
		if c.wdl.Expired() {
			return n, os.ErrDeadlineExceeded
		}
		c.mu.Lock()
		if err := c.writeErr(); err != nil {
			c.mu.Unlock()
			return n, err
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return n, nil
		}
		used := int(c.sndEnd - c.sndUna)
		if space := c.cfg.SendBuffer - used; space > 0 {
			k := min(space, len(p), 256<<10)
			c.sbuf.ensure(c.sndUna, c.sndEnd, used+k)
			c.sbuf.write(c.sndEnd, p[:k])
			c.sndEnd += uint64(k)
			more := k < space
			c.mu.Unlock()
			poke(c.wake)
			if more {
				poke(c.writeC) // let another blocked writer use the rest
			}
			n += k
			p = p[k:]
			continue
		}
		c.mu.Unlock()
		select {
		case <-c.writeC:
		case <-c.done:
		case <-c.wdl.Done():
		}
	}
}

func (c *Conn) writeErr() error {
	switch {
	case c.closeCalled || c.shutdown:
		return net.ErrClosed
	case c.ended:
		return c.err
	}
	return nil
}

// SetMaxPacket sets the packet size bound (clamped to [MinPacket,
// MaxPacketLimit]) for the following packets, retransmissions included.
func (c *Conn) SetMaxPacket(n int) {
	n = max(MinPacket, min(n, MaxPacketLimit))
	c.mu.Lock()
	c.maxPacket = n
	c.cc.setMSS(n)
	c.mu.Unlock()
	poke(c.wake)
}

// Shutdown stops writing, waits until everything written was acknowledged,
// then sends CLOSE (retried a few times until acknowledged) and ends the
// Conn: the peer reads all data, then io.EOF. If ctx ends first, the Conn is
// closed abruptly and the context's error returned.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		return net.ErrClosed
	}
	if !c.ended {
		c.shutdown = true
	}
	c.mu.Unlock()
	poke(c.wake)
	poke(c.writeC) // a blocked Write fails now
	select {
	case <-c.exited:
	case <-ctx.Done():
		c.Close()
		return fmt.Errorf("arq: shutdown: %w", ctx.Err())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeCalled = true
	if c.sndUna == c.sndEnd {
		return nil
	}
	if errors.Is(c.err, net.ErrClosed) {
		return net.ErrClosed
	}
	return fmt.Errorf("arq: shutdown: %w", c.err)
}

// Close ends the Conn now: it sends CLOSE once (best effort) and stops the
// goroutine. Unacknowledged data is dropped. The first call returns nil,
// later ones net.ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closeCalled {
		c.mu.Unlock()
		<-c.exited
		return net.ErrClosed
	}
	c.closeCalled = true
	if !c.ended {
		c.sendClose = true
		c.end(net.ErrClosed)
	}
	c.mu.Unlock()
	poke(c.wake)
	<-c.exited
	c.rdl.Stop()
	c.wdl.Stop()
	return nil
}

// Done is closed when the Conn has ended, for any reason.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the Conn ended: ErrPeerClosed, ErrPeerAborted,
// ErrPeerGone or net.ErrClosed; nil while it runs.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// SetDeadline sets both the read and the write deadline.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline makes Read fail with os.ErrDeadlineExceeded after t; the
// zero time clears it.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.rdl.Set(t)
	return nil
}

// SetWriteDeadline makes Write fail with os.ErrDeadlineExceeded after t; the
// zero time clears it.
func (c *Conn) SetWriteDeadline(t time.Time) error {
	c.wdl.Set(t)
	return nil
}

// MinRTT returns the least round trip seen (0 before the first sample).
func (c *Conn) MinRTT() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(c.rtt.minRTT)
}

// Stats returns a snapshot of the counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.SRTT = time.Duration(c.rtt.srtt)
	s.RTTVar = time.Duration(c.rtt.rttvar)
	s.MinRTT = time.Duration(c.rtt.minRTT)
	s.ReorderWindow = time.Duration(c.reoWnd())
	s.Cwnd = int(c.cc.cwnd)
	s.BytesInFlight = c.cc.inFlight
	s.SendBuffered = int(c.sndEnd - c.sndUna)
	s.RecvBuffered = int(c.recvNext - c.readOff)
	s.PeerWindow = c.peerMaxData
	s.MaxPacket = c.maxPacket
	return s
}
