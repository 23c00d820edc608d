package mesh

// Routing: which neighbour leads towards each SID.
//
// A distance-vector protocol in the manner of Babel (RFC 8966), with signed
// origins. Every node originates its own SID with a sequence number and an
// Ed25519 signature over both; neighbours exchange routing messages (on the
// reserved MDP port RoutingPort, inside DATA frames, so per-hop reliable)
// listing, for every origin they reach, its sequence number and signature
// and their metric, hop count and path MTU. A node adds the cost of the link
// it heard the entry on and selects, per origin, the cheapest feasible route:
// an entry is feasible when its sequence number is newer than the one the
// node last advertised for that origin, or equal with a smaller metric than
// the node advertised (the feasibility distance). That keeps routing
// loop-free even while it converges. A node that loses its route and has no
// feasible alternative retracts it and asks the origin, along the routes
// towards it, for a newer sequence number.
//
// Link cost comes from d, the fraction of hellos that get through both
// ways (d_in * d_out, each a moving average): 256 for d >= 0.75 (up to about
// 13% loss each way, which per-hop retransmission hides well), doubling for
// each class below (0.55, 0.35, 0.2), so a link at 30% loss each way costs
// more than two clean hops. A class changes only when d is clearly past its
// bound, so steady random loss never moves a metric. Changes go to every
// neighbour at once; the whole table again once per refresh interval,
// spread over it (refresh.go), within a byte budget whatever the table's
// size.

import (
	"crypto/sha256"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh/internal/wire"
)

// RoutingPort is the MDP port neighbours exchange routing messages on.
const RoutingPort = 2

const (
	// dumpEvery is the least refresh interval (refresh.go), in hello intervals.
	dumpEvery = 12
	// dumpBudget: refreshing the table to every neighbour together costs a node at
	// most this many bytes per second (counting entries without
	// signatures); a bigger table goes out less often (dumpInterval).
	dumpBudget = 512
	// advertHold is the least number of hello intervals an entry heard
	// lives unrefreshed; a neighbour whose tables are further apart says
	// so in its messages' Hold.
	advertHold = 3*dumpEvery + dumpEvery/2
	// maxHold caps the Hold a neighbour may ask for.
	maxHold = 30 * time.Minute
	// originEvery: a node issues a new sequence number this often (hello
	// intervals) even if nobody asks, or every originDumps refresh
	// intervals when those are longer, each period taken by a random
	// factor (originJitter). Seqno requests are what restores
	// feasibility when a route needs it; the periodic number is a
	// fallback for requests lost on the way. It reaches our neighbours at
	// once and every other node with the entry's refresh (a new sequence
	// number alone is not flooded: recomputeLocked), each time with its
	// 64-byte signature, so it is as rare as the refresh interval allows.
	originEvery = 60
	originDumps = 5
	// ihuStep: between full tables, a neighbour hears how well its hellos
	// arrive only when that moved by this much (of 255) since it last
	// heard: a clean link's IHU costs nothing between tables.
	ihuStep = 3
	// qualityAlpha is the weight of one hello interval in link quality.
	qualityAlpha = 1.0 / 16
	// sigEvery: every this many refreshes of an entry, its signature is
	// sent again even to neighbours that had it.
	sigEvery = 4
	// hysteresis: a route moves to another neighbour only if that is this
	// much cheaper (in quarters).
	hysteresisQuarters = 5
	// wantEvery is the least number of hello intervals between two
	// WantTables of a neighbour honoured (wantTableLocked).
	wantEvery = 30
	// repairEvery is the least number of hello intervals between two
	// full tables a neighbour gets because it asked or lost one.
	repairEvery = 4
	// firstAskBack and maxAskBack bound the interval at which a route
	// that needs a newer sequence number asks again (route.needSeq).
	firstAskBack = 2 * time.Second
	maxAskBack   = 32 * time.Second
	// wantHold is how long a neighbour's seqno request we forwarded is
	// remembered for answering it (route.wants); at most one per neighbour.
	wantHold = 30 * time.Second
	// retractedHold is how long a retracted route is still advertised.
	retractedHold = 30 * time.Second
	// sourceHold is how long a retracted route's record, and with it the
	// feasibility distance, is kept (Babel keeps its sources about 3
	// minutes): forgotten while neighbours still advertise the origin, the
	// next entry heard would be taken as feasible whatever its metric, and
	// lost again; within MaxRoutes.
	sourceHold = 3 * time.Minute
	// A neighbour dropped is remembered this long (at most maxDropped of
	// them): taken back meanwhile, it is asked for its table.
	droppedHold = 10 * time.Minute
	maxDropped  = 256
)

// advert is what one neighbour last said about an origin.
type advert struct {
	seq    uint64
	metric uint16
	hops   uint8
	mtu    int
	at     time.Time
	hold   time.Duration // how long it lives unrefreshed
}

type route struct {
	origin   identity.SID
	seq      uint64 // newest verified sequence number
	sig      [identity.SignatureLen]byte
	via      *neighbour // nil: unreachable (retracted)
	metric   uint32
	hops     int
	mtu      int
	fdSeq    uint64 // feasibility distance
	fdMetric uint32
	fdSet    bool
	dirty    bool
	lost     time.Time // when via became nil
	asked    time.Time // last seqno request
	// needSeq: the last selection asked for a newer sequence number
	// (an entry it may not use); tick asks again, every askBack, doubling
	// up to maxAskBack, until one comes (a request or its answer can be
	// lost, and refreshes that would select again are minutes apart).
	needSeq bool
	askBack time.Duration
	// wants: neighbours that asked us for a sequence number of this
	// origin we did not have; they get the entry, and no one else, when
	// it comes (answerWantsLocked).
	wants   []seqWant
	refresh // when it goes to the neighbours again (refresh.go)
}

// seqWant is a neighbour's request for at least seq of an origin, made at.
type seqWant struct {
	nb  *neighbour
	seq uint64
	at  time.Time
}

