// Package arq is MSP's reliable, ordered, flow- and congestion-controlled
// byte stream carried in datagrams (the layer under smux and above the
// AEAD record layer). It sees plaintext packets only: Conn.Input for what
// arrives, Config.Output for what to send. Packets may be lost, duplicated,
// reordered or delayed.
//
// # Shape
//
// A Conn is a state machine guarded by one mutex plus one goroutine (the
// sender), which is the only caller of Output and sleeps on the only timer.
// Write copies into the send ring and pokes the sender; Input decodes,
// updates state, copies STREAM data into the receive ring, pokes readers,
// and pokes the sender only if it has something to send now (an ACK due at
// once, data the window now lets out, a Shutdown to finish); a deadline
// that moved earlier (a delayed ACK, a loss timer) is set on the sleeping
// sender's timer directly, under the mutex, so that it is not woken just
// to set it. Read copies out. Input never calls Output and never waits for
// the sender. Per packet
// the work is O(1) amortized: sent packets live in a ring indexed by packet
// number, interval sets (spans.go) hold received packet numbers, stream
// bytes received out of order, acknowledged and to-be-retransmitted stream
// bytes, and no structure is scanned per packet.
//
// # Design (QUIC-like)
//
//   - Every packet has a fresh packet number; lost data is re-sent in new
//     packets, re-cut to the current MaxPacket (SetMaxPacket takes effect
//     for the next packet built, retransmissions included).
//   - ACK frames list up to MaxAckRanges ranges (in a packet that carries
//     data, fewer, so the frame stays within about a quarter of it): the
//     highest range, the ranges of packets that arrived late (each listed
//     in lateReports frames, so that one lost ACK does not hide it), then
//     the next highest ranges the peer has not yet seen acknowledged (once
//     a packet carrying our ACK frame is acknowledged, ranges below its
//     largest are no longer repeated). The receiver acknowledges every 2nd
//     ack-eliciting packet, any out-of-order one at once, and otherwise
//     within 1 ms; ACKs ride on data packets whenever there are any.
//   - Loss detection is time based (RACK): a packet sent before the
//     largest acknowledged one is lost once it is older than that packet's
//     RTT plus a reordering window, reoWnd = clamp(k*minRTT/4, 1 ms,
//     4*srtt), k starting at 4 (one minRTT: the mesh below retransmits per
//     hop and passes later frames on meanwhile). There is no packet-count
//     threshold. An ACK for a packet already declared lost marks a
//     spurious loss: k grows by two (up to 32) and stays grown for 16 loss
//     episodes.
//   - A lost packet's data is resent at once, but its congestion response
//     waits half an srtt: only if the packet is still unacknowledged then
//     is cwnd cut (slow start stops growing at once, though). If every
//     loss of the latest episode turns out spurious, that episode's cut is
//     undone. Lost packets stay max(2 PTO, 8 srtt) in the sent queue, so
//     late ACKs are seen.
//   - A probe timeout, PTO = max(srtt + max(4*rttvar, 1 ms) + 1 ms,
//     5 ms + 2*rttvar), doubled per consecutive expiry (capped at 2 s),
//     sends two probes (the oldest unacknowledged data, or a PING) outside
//     cwnd; after 3 consecutive PTOs everything in flight is declared lost
//     and cwnd collapses to 2 packets. Initial RTT is 100 ms.
//   - Congestion control is CUBIC (RFC 9438, C = 0.4, beta = 0.7, with the
//     Reno-friendly region and fast convergence) in bytes, with slow start
//     from 10 packets, one reduction per episode (losses of packets sent
//     before the reduction do not reduce again), growth only on
//     acknowledgements of packets sent while at least half of cwnd was in
//     flight, and a minimum of 2 packets. When the minimum RTT of a round
//     exceeds the previous round's by clamp(prev/8, 4 ms, 16 ms), slow
//     start turns conservative (a quarter of the growth) and ends 3 rounds
//     later, so a deep queue is not filled to overflow; it resumes if the
//     RTT falls back meanwhile (HyStart++, RFC 9406).
//   - A pacer releases data packets at 2*cwnd/srtt in slow start and
//     1.25*cwnd/srtt after, with a bucket of 10 packets, so a large window
//     is not dumped into the mesh's queues at once. ACKs, probes and CLOSE
//     are not paced.
//   - Flow control: the receiver advertises MAX_DATA = bytes read +
//     RecvWindow with every ACK frame, and in a packet of its own when a
//     Read opened a quarter of the window. Before the first MAX_DATA each
//     side may send InitialWindow bytes. STREAM data beyond the largest
//     MAX_DATA sent is a protocol violation: dropped and counted. A sender
//     blocked by the window with nothing in flight sends a PING after a PTO
//     (backed off up to KeepAlive), whose ACK carries the current window.
//   - Keepalive: a PING when nothing was sent for KeepAlive. Nothing
//     received for IdleTimeout ends the Conn with ErrPeerGone.
//   - Closing: Close sends CLOSE(abort) once and ends at once (the peer
//     ends with ErrPeerAborted). Shutdown stops writes, waits until every
//     written byte is acknowledged, sends CLOSE(graceful) and waits for its
//     ACK (up to 3 transmissions, one per PTO); the peer, on any CLOSE,
//     sends a last ACK and ends: Read gives the data already received, then
//     io.EOF (graceful) or ErrPeerAborted (abort).
//
// Time: Config.Now stamps events; the one timer is the runtime's. Tests
// run pairs of Conns inside testing/synctest bubbles on virtual time.
//
// Bounds: the send ring holds at most SendBuffer bytes (Write blocks
// beyond), the receive ring at most RecvWindow bytes (rounded up to a power
// of two), out-of-order reassembly at most 1024 ranges (a packet whose data
// would need more is not acknowledged, so it comes again), received packet
// numbers at most 4096 ranges (older ones are no longer checked for
// duplicates and not acknowledged again), late packet numbers waiting to
// be reported at most 512, loss suspects waiting for their grace period at
// most 1024, cwnd at most 4*SendBuffer + 64 MiB.
//
// # Wire format
//
// The packet and frame layouts (varints, ACK ranges, frame order) are in
// docs/PROTOCOL.md, section "MSP stream layer"; the codec is wire.go.
package arq
