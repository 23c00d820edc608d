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
	ackOut                   atomic.Uint64
}

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
		AckBytesOut: c.ackOut.Load(),
	}
}
