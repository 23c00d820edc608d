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
// # Wire format
//
// The handshake (HELLO, REPLY and its refusal codes), the frames, how
// blocks are cut into shards and the rules above in full are in
// docs/PROTOCOL.md, section "Splitter"; the codecs are in internal/wire.
package splitter
