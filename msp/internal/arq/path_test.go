package arq

// A fake packet path for tests: one direction between two Conns that can
// drop, duplicate, delay, reorder (jitter) and rate-limit packets, with all
// random decisions drawn from a seeded generator. Without delay, jitter or
// rate it is goroutine-free: Output calls the peer's Input directly.

import (
	"container/heap"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	Queue      int     // packets queued before drop-tail; default 4096
	Seed       uint64
}

type queued struct {
	at  time.Time
	seq uint64
	pkt []byte
}

type pktHeap []queued

func (h pktHeap) Len() int { return len(h) }
func (h pktHeap) Less(i, j int) bool {
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
	}
	return h[i].seq < h[j].seq
}
func (h pktHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *pktHeap) Push(x any)   { *h = append(*h, x.(queued)) }
func (h *pktHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// path is one direction. Its counters are atomic.
type path struct {
	cfg  pathConfig
	dst  atomic.Pointer[Conn]
	sync bool

	mu      sync.Mutex
	rng     *rand.Rand
	q       pktHeap
	seq     uint64
	depart  time.Time // rate limit: when the link is free again
	started time.Time
	blocked bool // drop everything (a cut)
	check   func(pkt []byte)

	kick chan struct{}
	stop chan struct{}
	done chan struct{}

	sent, dropped, duplicated, delivered atomic.Uint64
	maxSize                              atomic.Int64
}

func newPath(cfg pathConfig) *path {
	if cfg.Queue == 0 {
		cfg.Queue = 256 << 10
	}
	p := &path{
		cfg:     cfg,
		rng:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		sync:    cfg.Delay == 0 && cfg.Jitter == 0 && cfg.Rate == 0 && cfg.Spike == 0 && cfg.Bump == 0,
		started: time.Now(),
		kick:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if p.sync {
		close(p.done)
	} else {
		go p.run()
	}
	return p
}

// setCheck installs a function called on every packet sent.
func (p *path) setCheck(f func(pkt []byte)) {
	p.mu.Lock()
	p.check = f
	p.mu.Unlock()
}

// cut makes the path drop everything (true) or work again (false).
func (p *path) cut(b bool) {
	p.mu.Lock()
	p.blocked = b
	p.mu.Unlock()
}

// output is the Config.Output of the sending Conn.
func (p *path) output(pkt []byte) error {
	p.sent.Add(1)
	for {
		m := p.maxSize.Load()
		if int64(len(pkt)) <= m || p.maxSize.CompareAndSwap(m, int64(len(pkt))) {
			break
		}
	}
	p.mu.Lock()
	if p.check != nil {
		p.check(pkt)
	}
	if p.blocked || (p.cfg.Loss > 0 && p.rng.Float64() < p.cfg.Loss) {
		p.mu.Unlock()
		p.dropped.Add(1)
		return nil
	}
	copies := 1
	if p.cfg.Dup > 0 && p.rng.Float64() < p.cfg.Dup {
		copies = 2
		p.duplicated.Add(1)
	}
	if p.sync {
		p.mu.Unlock()
		for range copies {
			p.deliver(pkt)
		}
		return nil
	}
	now := time.Now()
	for range copies {
		if len(p.q) >= 1<<16 {
			p.dropped.Add(1)
			continue
		}
		at := now
		if p.cfg.Rate > 0 {
			if p.depart.Before(now) {
				p.depart = now
			}
			if backlog := p.depart.Sub(now).Seconds() * p.cfg.Rate; backlog+float64(len(pkt)) > float64(p.cfg.Queue) {
				p.dropped.Add(1)
				continue
			}
			p.depart = p.depart.Add(time.Duration(float64(len(pkt)) / p.cfg.Rate * 1e9))
			at = p.depart
		}
		at = at.Add(p.cfg.Delay)
		if p.cfg.Jitter > 0 {
			at = at.Add(time.Duration(p.rng.Int64N(int64(p.cfg.Jitter))))
		}
		if p.cfg.Spike > 0 && p.rng.Float64() < p.cfg.Spike {
			at = at.Add(p.cfg.SpikeDelay)
		}
		if since := now.Sub(p.started); p.cfg.Bump > 0 && since >= p.cfg.BumpFrom && since < p.cfg.BumpFrom+p.cfg.BumpFor {
			at = at.Add(p.cfg.Bump)
		}
		p.seq++
		heap.Push(&p.q, queued{at: at, seq: p.seq, pkt: append([]byte(nil), pkt...)})
	}
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return nil
}

func (p *path) deliver(pkt []byte) {
	if c := p.dst.Load(); c != nil {
		p.delivered.Add(1)
		c.Input(pkt)
	}
}

func (p *path) run() {
	defer close(p.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		p.mu.Lock()
		var due []byte
		var wait time.Duration = -1
		if len(p.q) > 0 {
			if d := time.Until(p.q[0].at); d <= 0 {
				due = heap.Pop(&p.q).(queued).pkt
			} else {
				wait = d
			}
		}
		p.mu.Unlock()
		if due != nil {
			p.deliver(due)
			continue
		}
		if wait >= 0 {
			t.Reset(wait)
			select {
			case <-t.C:
			case <-p.kick:
			case <-p.stop:
				return
			}
			continue
		}
		select {
		case <-p.kick:
		case <-p.stop:
			return
		}
	}
}

func (p *path) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	<-p.done
}

// pair is two Conns joined by two paths.
type pair struct {
	a, b   *Conn
	ab, ba *path
}

// newPair connects two Conns; t.Cleanup closes everything.
func newPair(t testing.TB, ca, cb Config, pa, pb pathConfig) *pair {
	t.Helper()
	ab, ba := newPath(pa), newPath(pb)
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
	pr := &pair{a: a, b: b, ab: ab, ba: ba}
	t.Cleanup(pr.close)
	return pr
}

func (pr *pair) close() {
	pr.a.Close()
	pr.b.Close()
	pr.ab.close()
	pr.ba.close()
}
