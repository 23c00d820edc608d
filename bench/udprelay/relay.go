package udprelay

// Flow, one relay joining a client to a fixed upstream address:
//
//	client ─UDP─► front socket ─► [up pipe] ─► back socket ─UDP─► upstream
//	client ◄─UDP─ front socket ◄─ [down pipe] ◄─ back socket ◄─UDP─ upstream
//
// The relay answers the client from its front socket and talks to the
// upstream from its back socket, so each end sees the relay as its peer.
// The client is the last address the front socket heard from (one client
// per relay: a relay is one link). Each pipe is a reader goroutine that
// reads datagrams in batches (recvmmsg where the platform has it), applies
// MTU, loss and the rate cap and queues each with its due time, and a
// writer goroutine that wakes when the first is due and sends every one
// due by then in one batch (sendmmsg): a syscall and a wake-up per
// datagram kept the relay milliseconds behind its schedule on a busy
// machine, a delay the benchmarks then counted as the link's.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpIPOverhead is the IPv4 and UDP header bytes of a datagram: a link of
// MTU m carries at most m-28 bytes of UDP payload.
const udpIPOverhead = 28

// Link is what one direction of the relay does to datagrams.
type Link struct {
	// Loss is the share of datagrams dropped at random, 0 to 1.
	Loss float64
	// Delay is added to every datagram (less up to 250 µs: see earlyOK).
	Delay time.Duration
	// Jitter adds a uniform random 0..Jitter to Delay. Datagrams keep their
	// order (a later one is never due before an earlier one).
	Jitter time.Duration
	// Rate caps the bytes per second (UDP payload) leaving the relay; 0 is
	// no cap. Datagrams wait in the queue for their turn.
	Rate float64
	// MTU drops datagrams whose UDP payload exceeds MTU-28 bytes, as an
	// IPv4 link of that MTU with DF set would; 0 is no limit.
	MTU int
}

// Config configures a relay.
type Config struct {
	// Up applies to datagrams from the client to the upstream, Down to
	// the replies.
	Up, Down Link
	// Queue bounds the datagrams waiting in one direction (delayed or
	// rate-capped); a datagram arriving at a full queue is dropped.
	// Default 8192.
	Queue int
	// Seed seeds the loss and jitter RNG (each direction its own stream).
	Seed uint64
	// SocketBuffer is the kernel buffer asked for on each socket (the
	// kernel may clamp it). Default 4 MiB.
	SocketBuffer int
	// Nice, when below 0, runs the relay's goroutines on threads of their
	// own at that nice value, ahead of the processes under test: the relay
	// stands for a network, which does not wait for the endpoints' CPU.
	// It needs CAP_SYS_NICE (root); without it the threads keep the
	// process's priority and Prioritized reports false.
	Nice int
}

// earlyOK is how much before its due time a datagram may leave: one timer
// wake-up then sends every datagram due within it, instead of one wake-up
// per datagram (at 50 MB/s they are 28 µs apart), which kept the relay
// behind its schedule on a busy machine.
const earlyOK = 250 * time.Microsecond

// maxDatagram is the largest datagram the relay reads.
const maxDatagram = 65535

// readBatch and writeBatch bound the datagrams of one batched read and
// one batched write.
const (
	readBatch  = 16
	writeBatch = 64
)

// batchConn reads and writes several datagrams per system call
// (golang.org/x/net's ipv4 and ipv6 PacketConn share the Message type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

func newBatchConn(c *net.UDPConn) batchConn {
	if a, ok := c.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(c)
	}
	return ipv6.NewPacketConn(c)
}

// Validate reports a configuration the relay cannot run.
func (c Config) Validate() error {
	for _, l := range []Link{c.Up, c.Down} {
		if l.Loss < 0 || l.Loss > 1 || l.Delay < 0 || l.Jitter < 0 || l.Rate < 0 || l.MTU < 0 || (l.MTU > 0 && l.MTU <= udpIPOverhead) {
			return fmt.Errorf("udprelay: bad link %+v", l)
		}
	}
	if c.Queue < 0 || c.SocketBuffer < 0 {
		return errors.New("udprelay: negative queue or socket buffer")
	}
	return nil
}

// Symmetric is a Config applying l both ways.
func Symmetric(l Link, seed uint64) Config {
	return Config{Up: l, Down: l, Seed: seed}
}

// Counters are one direction's counts.
type Counters struct {
	// In counts datagrams read; Out those sent on; OutBytes their payload.
	In, Out, OutBytes uint64
	// Lost, TooBig and QueueFull count the datagrams dropped at random,
	// for the MTU and for a full queue.
	Lost, TooBig, QueueFull uint64
	// MaxOut is the largest payload sent on.
	MaxOut uint64
	// Late sums how much later than due the datagrams sent on left (the
	// relay's own scheduling delay, which adds to Delay; one that left up
	// to 250 µs early counts as 0 late); MaxLate is the most one was late.
	Late, MaxLate time.Duration
}

// Stats is both directions' counters.
type Stats struct {
	Up, Down Counters
}

