// Package wire holds the byte formats of the splitter protocol: the
// handshake that opens or joins a session on a fresh TCP connection, and the
// frames that flow on an established connection (shards, acks, re-requests,
// probes, liveness). It does no I/O: encoders append to a slice, decoders
// parse a slice and reject anything they do not understand with an error.
package wire
