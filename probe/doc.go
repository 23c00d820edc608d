// Package probe is ping and trace over the mesh: MDP echo on the
// well-known port EchoPort (7) and next-hop queries on TracePort (8).
//
// A Responder answers both for one node, within rate limits and with
// replies never longer than the requests (docs/PROTOCOL.md, "Ping and
// trace"). RunPing sends echo requests at an interval and sums the replies
// up as ping(8) does; Trace walks the path to a node hop by hop, asking each
// node on it for its next hop. All of them work on any MDP port
// (PacketConn) and any routing table (Table), so the same code runs on a
// node embedded in the process and through the daemon.
package probe
