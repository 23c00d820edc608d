package probe

// The responder: answers echo requests on EchoPort and trace requests on
// TracePort.
//
// Packet path: one goroutine per bound port reads a request, parses it
// (malformed: dropped, counted), asks the limiter (over the source's rate or
// the total: dropped, counted), looks the answer up in a snapshot of the
// routing table (taken again after TableTTL, or after missRefresh when it
// lacks the node asked about), and writes the reply, never longer than the
// request, back to the address the request came from. A reply that finds no
// route back (the asker just appeared) goes to a bounded queue, whose
// goroutine tries it again for a while.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// ResponderConfig configures a Responder. Zero limits take the defaults of
// DefaultResponderConfig.
type ResponderConfig struct {
	// Self is the SID of the node the responder answers for (required).
	Self identity.SID
	// Table is the node's routing table (required).
	Table Table
	// Echo is the node's EchoPort; nil: echo requests are not answered.
	Echo PacketConn
	// Trace is the node's TracePort; nil: trace requests are not answered.
	Trace PacketConn
	// Rate is how many requests a second one source gets answered, and
	// Burst how many in a row. Default 10 and 20.
	Rate  float64
	Burst int
	// TotalRate and TotalBurst bound the requests answered from all
	// sources together. Default 100 and 200.
	TotalRate  float64
	TotalBurst int
	// MaxSources bounds the sources whose rate is tracked. Default 1024.
	MaxSources int
	// TableTTL is how long a snapshot of the routing table answers
	// requests. Default 250 ms.
	TableTTL time.Duration
	// Logger receives the responder's logs; nil is silent.
	Logger *slog.Logger
}

// DefaultResponderConfig returns the default limits.
func DefaultResponderConfig() ResponderConfig {
	return ResponderConfig{
		Rate: 10, Burst: 20,
		TotalRate: 100, TotalBurst: 200,
		MaxSources: 1024,
		TableTTL:   250 * time.Millisecond,
	}
}