// linkQuality measures how many hellos of a neighbour arrive.
type linkQuality struct {
	cur  uint32  // hellos in the current interval
	ewma float64 // hellos per interval, smoothed
	din  float64 // fraction of its hellos we hear
	dout float64 // fraction of our hellos it hears (its IHU)
	sent uint8   // the IHU it last had from us (255 at first, as it assumes)
	cost uint32  // the cost in use; moves only on a clear change
	want uint32  // the cost the last ticks pointed to, when not cost
	for_ int     // ticks in a row that pointed to want
	age  int     // ticks since the neighbour came up
}

// costThresholds are the two-way delivery ratios (d_in * d_out) below
// which a link falls into the next cost class; class k costs 256 << k.
var costThresholds = []float64{0.75, 0.55, 0.35, 0.2}

// costHysteresis is how far past a threshold d must go to change class.
const costHysteresis = 0.02

// costSettle is how many hello intervals in a row d must stay in another
// class before the cost moves there: d is an estimate from a few hellos,
// and a link at steady loss crosses a bound now and then by chance. Each
// move changes the metric of every route through the link, and a metric
// that grows makes routes downstream unfeasible until the origin answers
// a sequence number request.
const costSettle = 6

// qualityWarmup: for this many hello intervals after a neighbour came up
// (1/qualityAlpha, the average's memory) its link moves only to a cost
// class two or more below (d under 0.55), not one. Hellos missed at the
// start (those of the handshake are not counted, and a mesh starting up
// delays them) weigh in the young average as much as steady loss: in
// BenchmarkMesh500 links read d = 0.69 at their twelfth interval, doubled
// their cost, and back at the twenty-second, each move changing the metric
// of every route through them and asking their origins for sequence
// numbers.
const qualityWarmup = 16

// update, once per hello interval, moves the link to another cost class
// when the delivery ratio has clearly left its class for costSettle
// intervals, so that loss at a steady rate does not make the cost (and with
// it every route through the link) flap. It reports whether the cost
// changed.
func (q *linkQuality) update() bool {
	d := q.din * q.dout
	k := 0
	for k < len(costThresholds) && d < costThresholds[k] {
		k++
	}
	cur := 0
	for uint32(256)<<cur < q.cost {
		cur++
	}
	switch {
	case q.cost == 0:
	case k > cur && d < costThresholds[k-1]-costHysteresis && (q.age >= qualityWarmup || k >= 2):
	case k < cur && d > costThresholds[cur-1]+costHysteresis:
	default:
		q.want, q.for_ = 0, 0
		return false
	}
	if q.cost != 0 {
		if q.want != 256<<k {
			q.want, q.for_ = 256<<k, 0
		}
		if q.for_++; q.for_ < costSettle {
			return false
		}
	}
	q.cost = 256 << k
	q.want, q.for_ = 0, 0
	return true
}

// router is the routing state of a node. A method named …Locked is called
// with r.mu held; one that the caller calls with the node's n.mu held says
// so in its name (…UnderNodeMu). n.mu is taken before r.mu.
type router struct {
	n *Node

	mu      sync.Mutex
	routes  map[identity.SID]*route                 // guarded by mu
	adverts map[*neighbour]map[identity.SID]*advert // guarded by mu
	quality map[*neighbour]*linkQuality             // guarded by mu
	sentSeq map[*neighbour]map[identity.SID]uint64  // signatures each neighbour has; guarded by mu
	selfSeq uint64                                  // guarded by mu
	selfSig [identity.SignatureLen]byte             // guarded by mu
	ticks   int                                     // guarded by mu
	// Periodic refresh (refresh.go) and re-origination, in ticks
	// (dumpInterval): the interval, the hold our messages carry, the
	// next refresh and our own entry's.
	dumpTicks, holdTicks, nextDump int     // guarded by mu
	ahead                          int     // the furthest refresh due at the last one, ticks; guarded by mu
	self                           refresh // guarded by mu
	// The tick we last issued a sequence number at and the factor the
	// origin period is taken by until the next (originJitter).
	lastOrigin   int                              // guarded by mu
	originFactor float64                          // guarded by mu
	hold         atomic.Uint32                    // the Hold our messages carry, s
	lastBump     time.Time                        // guarded by mu
	pending      bool                             // a triggered update is due; guarded by mu
	changed      bool                             // a route appeared or moved; guarded by mu
	requests     []wire.SeqRequest                // to send; guarded by mu
	reqTo        map[*neighbour][]wire.SeqRequest // requests forwarded to one neighbour; guarded by mu
	answerTo     map[*neighbour]map[*route]bool   // entries one neighbour asked for (answerLocked); guarded by mu
	tableDue     map[*neighbour]bool              // gets our full table at the next tick with room (refusedFrame); guarded by mu
	repaired     map[*neighbour]int               // the tick it last got one so; guarded by mu
	wantServed   map[*neighbour]int               // the tick its WantTable was last honoured (wantEvery); guarded by mu
	wantLater    map[*neighbour]bool              // a WantTable to honour when wantEvery allows; guarded by mu
	dropped      map[identity.SID]time.Time       // neighbours dropped lately, when; guarded by mu

	// Next hops that did not carry traffic (avoid.go).
	failing           map[failKey]*failMark // guarded by mu
	failHold          time.Duration         // the first hold of a mark; guarded by mu
	now               func() time.Time      // the clock of marks; guarded by mu (tests replace it)
	failMarks         uint64                // marks made; guarded by mu
	noProgressIgnored uint64                // reports that marked nothing; guarded by mu
}

