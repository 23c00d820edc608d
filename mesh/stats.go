package mesh

import "sync/atomic"

// counters are the node's packet counters; every field is updated atomically.
type counters struct {
	framesIn, framesOut      atomic.Uint64
	readErrors, writeErrors  atomic.Uint64
	malformed, unknownSource atomic.Uint64
	badHello, staleHello     atomic.Uint64
	retransmits, timeouts    atomic.Uint64
	fastRetransmits          atomic.Uint64
	abandoned                atomic.Uint64
	duplicates, beyondWindow atomic.Uint64
	delivered, relayed       atomic.Uint64
	portDrops, noPort        atomic.Uint64
	relayDrops, ttlExpired   atomic.Uint64
	noRoute, tooBig          atomic.Uint64
	badRoute, staleRoute     atomic.Uint64
	routeLost, controlOut    atomic.Uint64
	ackOut, late             atomic.Uint64

	cookiesOut, badCookie       atomic.Uint64
	untrusted, addrTaken        atomic.Uint64
	neighbourCap                atomic.Uint64
	verifyQueueDrops            atomic.Uint64
	verifyLimited, badSigCached atomic.Uint64
	newOriginLimited, routeCap  atomic.Uint64
	implausibleRoute            atomic.Uint64

	badMAC, unauthenticated atomic.Uint64
	replayed, moved         atomic.Uint64

	// What controlOut is made of, for the scale benchmarks (export_scale_test.go).
	helloOut, probeOut atomic.Uint64
	routeOut           [routeKinds]atomic.Uint64 // routing frames by cause
	routeSigOut        atomic.Uint64             // signature bytes in routing frames
}

// Causes of routing messages, counted apart in counters.routeOut.
const (
	routeTable     = iota // periodic full table (or the first one to a neighbour)
	routeRepair           // full table asked for or after a lost frame
	routeTriggered        // triggered update: changes and seqno requests
	routeIHU              // IHU alone
	routeKinds
)

// Stats is a snapshot of a node's counters.
type Stats struct {
	FramesIn, FramesOut      uint64 // datagrams read and written
	ReadErrors, WriteErrors  uint64 // socket errors
	Malformed                uint64 // frames that did not decode: dropped
	UnknownSource            uint64 // frames from an address that is not a neighbour: dropped
	BadHello, StaleHello     uint64 // hellos with a bad signature, or older than one seen: dropped
	Retransmits              uint64 // per-hop resends of DATA frames
	Timeouts                 uint64 // resends because a frame's timer ran out
	FastRetransmits          uint64 // frames declared lost because a later one arrived
	Abandoned                uint64 // frames given up after MaxAttempts
	Duplicates, BeyondWindow uint64 // DATA frames received twice, or too far ahead: dropped
	Delivered                uint64 // datagrams delivered to local ports
	Relayed                  uint64 // frames forwarded towards another node
	PortDrops                uint64 // datagrams dropped because a port's queue was full
	NoPort                   uint64 // datagrams for a port nobody has bound
	RelayDrops               uint64 // frames a relay dropped because the next hop's queue was full
	TTLExpired               uint64 // frames whose hop limit ran out
	NoRoute                  uint64 // frames with nowhere to go
	TooBig                   uint64 // frames larger than the next link's MTU
	BadRoute                 uint64 // routing entries with a bad signature: ignored
	StaleRoute               uint64 // routing entries older than the route known
	RoutesLost               uint64 // routes retracted for want of a feasible next hop
	ControlBytesOut          uint64 // bytes of hellos, MTU probes and routing messages sent
	AckBytesOut              uint64 // bytes of per-hop acknowledgements sent
	Late                     uint64 // datagrams dropped because their deadline passed (WriteToWithin)

	// Admission and bounds (docs/PROTOCOL.md, "Admission").
	CookiesSent      uint64 // COOKIEs sent: hellos without a valid echo, answered with nothing else
	BadCookie        uint64 // COOKIEs whose echo is none of our cookies: dropped
	Untrusted        uint64 // hellos from SIDs outside Config.Trust: dropped
	AddrTaken        uint64 // hellos of another SID from a neighbour's address: dropped
	NeighbourCap     uint64 // hellos of new nodes beyond MaxNeighbours: dropped
	VerifyQueueDrops uint64 // hellos and routing messages dropped because the verifier's queue was full
	VerifyLimited    uint64 // hellos, COOKIEs and route entries over a signature-check rate: dropped
	BadSigCached     uint64 // hellos and route entries whose bad signature was seen before: dropped
	NewOriginLimited uint64 // route entries for new origins over a neighbour's rate: dropped
	RouteCap         uint64 // route entries beyond MaxRoutes or MaxRoutesPerNeighbour: dropped
	ImplausibleRoute uint64 // route entries cheaper than one hop for a non-neighbour: ignored

	// Link authentication (docs/PROTOCOL.md, "Link keys").
	BadMAC          uint64 // authenticated frames from a neighbour's address whose key id or MAC is wrong: dropped
	Unauthenticated uint64 // DATA, ACK, SKIP and PROBEACK without a MAC from a neighbour's address: dropped
	Replayed        uint64 // authenticated frames whose counter was seen before (or is too old): dropped
	Moved           uint64 // neighbours moved to a new address by an authenticated frame from it
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	c := &n.stats
	return Stats{
		FramesIn: c.framesIn.Load(), FramesOut: c.framesOut.Load(),
		ReadErrors: c.readErrors.Load(), WriteErrors: c.writeErrors.Load(),
		Malformed: c.malformed.Load(), UnknownSource: c.unknownSource.Load(),
		BadHello: c.badHello.Load(), StaleHello: c.staleHello.Load(),
		Retransmits: c.retransmits.Load(), Timeouts: c.timeouts.Load(),
		FastRetransmits: c.fastRetransmits.Load(), Abandoned: c.abandoned.Load(),
		Duplicates: c.duplicates.Load(), BeyondWindow: c.beyondWindow.Load(),
		Delivered: c.delivered.Load(), Relayed: c.relayed.Load(),
		PortDrops: c.portDrops.Load(), NoPort: c.noPort.Load(),
		RelayDrops: c.relayDrops.Load(), TTLExpired: c.ttlExpired.Load(),
		NoRoute: c.noRoute.Load(), TooBig: c.tooBig.Load(),
		BadRoute: c.badRoute.Load(), StaleRoute: c.staleRoute.Load(),
		RoutesLost: c.routeLost.Load(), ControlBytesOut: c.controlOut.Load(),
		AckBytesOut: c.ackOut.Load(), Late: c.late.Load(),

		CookiesSent: c.cookiesOut.Load(), BadCookie: c.badCookie.Load(),
		Untrusted: c.untrusted.Load(), AddrTaken: c.addrTaken.Load(),
		NeighbourCap: c.neighbourCap.Load(), VerifyQueueDrops: c.verifyQueueDrops.Load(),
		VerifyLimited: c.verifyLimited.Load(), BadSigCached: c.badSigCached.Load(),
		NewOriginLimited: c.newOriginLimited.Load(), RouteCap: c.routeCap.Load(),
		ImplausibleRoute: c.implausibleRoute.Load(),

		BadMAC: c.badMAC.Load(), Unauthenticated: c.unauthenticated.Load(),
		Replayed: c.replayed.Load(), Moved: c.moved.Load(),
	}
}
