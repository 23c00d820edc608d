// Package memnet is an in-memory datagram network for tests and benchmarks.
//
// A [Network] hands out endpoints ([Conn], a full [net.PacketConn]) with
// fresh addresses ([Addr]). Every directed pair of endpoints is a link whose
// behaviour is set with [LinkConfig]: loss, one-way delay, jitter, reordering,
// duplication, a bandwidth limit with a bounded tail-drop queue, and a cut.
// All random decisions come from one generator seeded by [New], so a run with
// one sender is reproducible from its seed. Timing uses only time.Now and
// timers, so a Network also runs inside a testing/synctest bubble, where
// delays are exact and tests take no wall-clock time.
//
// A datagram written to a link goes through these steps, in order:
//
//  1. MTU: larger than [Network.SetMTU] is refused with an error matching
//     syscall.EMSGSIZE (counted as Oversize, not Sent).
//  2. Cut: dropped (CutDropped).
//  3. Bandwidth: serialized after the datagrams already queued on the link;
//     if that queue would exceed QueueBytes the datagram is tail-dropped
//     (QueueDropped). Lost datagrams use bandwidth, as on a real wire.
//  4. Loss: dropped with probability Loss (Lost).
//  5. Duplicate: with probability Duplicate a second copy is made
//     (Duplicated); the copy takes no extra bandwidth.
//  6. Each copy arrives after Delay, plus a uniform [0, Jitter) extra, plus
//     ReorderDelay with probability Reorder.
//  7. On arrival: dropped if the link is cut by then (CutDropped), if no
//     endpoint has the address (Unreachable) or if the receiver's queue is
//     full (Overflow); otherwise Delivered into the receive queue.
//
// A copy due at once (no delay, jitter, reorder hold or bandwidth limit) is
// in the receiver's queue when WriteTo returns. Without Jitter or Reorder a
// link keeps the order in which datagrams were written to it. Settings apply
// to datagrams written after the change; only Cut also affects those in
// flight.
//
// Once everything in flight has arrived, for every link
//
//	Sent + Duplicated == Delivered + Lost + CutDropped + QueueDropped +
//	                     InFlightDropped + Unreachable + Overflow
//
// A typical test:
//
//	n := memnet.New(seed)
//	defer n.Close()
//	a, b := n.Listen(), n.Listen()
//	n.SetLinkBoth(a.LocalAddr(), b.LocalAddr(), memnet.LinkConfig{
//		Loss: 0.1, Delay: 20 * time.Millisecond, Bandwidth: 1 << 20,
//	})
//	// hand a and b to the code under test as net.PacketConn
package memnet