func newRouter(n *Node) *router {
	r := &router{
		n:          n,
		routes:     map[identity.SID]*route{},
		adverts:    map[*neighbour]map[identity.SID]*advert{},
		quality:    map[*neighbour]*linkQuality{},
		sentSeq:    map[*neighbour]map[identity.SID]uint64{},
		tableDue:   map[*neighbour]bool{},
		repaired:   map[*neighbour]int{},
		wantServed: map[*neighbour]int{},
		wantLater:  map[*neighbour]bool{},
		dropped:    map[identity.SID]time.Time{},
		reqTo:      map[*neighbour][]wire.SeqRequest{},
		answerTo:   map[*neighbour]map[*route]bool{},

		failing:  map[failKey]*failMark{},
		failHold: failHold,
		now:      time.Now,

		dumpTicks: dumpEvery, nextDump: 1 + rand.IntN(dumpEvery), originFactor: originJitter(),
	}
	r.setHoldLocked(dumpEvery)
	r.originate(uint64(time.Now().UnixNano()))
	return r
}

// originate issues sequence number seq for this node. Called with r.mu held
// (or before the router is shared).
func (r *router) originate(seq uint64) {
	r.selfSeq = seq
	copy(r.selfSig[:], r.n.id.Sign(wire.SignedOrigin(r.n.sid, seq)))
}

// neighbourUpUnderNodeMu starts routing state for a neighbour that just
// appeared. The caller holds n.mu (the node's lock, taken before r.mu), so
// that it runs in the order neighbours come and go.
func (r *router) neighbourUpUnderNodeMu(nb *neighbour) {
	r.mu.Lock()
	r.adverts[nb] = map[identity.SID]*advert{}
	q := &linkQuality{din: 1, dout: 1, ewma: 1, sent: 255}
	q.update()
	r.quality[nb] = q
	r.sentSeq[nb] = map[identity.SID]uint64{}
	// Taken back after we dropped it: it may have kept us all along and
	// think we still have what it said, so ask for its table. A neighbour
	// new to us sends its table of itself, as we do.
	_, again := r.dropped[nb.sid]
	delete(r.dropped, nb.sid)
	r.mu.Unlock()
	r.sendTable(nb, true, again, routeTable)
}

// neighbourDownUnderNodeMu forgets a neighbour that was dropped and moves
// the routes through it. The caller holds n.mu (taken before r.mu).
func (r *router) neighbourDownUnderNodeMu(nb *neighbour) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.adverts, nb)
	delete(r.quality, nb)
	delete(r.sentSeq, nb)
	delete(r.tableDue, nb)
	delete(r.repaired, nb)
	delete(r.wantServed, nb)
	delete(r.wantLater, nb)
	delete(r.reqTo, nb)
	delete(r.answerTo, nb)
	if len(r.dropped) < maxDropped {
		r.dropped[nb.sid] = time.Now()
	}
	for _, rt := range r.routes {
		if rt.via == nb {
			r.recomputeLocked(rt)
		}
	}
}

// helloHeard counts a unicast hello from nb for link quality.
func (r *router) helloHeard(nb *neighbour) {
	r.mu.Lock()
	if q := r.quality[nb]; q != nil {
		q.cur++
	}
	r.mu.Unlock()
}

// costLocked is the cost of the link to nb. Called with r.mu held.
func (r *router) costLocked(nb *neighbour) uint32 {
	q := r.quality[nb]
	if q == nil {
		return math.MaxUint16
	}
	return q.cost
}

// linkInfo returns the measured delivery ratio and cost of the link to nb.
func (r *router) linkInfo(nb *neighbour) (float64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if q := r.quality[nb]; q != nil {
		return q.din * q.dout, int(q.cost)
	}
	return 0, 0
}

// hasRoute reports whether routing knows a next hop towards sid. It takes
// r.mu, so the caller may hold n.mu.
func (r *router) hasRoute(sid identity.SID) bool {
	nb, _ := r.lookup(sid)
	return nb != nil
}

func (r *router) lookup(sid identity.SID) (*neighbour, int) {
	r.mu.Lock()
	rt := r.routes[sid]
	if rt != nil && rt.via != nil {
		nb, mtu := rt.via, rt.mtu
		r.mu.Unlock()
		return nb, min(mtu, int(nb.mtu.Load()))
	}
	r.mu.Unlock()
	return nil, 0
}

// nextHop returns the next hop towards sid and the path MTU, or nil. A
// neighbour is reached directly until routing knows better.
func (r *router) nextHop(sid identity.SID) (*neighbour, int) {
	if nb, mtu := r.lookup(sid); nb != nil {
		return nb, mtu
	}
	r.n.mu.RLock()
	nb := r.n.bySID[sid]
	r.n.mu.RUnlock()
	if nb == nil {
		return nil, 0
	}
	return nb, int(nb.mtu.Load())
}

// feasible reports whether an entry (seq, metric) may be selected.
func (rt *route) feasible(seq uint64, metric uint16) bool {
	if !rt.fdSet || seq > rt.fdSeq {
		return true
	}
	return seq == rt.fdSeq && uint32(metric) < rt.fdMetric
}

