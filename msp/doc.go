// Package msp carries reliable, encrypted byte streams between nodes: the
// Mesh Stream Protocol. Between two endpoints runs one session: a signed
// X25519 handshake (package seal) gives ChaCha20-Poly1305 keys; inside, a
// reliable, ordered, flow- and congestion-controlled byte stream (package
// arq) carries any number of streams multiplexed by smux. Relays see only
// mesh headers and sealed bytes.
//
// A session runs over a Transport: an MDP port of a mesh node, or framed
// datagrams over any reliable connection (the splitter). A Dialer opens a
// session with a listener over a transport; Listen accepts sessions, and
// the streams in them, on one or more transports.
package msp