// Relay is a running relay. Close stops it.
type Relay struct {
	front, back *net.UDPConn
	up, down    *pipe
	client      atomic.Pointer[netip.AddrPort]
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeOnce   sync.Once
	nice        int         // Config.Nice
	prio        atomic.Bool // every goroutine that raised its thread got it
}

// New starts a relay listening on a new loopback port and forwarding to
// upstream (an IP:port on loopback).
func New(upstream string, cfg Config) (*Relay, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Queue == 0 {
		cfg.Queue = 8192
	}
	if cfg.SocketBuffer == 0 {
		cfg.SocketBuffer = 4 << 20
	}
	up, err := netip.ParseAddrPort(upstream)
	if err != nil {
		return nil, fmt.Errorf("udprelay: upstream: %w", err)
	}
	loop := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	if up.Addr().Is6() && !up.Addr().Is4In6() {
		loop = netip.IPv6Loopback()
	}
	front, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loop, 0)))
	if err != nil {
		return nil, fmt.Errorf("udprelay: %w", err)
	}
	back, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loop, 0)))
	if err != nil {
		front.Close()
		return nil, fmt.Errorf("udprelay: %w", err)
	}
	for _, c := range []*net.UDPConn{front, back} {
		c.SetReadBuffer(cfg.SocketBuffer)
		c.SetWriteBuffer(cfg.SocketBuffer)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{front: front, back: back, cancel: cancel, nice: cfg.Nice}
	r.up = newPipe(cfg.Up, cfg.Queue, cfg.Seed, 1)
	r.down = newPipe(cfg.Down, cfg.Queue, cfg.Seed, 2)
	r.wg.Add(4)
	r.prio.Store(cfg.Nice < 0)
	go r.read(front, r.up, func(from netip.AddrPort) {
		if c := r.client.Load(); c == nil || *c != from {
			r.client.Store(&from)
		}
	})
	go r.write(ctx, back, r.up, func() (netip.AddrPort, bool) { return up, true })
	go r.read(back, r.down, func(from netip.AddrPort) {})
	go r.write(ctx, front, r.down, func() (netip.AddrPort, bool) {
		c := r.client.Load()
		if c == nil {
			return netip.AddrPort{}, false
		}
		return *c, true
	})
	return r, nil
}

// Prioritized reports whether all the relay's goroutines run at
// Config.Nice (false when it was not set or was refused).
func (r *Relay) Prioritized() bool { return r.prio.Load() }

// Addr is the address clients send to.
func (r *Relay) Addr() string { return r.front.LocalAddr().String() }

// SetConfig changes both directions' links (not Queue, Seed or buffers);
// datagrams already queued keep their due time.
func (r *Relay) SetConfig(cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	r.up.setLink(cfg.Up)
	r.down.setLink(cfg.Down)
	return nil
}

// Stats returns the counters so far.
func (r *Relay) Stats() Stats {
	return Stats{Up: r.up.counters(), Down: r.down.counters()}
}

// Close stops the relay and waits for its goroutines. It is idempotent.
func (r *Relay) Close() error {
	r.closeOnce.Do(func() {
		r.cancel()
		r.front.Close()
		r.back.Close()
		close(r.up.stop)
		close(r.down.stop)
		r.wg.Wait()
	})
	return nil
}

// packet is a datagram waiting in a pipe.
type packet struct {
	buf []byte // from the pipe's free list, len = payload
	due time.Time
}

// pipe is one direction: a bounded queue between a reader and a writer.
type pipe struct {
	mu   sync.Mutex // guards link, rng, lastDue, nextFree
	link Link
	rng  *rand.Rand
	// lastDue keeps datagrams in order under jitter; nextFree is when the
	// rate cap lets the next byte leave.
	lastDue, nextFree time.Time

	queue chan packet
	free  chan []byte
	stop  chan struct{}

	in, out, outBytes, lost, tooBig, queueFull, maxOut atomic.Uint64
	late, maxLate                                      atomic.Int64
}

func newPipe(l Link, queue int, seed, stream uint64) *pipe {
	p := &pipe{
		link:  l,
		rng:   rand.New(rand.NewPCG(seed, stream)),
		queue: make(chan packet, queue),
		free:  make(chan []byte, queue),
		stop:  make(chan struct{}),
	}
	for range queue {
		p.free <- nil // buffers are allocated on first use
	}
	return p
}

func (p *pipe) setLink(l Link) {
	p.mu.Lock()
	p.link = l
	p.mu.Unlock()
}

func (p *pipe) counters() Counters {
	return Counters{
		In: p.in.Load(), Out: p.out.Load(), OutBytes: p.outBytes.Load(),
		Lost: p.lost.Load(), TooBig: p.tooBig.Load(), QueueFull: p.queueFull.Load(),
		MaxOut: p.maxOut.Load(),
		Late:   time.Duration(p.late.Load()), MaxLate: time.Duration(p.maxLate.Load()),
	}
}