// recomputeLocked selects the best route to rt.origin. Called with r.mu held.
func (r *router) recomputeLocked(rt *route) {
	var best *neighbour
	var bestAd *advert
	bestM := uint32(math.MaxUint32)
	var curM uint32 = math.MaxUint32
	unfeasM := uint32(math.MaxUint32) // cheapest entry we may not select
	var keepAd *advert                // the current next hop's entry, grown unfeasible
	var keepM uint32
	now := r.now()
	avoiding := r.avoidingLocked(rt, now)
	defer r.answerWantsLocked(rt)
	asked := false // this selection needs a newer sequence number
	for nb, ads := range r.adverts {
		ad := ads[rt.origin]
		if !candidateLocked(rt, ad) {
			continue
		}
		if avoiding && r.avoidedLocked(rt.origin, nb, now) {
			continue // it did not carry traffic there (avoid.go)
		}
		m := min(uint32(ad.metric)+r.costLocked(nb), wire.MetricInfinity-1)
		if nb == rt.via && rt.feasible(ad.seq, ad.metric) {
			curM = m
		}
		if !rt.feasible(ad.seq, ad.metric) {
			unfeasM = min(unfeasM, m)
			if nb == rt.via {
				keepAd, keepM = ad, m
			}
			continue
		}
		if m < bestM || (m == bestM && nb == rt.via) {
			best, bestAd, bestM = nb, ad, m
		}
	}
	if rt.via != nil && curM != math.MaxUint32 && best != rt.via && best != nil && bestM*hysteresisQuarters/4 >= curM {
		// Stay on the current route: the other is not enough cheaper.
		best, bestM = rt.via, curM
		bestAd = r.adverts[rt.via][rt.origin]
	}
	if best == nil && keepAd != nil {
		// The next hop in use says its metric grew (a link behind it got
		// lossy or loaded), which makes its entry unfeasible. As babeld
		// does, keep using it with the larger metric, the feasibility
		// distance unchanged, and ask the origin for a newer sequence
		// number that makes it feasible again: retracting the route would
		// cut every stream through it until the answer came.
		best, bestAd, bestM = rt.via, keepAd, keepM
		asked = true
	}
	oldVia, oldM, oldMTU := rt.via, rt.metric, rt.mtu
	if best == nil {
		if rt.via != nil {
			rt.via = nil
			rt.lost = time.Now()
			rt.dirty = true
			r.pending = true
			r.n.stats.routeLost.Add(1)
		}
		// Ask for a newer sequence number when an entry exists we may not use.
		for _, ads := range r.adverts {
			if ad := ads[rt.origin]; ad != nil && ad.metric != wire.MetricInfinity {
				asked = true
				break
			}
		}
		r.needSeqLocked(rt, asked)
		return
	}
	// A clearly cheaper route that we may not take yet (our own metric
	// grew: a link got lossy): ask the origin for a newer sequence number,
	// which makes it feasible (RFC 8966 3.8.2.2). Without this the route
	// would stay on the worse path until the origin's next periodic one.
	if unfeasM != math.MaxUint32 && unfeasM*hysteresisQuarters/4 < bestM {
		asked = true
	}
	r.needSeqLocked(rt, asked)
	rt.via, rt.metric = best, bestM
	rt.hops = int(bestAd.hops) + 1
	rt.mtu = min(bestAd.mtu, int(best.mtu.Load()))
	if !rt.fdSet || bestAd.seq > rt.fdSeq {
		rt.fdSeq, rt.fdMetric, rt.fdSet = bestAd.seq, bestM, true
	} else if bestM < rt.fdMetric {
		rt.fdMetric = bestM
	}
	// A newer sequence number alone is not news for every neighbour:
	// those that asked for it get it (answerWantsLocked), the others with
	// the entry's next refresh. Flooding it, each answered request cost
	// every node of the mesh the entry and its signature for every
	// neighbour (BenchmarkMesh500: 150 requests after 6 link cost changes,
	// 2.5 KB/s a node for 20 s).
	if oldVia != best || changedEnough(oldM, bestM) || rt.mtu != oldMTU {
		rt.dirty = true
		r.pending = true
	}
	if oldVia != best {
		r.changed = true
	}
}

// needSeqLocked records whether rt's selection needs a newer sequence
// number, and asks for one now (askSeqLocked) if it does. Called with
// r.mu held.
func (r *router) needSeqLocked(rt *route, need bool) {
	if !need {
		rt.needSeq, rt.askBack = false, 0
		return
	}
	if !rt.needSeq {
		rt.needSeq, rt.askBack = true, firstAskBack
	}
	r.askSeqLocked(rt)
}

// askAgainLocked asks again for the routes that still need a newer
// sequence number, each at most every askBack, doubling, and forgets the
// neighbours' requests older than wantHold (tick). Called with r.mu held.
func (r *router) askAgainLocked(now time.Time) {
	for _, rt := range r.routes {
		r.answerWantsLocked(rt)
		if rt.needSeq && now.Sub(rt.asked) >= rt.askBack {
			r.askSeqLocked(rt)
			rt.askBack = min(2*rt.askBack, maxAskBack)
		}
	}
}

// wantLocked remembers that from asked for at least seq of rt's origin,
// which we do not have yet: it gets the entry when it comes. One per
// neighbour. Called with r.mu held.
func (r *router) wantLocked(rt *route, from *neighbour, seq uint64) {
	now := time.Now()
	for i := range rt.wants {
		if rt.wants[i].nb == from {
			rt.wants[i].seq, rt.wants[i].at = max(rt.wants[i].seq, seq), now
			return
		}
	}
	rt.wants = append(rt.wants, seqWant{from, seq, now})
}

// answerWantsLocked sends rt's entry to the neighbours that asked for a
// sequence number it now has, and forgets requests older than wantHold.
// Called with r.mu held.
func (r *router) answerWantsLocked(rt *route) {
	if len(rt.wants) == 0 {
		return
	}
	now := time.Now()
	rt.wants = slices.DeleteFunc(rt.wants, func(w seqWant) bool {
		switch {
		case now.Sub(w.at) > wantHold:
			return true
		case rt.via != nil && rt.via != w.nb && rt.seq >= w.seq:
			r.answerLocked(w.nb, rt)
			return true
		}
		return false
	})
}

// answerLocked sends rt's entry to nb alone with the next triggered
// update. Called with r.mu held.
func (r *router) answerLocked(nb *neighbour, rt *route) {
	if r.answerTo[nb] == nil {
		r.answerTo[nb] = map[*route]bool{}
	}
	r.answerTo[nb][rt] = true
	r.pending = true
}

