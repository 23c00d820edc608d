// Package daemon serves a running mesh node to other processes of the same
// instance over a Unix socket in the instance directory, and is the client
// of that socket: `servald start` runs a Server (Listen, Serve), and `msp`,
// `id peers`, `route print` and `service find` use a Client (Dial) instead of
// starting a node of their own: Bind gives a Port, an MDP port through the
// daemon that is a net.PacketConn and an msp.Transport. The socket is 0600
// from its first instant and serves only the owner's uid (and root); the pid
// file is the instance lock. The request and frame layouts are in
// docs/PROTOCOL.md ("Control socket").
package daemon
