package arq

// The packet paths of the tests: two Conns joined through an in-memory
// network (internal/memnet), whose links drop, duplicate, delay, reorder
// and rate-limit packets, all random decisions drawn from one seeded
// generator. The all-zero pathConfig joins the Conns directly instead:
// Output calls the peer's Input, with no goroutine in between.

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
)

// pathConfig is one direction of a pair's path, in the terms of the tests;
// link maps it to a memnet link.
type pathConfig struct {
	Loss       float64       // probability a packet is dropped
	Dup        float64       // probability a packet is delivered twice
	Delay      time.Duration // one-way delay
	Jitter     time.Duration // extra delay, uniform in [0, Jitter): reorders
	Spike      float64       // probability a packet is held SpikeDelay longer (a hop retransmitting)
	SpikeDelay time.Duration
	Bump       time.Duration // extra delay of packets sent BumpFrom..BumpFrom+BumpFor after the path starts
	BumpFrom   time.Duration
	BumpFor    time.Duration
	Rate       float64 // bytes per second; 0: unlimited
	Queue      int     // bytes queued at the rate limit before drop-tail; 0: memnet's default (256 KiB)
	Seed       uint64  // the a->b path's seed seeds the network
}

// link is the memnet link of c: Spike is memnet's Reorder hold-back; Bump
// is applied by changing the link's delay for a while (see newPath).
func (c pathConfig) link() memnet.LinkConfig {
	return memnet.LinkConfig{
		Loss:         c.Loss,
		Duplicate:    c.Dup,
		Delay:        c.Delay,
		Jitter:       c.Jitter,
		Reorder:      c.Spike,
		ReorderDelay: c.SpikeDelay,
		Bandwidth:    int64(c.Rate),
		QueueBytes:   c.Queue,
	}
}

// path is one direction: the sender's Output writes to the from endpoint,
// a goroutine reads the to endpoint into the receiving Conn's Input.
type path struct {
	nw       *memnet.Network
	cfg      memnet.LinkConfig
	from, to *memnet.Conn
	dst      atomic.Pointer[Conn] // the receiving Conn of a direct path

	mu    sync.Mutex // serializes output's calls of check; guards the fields below
	check func(pkt []byte)
	cuts  bool
	timer []*time.Timer // Bump's link changes
}

// setCheck installs a function called on every packet sent.
func (p *path) setCheck(f func(pkt []byte)) {
	p.mu.Lock()
	p.check = f
	p.mu.Unlock()
}

// cut makes the path drop everything, including packets in flight (true),
// or work again (false).
func (p *path) cut(b bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.nw == nil {
		panic("arq test: cut of a direct path")
	}
	p.cuts = b
	cfg := p.cfg
	cfg.Cut = b
	p.nw.SetLink(p.from.LocalAddr(), p.to.LocalAddr(), cfg)
}

// output is the Config.Output of the sending Conn. Like a datagram socket
// it reports no loss.
func (p *path) output(pkt []byte) error {
	p.mu.Lock()
	if p.check != nil {
		p.check(pkt)
	}
	p.mu.Unlock()
	if p.nw == nil {
		if c := p.dst.Load(); c != nil {
			c.Input(pkt)
		}
		return nil
	}
	p.from.WriteTo(pkt, p.to.LocalAddr())
	return nil
}

// read hands what arrives at p.to to dst until the endpoint closes.
func (p *path) read(dst *Conn) {
	buf := make([]byte, 1<<17)
	for {
		n, _, err := p.to.ReadFrom(buf)
		if err != nil {
			return
		}
		dst.Input(buf[:n]) // Input copies what it keeps
	}
}

// pair is two Conns joined by two paths.
type pair struct {
	a, b   *Conn
	ab, ba *path
}

// newPair connects two Conns; t.Cleanup closes everything.
func newPair(t testing.TB, ca, cb Config, pa, pb pathConfig) *pair {
	t.Helper()
	ab, ba := &path{}, &path{}
	var nw *memnet.Network
	if pa != (pathConfig{}) || pb != (pathConfig{}) {
		seed := int64(pa.Seed)
		nw = memnet.New(seed)
		nw.SetMTU(1 << 17)
		nw.SetRecvQueue(1<<16, 1<<28) // the readers' queues: bounded only by the links
		ea, eb := nw.Listen(), nw.Listen()
		ab.nw, ab.cfg, ab.from, ab.to = nw, pa.link(), ea, eb
		ba.nw, ba.cfg, ba.from, ba.to = nw, pb.link(), eb, ea
		for _, x := range []struct {
			p *path
			c pathConfig
		}{{ab, pa}, {ba, pb}} {
			nw.SetLink(x.p.from.LocalAddr(), x.p.to.LocalAddr(), x.p.cfg)
			if x.c.Bump > 0 {
				x.p.bump(x.c)
			}
		}
	}
	ca.Output = ab.output
	cb.Output = ba.output
	a, err := New(ca)
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(cb)
	if err != nil {
		a.Close()
		t.Fatal(err)
	}
	ab.dst.Store(b)
	ba.dst.Store(a)
	var readers sync.WaitGroup
	if nw != nil {
		readers.Go(func() { ab.read(b) })
		readers.Go(func() { ba.read(a) })
	}
	t.Cleanup(func() {
		a.Close()
		b.Close()
		for _, p := range []*path{ab, ba} {
			p.mu.Lock()
			for _, tm := range p.timer {
				tm.Stop()
			}
			p.mu.Unlock()
		}
		if nw != nil {
			nw.Close()
		}
		readers.Wait()
	})
	return &pair{a: a, b: b, ab: ab, ba: ba}
}

// bump adds c.Bump to the delay of the packets sent from c.BumpFrom to
// c.BumpFrom+c.BumpFor from now: memnet applies a link's settings to the
// datagrams written after the change.
func (p *path) bump(c pathConfig) {
	set := func(extra time.Duration) func() {
		return func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.cfg.Delay = c.Delay + extra
			cfg := p.cfg
			cfg.Cut = p.cuts
			p.nw.SetLink(p.from.LocalAddr(), p.to.LocalAddr(), cfg)
		}
	}
	p.mu.Lock()
	p.timer = append(p.timer, time.AfterFunc(c.BumpFrom, set(c.Bump)), time.AfterFunc(c.BumpFrom+c.BumpFor, set(0)))
	p.mu.Unlock()
}