// askSeqLocked asks the origin of rt for a sequence number newer than the
// feasibility distance's, at most every 500 ms per origin (r.mu held).
func (r *router) askSeqLocked(rt *route) {
	if time.Since(rt.asked) <= 500*time.Millisecond {
		return
	}
	rt.asked = time.Now()
	r.requests = append(r.requests, wire.SeqRequest{Origin: rt.origin, Seq: rt.fdSeq + 1, HopsLeft: 32})
	r.pending = true
}

// changedEnough reports a metric change worth telling neighbours at once.
func changedEnough(a, b uint32) bool {
	d := int64(a) - int64(b)
	if d < 0 {
		d = -d
	}
	return d*8 > int64(a)
}

// receive hands a routing message from neighbour nb to the verifier (read
// loop; it copies payload). Messages keep their order there.
func (r *router) receive(nb *neighbour, payload []byte) {
	p := append([]byte(nil), payload...)
	if !r.n.verifier.submit(len(p), func() { r.receiveNow(nb, p) }) {
		r.n.stats.verifyQueueDrops.Add(1)
	}
}

// minHopCost is the least cost of a link: an entry for a node other than
// the neighbour itself cannot be cheaper.
const minHopCost = 256

// receiveNow handles a routing message from neighbour nb (verifier).
// Cheap checks come first (plausible metric, caps, the rate of new origins,
// the cache of failed signatures, the neighbour's signature budget); only
// what passes them costs a signature check, outside the lock.
func (r *router) receiveNow(nb *neighbour, payload []byte) {
	var m wire.RouteMsg
	if err := wire.ParseRouteMsg(payload, &m); err != nil {
		r.n.stats.malformed.Add(1)
		return
	}
	st := &r.n.stats
	const (
		check = iota
		ok
		skip
	)
	state := make([]uint8, len(m.Entries))
	keys := make([][32]byte, len(m.Entries))
	r.mu.Lock()
	ads := r.adverts[nb]
	if ads == nil { // the neighbour went away meanwhile
		r.mu.Unlock()
		return
	}
	fresh := 0 // origins this message introduces
	for i := range m.Entries {
		e := &m.Entries[i]
		rt := r.routes[e.Origin]
		switch {
		case e.Origin == r.n.sid:
			state[i] = skip
			continue
		case e.Origin != nb.sid && e.Metric != wire.MetricInfinity && (e.Hops == 0 || e.Metric < minHopCost):
			// Cheaper than the link to us allows: a neighbour pulling
			// traffic towards itself with someone else's entry.
			st.implausibleRoute.Add(1)
			state[i] = skip
			continue
		case rt == nil && !e.HasSig:
			// Nothing proves this origin exists. The neighbour thinks we
			// had its signature: the message that carried it was lost
			// here (the verifier's queue was full). Ask it again, or the
			// origin stays unknown until the entry's next refresh with
			// signatures (sigEvery refreshes).
			if e.Metric != wire.MetricInfinity && len(r.routes) < r.n.cfg.MaxRoutes && len(ads) < r.n.cfg.MaxRoutesPerNeighbour {
				r.reqTo[nb] = append(r.reqTo[nb], wire.SeqRequest{Origin: e.Origin, Seq: e.Seq, HopsLeft: 1})
				r.pending = true
			}
			state[i] = skip
			continue
		case ads[e.Origin] == nil && len(ads) >= r.n.cfg.MaxRoutesPerNeighbour,
			rt == nil && len(r.routes)+fresh >= r.n.cfg.MaxRoutes:
			st.routeCap.Add(1)
			state[i] = skip
			continue
		case rt == nil && !nb.originBucket.Take():
			st.newOriginLimited.Add(1)
			state[i] = skip
			continue
		}
		if rt == nil {
			fresh++
		}
		// Nothing to verify: no signature, one verified before, or an
		// older sequence number than one verified (the origin exists, and
		// an older number only makes the entry less feasible).
		if !e.HasSig || (rt != nil && (e.Seq < rt.seq || rt.seq == e.Seq && rt.sig == e.Sig)) {
			state[i] = ok
		}
	}
	r.mu.Unlock()
	// Verify signatures outside the lock; they are the expensive part.
	for i := range m.Entries {
		e := &m.Entries[i]
		if state[i] != check {
			continue
		}
		keys[i] = sha256.Sum256(append(wire.SignedOrigin(e.Origin, e.Seq), e.Sig[:]...))
		switch {
		case r.n.badSigs.has(keys[i]):
			st.badSigCached.Add(1)
			state[i] = skip
		case !nb.verifyBucket.Take():
			st.verifyLimited.Add(1)
			state[i] = skip
		case identity.Verify(e.Origin, wire.SignedOrigin(e.Origin, e.Seq), e.Sig[:]):
			state[i] = ok
		default:
			r.n.badSigs.add(keys[i])
			st.badRoute.Add(1)
			state[i] = skip
		}
	}
	now, hold := time.Now(), r.holdOf(&m)
	r.mu.Lock()
	ads = r.adverts[nb]
	if ads == nil { // the neighbour went away meanwhile
		r.mu.Unlock()
		return
	}
	if q := r.quality[nb]; q != nil && m.HasIHU {
		q.dout = max(float64(m.IHU)/255, 0.01) // the next tick weighs it
	}
	if m.WantTable {
		// It has just taken us as a neighbour, maybe again after dropping
		// us while we kept it: what we sent it before is gone there.
		r.wantTableLocked(nb)
	}
	for i := range m.Entries {
		e := &m.Entries[i]
		if state[i] != ok {
			continue // forged, implausible or over a bound: changes nothing
		}
		if ads[e.Origin] == nil && len(ads) >= r.n.cfg.MaxRoutesPerNeighbour {
			st.routeCap.Add(1)
			continue
		}
		rt := r.routes[e.Origin]
		if rt == nil {
			if !e.HasSig || len(r.routes) >= r.n.cfg.MaxRoutes {
				continue // nothing proves this origin exists, or no room
			}
			rt = &route{origin: e.Origin}
			r.routes[e.Origin] = rt
		}
		if e.Seq > rt.seq {
			if !e.HasSig {
				// A newer sequence number needs its signature: the
				// neighbour thinks we have it (the message that carried
				// it was lost here). Ask it again, as for an origin we
				// do not know.
				r.reqTo[nb] = append(r.reqTo[nb], wire.SeqRequest{Origin: e.Origin, Seq: e.Seq, HopsLeft: 1})
				r.pending = true
				continue
			}
			rt.seq, rt.sig = e.Seq, e.Sig
		}
		if e.Seq < rt.fdSeq && rt.fdSet {
			r.n.stats.staleRoute.Add(1)
		}
		ads[e.Origin] = &advert{seq: e.Seq, metric: e.Metric, hops: e.Hops, mtu: max(int(e.MTU), baseMTU), at: now, hold: hold}
		r.recomputeLocked(rt)
	}
	for _, q := range m.Requests {
		r.handleRequestLocked(nb, q)
	}
	r.unlockAndNotify()
}

