// Package mesh runs a node: one datagram socket, the neighbours heard on it,
// per-hop reliable delivery of frames to them, routing through relays, and
// MDP ports ((SID, port) addressed datagrams) on top. New(Config) starts a
// node on a net.PacketConn (a UDP socket from ListenUDP, or an in-memory one
// in tests); Bind gives a PacketConn for an MDP port; Routes, Neighbours and
// Stats say what the node knows and what it dropped. A node admits a
// neighbour only after a stateless cookie exchange proves its address and a
// signed hello proves its SID, bounds its neighbours, routes and signature
// checks, authenticates every per-hop frame under keys the two neighbours'
// hellos agree on, and routes by Babel-style distance vector with signed
// origins. Frame layouts, timers and bounds are in docs/PROTOCOL.md ("Mesh
// frames", "Link keys", "Routing").
package mesh