func (c *ResponderConfig) fill() {
	d := DefaultResponderConfig()
	if c.Rate <= 0 {
		c.Rate = d.Rate
	}
	if c.Burst <= 0 {
		c.Burst = d.Burst
	}
	if c.TotalRate <= 0 {
		c.TotalRate = d.TotalRate
	}
	if c.TotalBurst <= 0 {
		c.TotalBurst = d.TotalBurst
	}
	if c.MaxSources <= 0 {
		c.MaxSources = d.MaxSources
	}
	if c.TableTTL <= 0 {
		c.TableTTL = d.TableTTL
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a configuration that cannot work.
func (c *ResponderConfig) Validate() error {
	switch {
	case c.Self.IsZero():
		return errors.New("probe: responder config has no SID")
	case c.Table == nil:
		return errors.New("probe: responder config has no routing table")
	}
	return nil
}

// ResponderStats counts what a Responder did.
type ResponderStats struct {
	Echoes      uint64 // echo requests answered
	Traces      uint64 // trace requests answered
	Malformed   uint64 // requests dropped as malformed (or not requests)
	RateLimited uint64 // requests dropped over a rate limit
	WriteErrors uint64 // replies that could not be sent
	Delayed     uint64 // replies sent late, once a route back appeared
	TableErrors uint64 // failed reads of the routing table
}

// Responder answers echo and trace requests for one node.
type Responder struct {
	cfg  ResponderConfig
	wg   sync.WaitGroup
	once sync.Once
	hold chan held     // replies waiting for a route back
	done chan struct{} // closed by Close

	mu    sync.Mutex
	lim   *limiter  // guarded by mu
	snap  snapshot  // guarded by mu
	snapT time.Time // when snap was taken; guarded by mu

	echoes, traces, malformed, limited, writeErrs, delayed, tableErrs atomic.Uint64
}

// held is a reply to a node this one had no route to when it answered:
// one that just appeared, whose routes have not spread yet.
type held struct {
	pc    PacketConn
	to    net.Addr
	sid   identity.SID // to's node
	b     []byte
	until time.Time
}

// Replies to a node without a route back are held, at most holdQueue at a
// time, and tried again every holdRetry until holdFor has passed.
const (
	holdQueue = 32
	holdRetry = 50 * time.Millisecond
	holdFor   = time.Second
)

// snapshot is what the responder needs of the routing table, by SID.
type snapshot struct {
	routes map[identity.SID]mesh.Route
	addrs  map[identity.SID]string // neighbours' UDP addresses
}

// NewResponder answers requests on cfg.Echo and cfg.Trace until Close,
// which closes them.
func NewResponder(cfg ResponderConfig) (*Responder, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := newResponder(cfg, time.Now())
	r.wg.Add(1)
	go r.retry()
	for _, p := range []struct {
		pc   PacketConn
		port uint16
	}{{cfg.Echo, EchoPort}, {cfg.Trace, TracePort}} {
		if p.pc != nil {
			r.wg.Add(1)
			go r.serve(p.pc, p.port)
		}
	}
	return r, nil
}

// ServeNode answers echo (if echo) and trace (if trace) requests for n, a
// node running in this process: it binds EchoPort and TracePort on n and
// runs a Responder on them with cfg's limits (cfg.Self, Table, Echo and
// Trace are set from n). With neither, it binds nothing and answers
// nothing: the node has ping and trace switched off.
func ServeNode(n *mesh.Node, cfg ResponderConfig, echo, trace bool) (*Responder, error) {
	cfg.Self, cfg.Table, cfg.Echo, cfg.Trace = n.SID(), NodeTable(n), nil, nil
	var err error
	if echo {
		if cfg.Echo, err = n.Bind(EchoPort); err != nil {
			return nil, fmt.Errorf("probe: %w", err)
		}
	}
	if trace {
		if cfg.Trace, err = n.Bind(TracePort); err != nil {
			if cfg.Echo != nil {
				cfg.Echo.Close()
			}
			return nil, fmt.Errorf("probe: %w", err)
		}
	}
	r, err := NewResponder(cfg)
	if err != nil {
		for _, pc := range []PacketConn{cfg.Echo, cfg.Trace} {
			if pc != nil {
				pc.Close()
			}
		}
	}
	return r, err
}

func newResponder(cfg ResponderConfig, now time.Time) *Responder {
	return &Responder{cfg: cfg, lim: newLimiter(cfg, now), hold: make(chan held, holdQueue), done: make(chan struct{})}
}

// Close stops answering and closes the ports.
func (r *Responder) Close() error {
	r.once.Do(func() {
		if r.cfg.Echo != nil {
			r.cfg.Echo.Close()
		}
		if r.cfg.Trace != nil {
			r.cfg.Trace.Close()
		}
		close(r.done)
	})
	r.wg.Wait()
	return nil
}

// Stats returns the responder's counters.
func (r *Responder) Stats() ResponderStats {
	return ResponderStats{
		Echoes: r.echoes.Load(), Traces: r.traces.Load(),
		Malformed: r.malformed.Load(), RateLimited: r.limited.Load(),
		WriteErrors: r.writeErrs.Load(), Delayed: r.delayed.Load(), TableErrors: r.tableErrs.Load(),
	}
}

func (r *Responder) serve(pc PacketConn, port uint16) {
	defer r.wg.Done()
	log := r.cfg.Logger.With("port", port)
	// One byte more than the largest request, so that a longer one is seen
	// to be too long rather than cut to fit.
	buf := make([]byte, HeaderLen+MaxData+1)
	out := make([]byte, 0, HeaderLen+MaxData)
	for {
		k, from, err := pc.ReadFrom(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				log.Warn("probe: responder stops", "err", err)
			}
			return
		}
		a, ok := mesh.AddrOf(from)
		if !ok {
			r.malformed.Add(1)
			continue
		}
		reply := r.handle(port, buf[:k], out, a.SID, time.Now())
		if reply == nil {
			continue
		}
		if _, err := pc.WriteTo(reply, from); err != nil {
			if noRoute(err) {
				select {
				case r.hold <- held{pc: pc, to: from, sid: a.SID, b: append([]byte(nil), reply...), until: time.Now().Add(holdFor)}:
					continue
				default:
				}
			}
			r.writeErrs.Add(1)
			log.Debug("probe: reply not sent", "to", a.SID.Short(), "err", err)
		}
	}
}

// retry sends the held replies, in turn, once a route back appears.
func (r *Responder) retry() {
	defer r.wg.Done()
	t := time.NewTimer(holdRetry)
	defer t.Stop()
	for {
		var h held
		select {
		case h = <-r.hold:
		case <-r.done:
			return
		}
		sent := false
		for !sent && time.Now().Before(h.until) {
			t.Reset(holdRetry)
			select {
			case <-t.C:
			case <-r.done:
				return
			}
			if h.b[0] == typeEchoReply && h.b[1] == wireHopsUnknown {
				// The route back that lets the reply go tells its length.
				if rt, _, ok := r.lookup(h.sid, time.Now()); ok && rt.Hops < wireHopsUnknown {
					h.b[1] = byte(rt.Hops)
				}
			}
			_, err := h.pc.WriteTo(h.b, h.to)
			if err == nil {
				sent = true
				r.delayed.Add(1)
			} else if !noRoute(err) {
				break
			}
		}
		if !sent {
			r.writeErrs.Add(1)
		}
	}
}

// handle answers request b, which arrived on port from node src at now,
// with a reply appended to out[:0] (never longer than b), or returns nil
// when b gets no answer.
func (r *Responder) handle(port uint16, b, out []byte, src identity.SID, now time.Time) []byte {
	var reply []byte
	switch port {
	case EchoPort:
		e, _, err := ParseEcho(b)
		if err != nil || e.Reply {
			r.malformed.Add(1)
			return nil
		}
		if !r.admit(src, now) {
			return nil
		}
		e.Reply, e.Hops = true, HopsUnknown
		if src == r.cfg.Self {
			e.Hops = 0
		} else if rt, _, ok := r.lookup(src, now); ok {
			e.Hops = rt.Hops
		}
		reply = e.Append(out[:0])
		r.echoes.Add(1)
	case TracePort:
		q, _, err := ParseTraceRequest(b)
		if err != nil {
			r.malformed.Add(1)
			return nil
		}
		if !r.admit(src, now) {
			return nil
		}
		t := TraceReply{ID: q.ID, Seq: q.Seq, Status: StatusNoRoute}
		if q.Dst == r.cfg.Self {
			t.Status = StatusDestination
		} else if rt, addr, ok := r.lookup(q.Dst, now); ok && !rt.NextHop.IsZero() {
			t.Status, t.Next, t.Hops, t.Addr = StatusNext, rt.NextHop, rt.Hops, addr
		}
		reply = t.Append(out[:0])
		r.traces.Add(1)
	default:
		return nil
	}
	if len(reply) > len(b) {
		// The codecs make this impossible; a reply must never amplify.
		r.cfg.Logger.Error("probe: reply longer than its request", "reply", len(reply), "request", len(b))
		return nil
	}
	return reply
}

// admit asks the limiter whether src may be answered now.
func (r *Responder) admit(src identity.SID, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.lim.allow(src, now) {
		r.limited.Add(1)
		return false
	}
	return true
}

// missRefresh is how old a snapshot of the routing table must be to be
// taken again when it lacks the node asked about (a node that just
// appeared: its route may be newer than the snapshot).
const missRefresh = 20 * time.Millisecond

// lookup returns the route to sid and its next hop's address ("" when not
// a neighbour) from the snapshot of the routing table, which it takes again
// when older than TableTTL, or than missRefresh when sid is missing.
func (r *Responder) lookup(sid identity.SID, now time.Time) (mesh.Route, string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	age := now.Sub(r.snapT)
	if r.snapT.IsZero() || age >= r.cfg.TableTTL || age < 0 {
		r.refreshLocked(now)
	}
	rt, ok := r.snap.routes[sid]
	if !ok && now.Sub(r.snapT) >= missRefresh {
		r.refreshLocked(now)
		rt, ok = r.snap.routes[sid]
	}
	return rt, r.snap.addrs[rt.NextHop], ok
}

// refreshLocked takes a new snapshot of the routing table. On error the
// old one stays, for another TableTTL.
func (r *Responder) refreshLocked(now time.Time) {
	r.snapT = now
	routes, err := r.cfg.Table.Routes()
	if err != nil {
		r.tableErrs.Add(1)
		r.cfg.Logger.Debug("probe: routing table", "err", err)
		return
	}
	nbs, err := r.cfg.Table.Neighbours()
	if err != nil {
		r.tableErrs.Add(1)
		r.cfg.Logger.Debug("probe: neighbours", "err", err)
		return
	}
	s := snapshot{routes: make(map[identity.SID]mesh.Route, len(routes)), addrs: make(map[identity.SID]string, len(nbs))}
	for _, rt := range routes {
		s.routes[rt.SID] = rt
	}
	for _, nb := range nbs {
		if nb.Addr != nil {
			s.addrs[nb.SID] = nb.Addr.String()
		}
	}
	r.snap = s
}