// wantTableLocked honours nb's WantTable: its full table, every
// signature in it, at the next tick with room; at most every wantEvery
// ticks, later if sooner (a neighbour that set the flag on every message
// would otherwise get a table with every signature each repairEvery
// ticks, far over dumpBudget). Before, once per neighbour entry: a
// neighbour that dropped us twice while we kept it never got our table
// the second time, and lacked our routes until their refresh, minutes
// away in BenchmarkMesh500. Called with r.mu held.
func (r *router) wantTableLocked(nb *neighbour) {
	if t, ok := r.wantServed[nb]; ok && r.ticks-t < wantEvery {
		r.wantLater[nb] = true
		return
	}
	delete(r.wantLater, nb)
	r.wantServed[nb] = r.ticks
	clear(r.sentSeq[nb])
	r.tableDue[nb] = true
}

// unlockAndNotify releases r.mu, then asks for a triggered update and
// wakes those waiting for a route change, as the changes made under the
// lock need.
func (r *router) unlockAndNotify() {
	kick, changed := r.pending, r.changed
	r.changed = false
	r.mu.Unlock()
	if kick {
		r.n.kickRouter()
	}
	if changed {
		r.n.notifyChanged()
	}
}

// handleRequestLocked answers or forwards a seqno request. Called with r.mu held.
func (r *router) handleRequestLocked(from *neighbour, q wire.SeqRequest) {
	if s := r.sentSeq[from]; s != nil && s[q.Origin] >= q.Seq {
		// It asks for what we think it has: the signature was lost on
		// the way in. The answer carries it again.
		delete(s, q.Origin)
		r.pending = true
	}
	if q.Origin == r.n.sid {
		if q.Seq > r.selfSeq && time.Since(r.lastBump) > 200*time.Millisecond {
			r.lastBump = time.Now()
			r.originate(max(q.Seq, uint64(time.Now().UnixNano())))
			r.pending = true
		}
		return
	}
	rt := r.routes[q.Origin]
	if rt == nil {
		return
	}
	if rt.seq >= q.Seq && rt.via != nil {
		r.answerLocked(from, rt) // we can answer: tell it what we have
		return
	}
	r.wantLocked(rt, from, q.Seq)
	if rt.via != nil && rt.via != from && q.HopsLeft > 1 {
		q.HopsLeft--
		r.reqTo[rt.via] = append(r.reqTo[rt.via], q)
		r.pending = true
	}
}

// tick runs once per hello interval: link quality, IHU, periodic refresh,
// expiry, periodic re-origination.
func (r *router) tick() {
	nbs := r.n.neighbours()
	for _, nb := range nbs {
		nb.link.decay()
	}
	now := time.Now()
	r.mu.Lock()
	r.ticks++
	recompute := false
	for _, q := range r.quality {
		q.ewma += qualityAlpha * (float64(min(q.cur, 2)) - q.ewma)
		q.cur = 0
		q.din = min(max(q.ewma, 0.01), 1)
		q.age++
		recompute = q.update() || recompute
	}
	if recompute {
		for _, rt := range r.routes {
			r.recomputeLocked(rt)
		}
	}
	for nb, ads := range r.adverts {
		for o, ad := range ads {
			if now.Sub(ad.at) > ad.hold {
				delete(ads, o)
				if rt := r.routes[o]; rt != nil && rt.via == nb {
					r.recomputeLocked(rt)
				}
			}
		}
	}
	r.expireMarksLocked(r.now())
	r.askAgainLocked(now)
	for nb := range r.wantLater {
		if r.ticks-r.wantServed[nb] >= wantEvery {
			r.wantTableLocked(nb)
		}
	}
	for sid, at := range r.dropped {
		if now.Sub(at) > droppedHold {
			delete(r.dropped, sid)
		}
	}
	for o, rt := range r.routes {
		if rt.via == nil && !rt.lost.IsZero() && now.Sub(rt.lost) > sourceHold {
			delete(r.routes, o)
		}
	}
	r.dumpTicks = r.dumpInterval(len(nbs))
	r.setHoldLocked(max(r.dumpTicks, r.ahead))
	// The period is taken from the interval of now, so that it grows with
	// the table (the first one too: a mesh whose nodes started together
	// would otherwise all issue one at the same tick).
	if r.ticks >= r.lastOrigin+int(float64(max(originEvery, originDumps*r.dumpTicks))*r.originFactor) {
		r.originate(max(r.selfSeq+1, uint64(now.UnixNano())))
		r.lastOrigin, r.originFactor = r.ticks, originJitter()
	}
	refresh := r.refreshLocked(now)
	due := map[*neighbour]bool{}
	for nb := range r.tableDue {
		// At most every repairEvery ticks: a link that keeps giving
		// frames up must not get a table every tick.
		if last, ok := r.repaired[nb]; (!ok || r.ticks-last >= repairEvery) && nb.link.controlRoom() {
			due[nb] = true
			delete(r.tableDue, nb)
			r.repaired[nb] = r.ticks
		}
	}
	r.unlockAndNotify()
	if len(refresh) > 0 {
		r.sendRefresh(nbs, refresh) // with an IHU to each
	}
	for _, nb := range nbs {
		switch {
		case due[nb]:
			r.sendTable(nb, false, false, routeRepair)
		case len(refresh) == 0:
			r.sendIHU(nb)
		}
	}
}

