// Package wire encodes and decodes mesh frames: the bytes of one UDP datagram
// between two neighbouring nodes. Every decoder rejects what it does not
// understand with an error and never panics.
//
// Every frame starts with Magic and a type byte:
//
//	HELLO    signed announcement of a node on a link (who I am, my link epoch,
//	         my ephemeral X25519 key for this link), with a cookie for the
//	         receiver's address and the echo of its one
//	COOKIE   stateless answer to a hello that did not echo a valid cookie
//	DATA     one MDP datagram, sequenced per link for per-hop reliability
//	ACK      which DATA frames of a link have arrived
//	PROBE    padded frame testing whether a datagram size gets through
//	PROBEACK answer to a PROBE
//	SKIP     the sender gave up resending DATA frames below a sequence number
//
// Routing messages (route.go) travel as the payload of DATA frames between
// neighbours, so they get the per-hop reliability of any datagram.
//
// DATA, ACK, PROBE, PROBEACK and SKIP travel authenticated between
// neighbours (auth.go): FlagAuth in the type byte and a trailer with the
// MAC under the link key the two hellos' ephemeral keys agree on.
package wire
