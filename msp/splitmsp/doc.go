// Package splitmsp runs MSP sessions over split transport: one splitter
// session (N TCP connections with Reed-Solomon FEC) carries one MSP
// session instead of the mesh. The session on top is the same: same
// handshake and SID check, same Allow, same encryption and streams. It
// joins the two layers so that msp never imports splitter.
//
//	dial:  splitter.Dial -> msp.NewStreamTransport -> msp.Dialer.Dial
//	serve: splitter.Listener.AcceptContext -> msp.NewStreamTransport -> msp.Listener.Serve
package splitmsp
