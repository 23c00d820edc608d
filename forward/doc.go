// Package forward bridges byte streams: it joins a tunnelled stream (an MSP
// or splitter net.Conn) with a local TCP connection or with stdin/stdout, in
// both directions, with half-close, prompt teardown when either side fails,
// and no goroutine outlives the call that started it. UDPFlows carries UDP
// flows as datagrams of an MSP session instead (udp.go).
package forward