// originJitter is the random factor, from 0.5 to 1.5, a node takes its
// origin period by: nodes that started together spread their sequence
// numbers over the period instead of flooding the mesh in the same tick.
func originJitter() float64 { return 0.5 + rand.Float64() }

// refusedFrame is called when nb's link refused a routing frame carrying
// entries (its queue was full: the link has long been shut), or gave one
// up after MaxAttempts (entries nil: which ones is not known). Entries are
// idempotent and the full table has them all, so nb gets one as soon as
// its queue is empty (tick; at most every repairEvery ticks), with the
// signatures the lost frame carried (all of them, if unknown): otherwise nb
// would miss those routes until the next full table with signatures,
// which in a large mesh is minutes away.
func (r *router) refusedFrame(nb *neighbour, entries []wire.RouteEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.sentSeq[nb]
	if s == nil {
		return // gone
	}
	if entries == nil {
		clear(s)
	}
	for _, e := range entries {
		if e.HasSig && s[e.Origin] == e.Seq {
			delete(s, e.Origin)
		}
	}
	r.tableDue[nb] = true
}

// dumpInterval is the refresh interval in hello intervals: dumpEvery, or
// more when refreshing the whole table to nbs neighbours that often would
// cost more than dumpBudget bytes a second. It may grow at once with the
// table: each entry is due on the interval it was sent with (refresh.go).
// Called with r.mu held.
func (r *router) dumpInterval(nbs int) int {
	table := float64((len(r.routes) + 1) * wire.RouteEntryLen * nbs)
	want := int(math.Ceil(table / dumpBudget / r.n.cfg.HelloInterval.Seconds()))
	return max(want, dumpEvery)
}

// setHoldLocked sets the Hold our messages carry: 3.5 times ahead, the
// furthest any entry's refresh is due, in hello intervals. Called with r.mu
// held.
func (r *router) setHoldLocked(ahead int) {
	r.holdTicks = 3*ahead + ahead/2
	d := time.Duration(r.holdTicks) * r.n.cfg.HelloInterval
	r.hold.Store(uint32(min(math.Ceil(d.Seconds()), math.MaxUint16)))
}

// holdOf is how long entries heard in m live unrefreshed: its Hold, at most
// maxHold, at least advertHold intervals.
func (r *router) holdOf(m *wire.RouteMsg) time.Duration {
	return max(min(time.Duration(m.Hold)*time.Second, maxHold), advertHold*r.n.cfg.HelloInterval)
}

// flushTriggered sends routes marked dirty and pending requests to every
// neighbour (the router's triggered update).
func (r *router) flushTriggered() {
	nbs := r.n.neighbours()
	r.mu.Lock()
	if !r.pending {
		r.mu.Unlock()
		return
	}
	r.pending = false
	var dirty []*route
	for _, rt := range r.routes {
		if rt.dirty {
			rt.dirty = false
			dirty = append(dirty, rt)
		}
	}
	reqs := r.requests
	r.requests = nil
	inDirty := make(map[*route]bool, len(dirty)) // they go to every neighbour already
	for _, rt := range dirty {
		inDirty[rt] = true
	}
	reqTo, answerTo := r.reqTo, r.answerTo
	r.reqTo, r.answerTo = map[*neighbour][]wire.SeqRequest{}, map[*neighbour]map[*route]bool{}
	msgs := make([]*wire.RouteMsg, len(nbs))
	for i, nb := range nbs {
		m := &wire.RouteMsg{Requests: append(append([]wire.SeqRequest(nil), reqs...), reqTo[nb]...)}
		if r.selfBumpedFor(nb) {
			m.Entries = append(m.Entries, r.selfEntryLocked(nb))
		}
		for _, rt := range dirty {
			m.Entries = append(m.Entries, r.entryLocked(nb, rt, false))
		}
		for rt := range answerTo[nb] {
			if !inDirty[rt] {
				m.Entries = append(m.Entries, r.entryLocked(nb, rt, false))
			}
		}
		r.ihuLocked(nb, m)
		msgs[i] = m
	}
	now := time.Now()
	for _, rt := range dirty {
		r.sentAllLocked(&rt.refresh, now) // its refresh is an interval away
	}
	r.mu.Unlock()
	for i, nb := range nbs {
		if len(msgs[i].Entries) > 0 || len(msgs[i].Requests) > 0 {
			r.send(nb, msgs[i], routeTriggered)
		}
	}
}

// selfBumpedFor reports whether nb has not had our current sequence number.
// Called with r.mu held.
func (r *router) selfBumpedFor(nb *neighbour) bool {
	s := r.sentSeq[nb]
	return s != nil && s[r.n.sid] != r.selfSeq
}

// selfEntryLocked is our own origin entry. Called with r.mu held.
func (r *router) selfEntryLocked(nb *neighbour) wire.RouteEntry {
	if s := r.sentSeq[nb]; s != nil {
		s[r.n.sid] = r.selfSeq
	}
	return wire.RouteEntry{Origin: r.n.sid, Seq: r.selfSeq, Metric: 0, Hops: 0, MTU: maxDatagram, HasSig: true, Sig: r.selfSig}
}

