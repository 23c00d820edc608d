// Package splitter carries one reliable, ordered byte stream (a net.Conn)
// over N TCP connections, with Reed-Solomon forward error correction
// (github.com/klauspost/reedsolomon), so that a network that throttles,
// stalls or resets single TCP connections does not stop the stream.
//
// The client (Dial) opens every connection, so it works from behind NAT;
// the listener sends its direction over the same connections. One end's
// writes are cut into blocks of up to D*PayloadSize bytes; each block is
// split into D data shards plus P parity shards (a short block, sealed
// because a connection was idle, into fewer of both); shards are spread over
// the connections and the block is rebuilt at the far end from as many of
// them as it has data shards,
// then delivered in order. Blocks are kept by the sender until the receiver
// acknowledges them; a block that parity cannot rebuild is asked for again,
// never skipped. Both directions work alike; CloseWrite ends one direction
// (the peer reads io.EOF) while the other goes on.
//
// # Timers and bounds
//
// ReorderWindow bounds the blocks each end holds for reassembly and keeps
// for re-sending (memory about 2*ReorderWindow*(D+P)/D per end, whatever
// the stream length); a writer blocks while the peer's window is full.
// MaxHold is how long a receiver waits for missing shards of a block
// before re-requesting them. ConnWindow bounds the bytes in flight on one
// connection; a connection whose acknowledgements stop for MaxHold is
// "suspect": it gets no new shards and its unacknowledged shards that
// parity cannot cover are sent again on others; after StallTimeout it is
// closed (and re-opened by the client with back-off, within MaxConns and
// DialsPerSecond). A session with no connection for PeerTimeout fails with
// ErrPeerTimeout.
//
// # Wire format (protocol version 1)
//
// All integers are big-endian. Reserved bytes are sent as zero and must be
// zero.
//
// Handshake. The client opens a TCP connection and sends a HELLO; the
// listener answers with a REPLY; after an OK the connection carries frames.
//
//	HELLO   "SPLT" | version u8 | kind u8 | body length u16 | body
//	  kind 1 NEW:  D u8 | P u8 | reserved u16 | payload size u32 | window u32
//	  kind 2 JOIN: D u8 | P u8 | reserved u16 | payload size u32 | window u32
//	               | session id u64 | token [16]
//	REPLY   "SPLT" | version u8 | status u8 | body length u16 | body
//	  status 0 OK:      session id u64 | token [16] | window u32
//	  status 1 REFUSED: code u8 | D u8 | P u8 | reserved u16 | payload size u32 | reason (rest)
//
// D:P is 0:0 when FEC is off (one shard per block). window is the number
// of blocks the sender of the message accepts beyond what its reader has
// consumed (the peer's initial send limit). The listener picks a random
// session id and a random 16-byte token; a JOIN must present both (the
// token is compared in constant time). D, P, payload size and version must
// be equal: otherwise the listener answers REFUSED with code 1 (version),
// 2 (fec) or 3 (payload size) and its own values, so that both ends can
// name the parameter, e.g. "splitter: peer refused: fec mismatch: local
// 10:3, peer 8:2". Other codes: 4 unknown session, 5 bad token, 6 session
// full (MaxConns), 7 busy (accept backlog full), 8 malformed hello, 9
// listener closing. The REFUSED layout is the same in every version.
//
// Frames. Every frame has an 8-byte header:
//
//	type u8 | reserved [3] | body length u32 | body
//
//	1 DATA    block u64 | offset u64 | data length u32 | index u8 | flags u8 | reserved u16 | shard
//	2 ACK     cum u64 | limit u64 | flags u8 | reserved [3]
//	3 NACK    count u16 | bitmap length u8 | reserved u8 | count * (block u64 | bitmap)
//	4 TAIL    next u64 | end offset u64 | flags u8 | reserved [3]
//	5 PING    (empty)
//	6 LANEACK bytes u64
//	7 CLOSE   code u8 | reason length u8 | reserved [6] | next u64 | end offset u64 | reason
//
// DATA carries shard index (0..d-1 data, d..d+p-1 parity) of block number
// block (from 0, 64 bits: no wrap), whose first byte is at stream offset
// offset and which holds data length (1..D*payload size) stream bytes. A
// full block has d = D, p = P; a shorter one d = min(max(ceil(data length /
// payload size), 1), D) and p = ceil(P*d/D), so that a small write is a
// few frames (both ends derive d and p from data length).
// Every shard of a block is ceil(data length/d) bytes: the data is laid
// out contiguously over the d data shards and zero-padded, the parity is
// computed over the padded shards. Flag 1 marks a re-sent shard. A receiver
// rejects a block beyond its window or beyond the end of stream, and shards
// of one block that disagree on length or offset (protocol error: the
// session fails).
//
// ACK is cumulative: the receiver holds every block below cum; the sender
// may send blocks below limit (limit - blocks consumed by the reader is
// the receiver's window). Flag 1: the receiver has seen the end of stream.
// ACKs are sent when cum advances, when the window opened by a quarter,
// on every TAIL, and when stale.
//
// NACK lists, for blocks the receiver knows of (a later block's shard or a
// TAIL named them) that are still incomplete MaxHold after their last
// shard arrived (and again every MaxHold), a bitmap of the shards it holds
// (bit i, LSB first in byte i/8, is shard i; bitmap length
// ceil((D+P)/8); at most 64 entries). The sender then sends enough of the
// missing shards, data first, to make D, skipping shards still in flight
// on a connection that makes progress.
//
// TAIL tells the receiver how far the sender has got: blocks below next
// exist, the stream is at end offset. Flag 1 (FIN): the stream ends there
// (CloseWrite); flag 2 (PROBE): sent because acks stopped for MaxHold,
// so blocks below next that the receiver never heard of are overdue. A
// TAIL is always answered with an ACK (and NACKs where due). The sender
// probes while it waits for acks (unacknowledged blocks, unacknowledged
// FIN, or a full window).
//
// Per connection: every frame except LANEACK and CLOSE counts, header
// included, toward the connection's byte count. The receiving end answers
// with LANEACK (total bytes read on this connection) after every
// ConnWindow/4 bytes, after a PING, and on its timer. The sender keeps at
// most ConnWindow bytes unacknowledged per connection and sends PING on a
// connection idle for KeepAlive. ACK, NACK and TAIL may travel on any
// connection; the sender of them prefers connections that are not suspect.
//
// CLOSE ends the session. Code 0 (normal): the sender called Close after
// its data was acknowledged; next and end offset say where its stream
// ended, so the receiver's Read returns the data and then io.EOF. Code 1:
// the session failed (reason says why); 2: listener busy; 3: shutting
// down. The receiver's Read then returns the data it holds and
// ErrPeerClosed.
package splitter