// admit decides the fate of an n-byte datagram read at now: ok with its
// due time, or dropped (and counted).
func (p *pipe) admit(n int, now time.Time) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.link
	if l.MTU > 0 && n > l.MTU-udpIPOverhead {
		p.tooBig.Add(1)
		return time.Time{}, false
	}
	if l.Loss > 0 && p.rng.Float64() < l.Loss {
		p.lost.Add(1)
		return time.Time{}, false
	}
	leave := now
	if l.Rate > 0 {
		leave = later(now, p.nextFree)
		p.nextFree = leave.Add(time.Duration(float64(n) / l.Rate * float64(time.Second)))
	}
	due := leave.Add(l.Delay)
	if l.Jitter > 0 {
		due = due.Add(time.Duration(p.rng.Int64N(int64(l.Jitter) + 1)))
	}
	due = later(due, p.lastDue)
	p.lastDue = due
	return due, true
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// read moves datagrams from c into p until c is closed; seen is called
// with each sender's address.
func (r *Relay) read(c *net.UDPConn, p *pipe, seen func(netip.AddrPort)) {
	defer r.wg.Done()
	r.raise()
	bc := newBatchConn(c)
	ms := make([]ipv4.Message, readBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, maxDatagram)}
	}
	for {
		k, err := bc.ReadBatch(ms, 0)
		if err != nil {
			select {
			case <-p.stop:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // e.g. ICMP port unreachable surfacing as an error
		}
		now := time.Now()
		for i := range ms[:k] {
			n := ms[i].N
			p.in.Add(1)
			if a, ok := ms[i].Addr.(*net.UDPAddr); ok {
				seen(a.AddrPort())
			}
			ms[i].Addr = nil
			due, ok := p.admit(n, now)
			if !ok {
				continue
			}
			var buf []byte
			select {
			case buf = <-p.free:
			default:
				p.queueFull.Add(1)
				continue
			}
			if cap(buf) < n {
				buf = make([]byte, n, max(n, 2048))
			}
			buf = buf[:n]
			copy(buf, ms[i].Buffers[0][:n])
			p.queue <- packet{buf: buf, due: due} // never blocks: one free buffer per queue slot
		}
	}
}

// write sends p's datagrams through c to dst when they are due: it waits
// for the first, then sends every datagram due by then (within earlyOK)
// with as few system calls as the socket allows.
func (r *Relay) write(ctx context.Context, c *net.UDPConn, p *pipe, dst func() (netip.AddrPort, bool)) {
	defer r.wg.Done()
	r.raise()
	bc := newBatchConn(c)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var (
		held []packet // taken from the queue, in due order, not yet sent
		ms   = make([]ipv4.Message, writeBatch)
		bufs = make([][]byte, writeBatch)
		to   netip.AddrPort
		addr *net.UDPAddr
	)
	for {
		if len(held) == 0 {
			select {
			case pk := <-p.queue:
				held = append(held, pk)
			case <-p.stop:
				return
			}
		}
		if wait := time.Until(held[0].due); wait > earlyOK {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
	drain: // what was queued meanwhile: due times never decrease along the queue
		for len(held) < writeBatch {
			select {
			case pk := <-p.queue:
				held = append(held, pk)
			default:
				break drain
			}
		}
		now := time.Now()
		k := 0
		for k < len(held) && held[k].due.Sub(now) <= earlyOK {
			k++
		}
		if dest, ok := dst(); ok {
			if dest != to || addr == nil {
				to, addr = dest, net.UDPAddrFromAddrPort(dest)
			}
			for i, pk := range held[:k] {
				bufs[i] = pk.buf
				ms[i] = ipv4.Message{Buffers: bufs[i : i+1], Addr: addr}
			}
			p.sendBatch(bc, ms[:k], held[:k], now)
		}
		for i := range held[:k] {
			p.free <- held[i].buf
		}
		clear(bufs[:k])
		held = held[:copy(held, held[k:])]
	}
}

// sendBatch writes ms, the datagrams of sent, and counts the ones that
// left. A datagram the kernel refuses is skipped; the ones after it still
// go.
func (p *pipe) sendBatch(bc batchConn, ms []ipv4.Message, sent []packet, now time.Time) {
	for start := 0; start < len(ms); {
		n, err := bc.WriteBatch(ms[start:], 0)
		n = max(n, 0)
		for _, pk := range sent[start : start+n] {
			late := max(0, int64(now.Sub(pk.due)))
			p.out.Add(1)
			p.outBytes.Add(uint64(len(pk.buf)))
			storeMax(&p.maxOut, uint64(len(pk.buf)))
			p.late.Add(late)
			storeMax(&p.maxLate, late)
		}
		start += n
		if errors.Is(err, net.ErrClosed) {
			break
		}
		if err != nil || n == 0 {
			start++ // the one refused
		}
	}
	clear(ms)
}

// storeMax raises *m to v if v is larger.
func storeMax[T int64 | uint64, A interface {
	Load() T
	CompareAndSwap(old, new T) bool
}](m A, v T) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}