// entryLocked is the entry for rt as nb should hear it: with poison reverse
// (infinite when nb is our next hop), and the signature when nb may lack it.
// Called with r.mu held.
func (r *router) entryLocked(nb *neighbour, rt *route, forceSig bool) wire.RouteEntry {
	e := wire.RouteEntry{Origin: rt.origin, Seq: rt.seq, Metric: wire.MetricInfinity, MTU: uint16(min(rt.mtu, maxDatagram))}
	if rt.via != nil && rt.via != nb {
		e.Metric = uint16(min(rt.metric, wire.MetricInfinity-1))
		e.Hops = uint8(min(rt.hops, 255))
	}
	if s := r.sentSeq[nb]; forceSig || s == nil || s[rt.origin] != rt.seq {
		e.HasSig, e.Sig = true, rt.sig
		if s != nil {
			s[rt.origin] = rt.seq
		}
	}
	return e
}

// ihuLocked adds to m how well nb's hellos arrive. Called with r.mu held.
func (r *router) ihuLocked(nb *neighbour, m *wire.RouteMsg) {
	if q := r.quality[nb]; q != nil {
		m.HasIHU, m.IHU = true, q.ihu()
		q.sent = m.IHU
	}
}

// ihu is din as an IHU byte.
func (q *linkQuality) ihu() uint8 { return uint8(math.Round(q.din * 255)) }

// sendTable sends nb every route we have (with every signature if sigs,
// else those nb lacks); want asks for nb's table in return.
func (r *router) sendTable(nb *neighbour, sigs, want bool, kind int) {
	r.mu.Lock()
	if r.adverts[nb] == nil {
		r.mu.Unlock()
		return
	}
	m := &wire.RouteMsg{WantTable: want}
	r.ihuLocked(nb, m)
	m.Entries = append(m.Entries, r.selfEntryLocked(nb))
	now := time.Now()
	for _, rt := range r.routes {
		if r.advertisedLocked(rt, now) {
			m.Entries = append(m.Entries, r.entryLocked(nb, rt, sigs))
		}
	}
	r.mu.Unlock()
	r.send(nb, m, kind)
}

// sendIHU tells nb how well its hellos arrive, if that moved by ihuStep
// since it last heard (full tables and triggered updates carry it too).
func (r *router) sendIHU(nb *neighbour) {
	r.mu.Lock()
	m := &wire.RouteMsg{}
	if q := r.quality[nb]; q != nil && absDiff(q.ihu(), q.sent) >= ihuStep {
		r.ihuLocked(nb, m)
	}
	r.mu.Unlock()
	if m.HasIHU {
		r.send(nb, m, routeIHU)
	}
}

// send writes m to nb in as many DATA frames as its MTU needs; kind (a
// route… constant) says why, for the counters.
func (r *router) send(nb *neighbour, m *wire.RouteMsg, kind int) {
	room := int(nb.mtu.Load()) - wire.DataHeaderLen - wire.RouteHeaderLen - len(m.Requests)*wire.SeqRequestLen
	entries := m.Entries
	for first := true; first || len(entries) > 0; first = false {
		part := *m
		part.Entries = nil
		part.Hold = uint16(r.hold.Load())
		used := 0
		for len(entries) > 0 {
			sz := wire.RouteEntryLen
			if entries[0].HasSig {
				sz += wire.RouteSigLen
			}
			if used+sz > room && len(part.Entries) > 0 {
				break
			}
			part.Entries = append(part.Entries, entries[0])
			entries = entries[1:]
			used += sz
		}
		if !first {
			part.Requests = nil
		}
		b := wire.AppendRouteMsg(nil, &part)
		r.n.stats.routeOut[kind].Add(uint64(wire.DataHeaderLen + len(b)))
		for _, e := range part.Entries {
			if e.HasSig {
				r.n.stats.routeSigOut.Add(wire.RouteSigLen)
			}
		}
		if r.n.sendLinkLocal(nb, RoutingPort, b) != nil {
			r.refusedFrame(nb, part.Entries)
		}
	}
}

// mtuChanged is called when a link's MTU changes. The routes through the
// link whose path MTU changed go to the neighbours at once, like a metric
// change: otherwise a path MTU raised by probing took one full table per
// hop to reach the far end (12 hello intervals each), and MSP sent
// base-MTU packets over a 1500-byte path meanwhile.
func (r *router) mtuChanged(nb *neighbour) {
	r.mu.Lock()
	for _, rt := range r.routes {
		if rt.via == nb {
			old := rt.mtu
			rt.mtu = min(rt.mtu, int(nb.mtu.Load()))
			if ad := r.adverts[nb][rt.origin]; ad != nil {
				rt.mtu = min(ad.mtu, int(nb.mtu.Load()))
			}
			if rt.mtu != old {
				rt.dirty = true
				r.pending = true
			}
		}
	}
	r.unlockAndNotify()
}

// Route is a reachable node and how it is reached.
type Route struct {
	SID     identity.SID
	NextHop identity.SID
	Hops    int
	Metric  int // path cost: 256 per clean hop, more for lossy ones
	MTU     int // largest frame along the path
}

// Routes lists every reachable node, nearest first.
func (n *Node) Routes() []Route {
	seen := map[identity.SID]bool{}
	var out []Route
	r := n.router
	r.mu.Lock()
	for _, rt := range r.routes {
		if rt.via == nil {
			continue
		}
		seen[rt.origin] = true
		out = append(out, Route{SID: rt.origin, NextHop: rt.via.sid, Hops: rt.hops, Metric: int(rt.metric), MTU: min(rt.mtu, int(rt.via.mtu.Load()))})
	}
	r.mu.Unlock()
	for _, nb := range n.Neighbours() {
		if !seen[nb.SID] {
			out = append(out, Route{SID: nb.SID, NextHop: nb.SID, Hops: 1, Metric: 256, MTU: nb.MTU})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hops != out[j].Hops {
			return out[i].Hops < out[j].Hops
		}
		return out[i].SID.String() < out[j].SID.String()
	})
	return out
}

// absDiff is |a - b|.
func absDiff(a, b uint8) uint8 { return max(a, b) - min(a, b) }
