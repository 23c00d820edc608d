package msp

// Stream transport. Packet path: an MSP datagram written with WriteTo goes
// onto a reliable byte stream (a splitter connection) behind a 2-byte
// length; the read side cuts the stream back into datagrams. The session on
// top is the same as over the mesh: same handshake, keys and streams.

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/servald/servald/identity"
)

// streamMaxPayload is the largest datagram carried on a stream transport.
const streamMaxPayload = 32 << 10

// streamAddr is the far end of a stream transport (not a mesh address: the
// peer's SID comes from the handshake).
type streamAddr struct{ net.Addr }

// Network returns "msp-stream".
func (a streamAddr) Network() string { return "msp-stream" }

type streamTransport struct {
	c      net.Conn
	remote streamAddr
	r      *bufio.Reader
	rmu    sync.Mutex
	wmu    sync.Mutex
	wbuf   []byte // guarded by wmu
}

// NewStreamTransport carries MSP datagrams over c, which the transport
// closes with Close. Dial over it with Dialer.Dial (whatever the peer's
// SID, the datagrams go to c's far end), accept over it with
// Listener.Serve.
func NewStreamTransport(c net.Conn) Transport {
	return &streamTransport{c: c, remote: streamAddr{c.RemoteAddr()}, r: bufio.NewReaderSize(c, 64<<10)}
}

func (t *streamTransport) ReadFrom(p []byte) (int, net.Addr, error) {
	t.rmu.Lock()
	defer t.rmu.Unlock()
	var h [2]byte
	if _, err := io.ReadFull(t.r, h[:]); err != nil {
		return 0, nil, t.readErr(err)
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > streamMaxPayload || n > len(p) {
		t.c.Close()
		return 0, nil, fmt.Errorf("msp: stream transport: %d-byte datagram: %w", n, net.ErrClosed)
	}
	if _, err := io.ReadFull(t.r, p[:n]); err != nil {
		return 0, nil, t.readErr(err)
	}
	return n, t.remote, nil
}

// readErr makes the end of the stream look like a closed socket to the
// endpoint's read loop.
func (t *streamTransport) readErr(err error) error {
	return fmt.Errorf("msp: stream transport: %v: %w", err, net.ErrClosed)
}

func (t *streamTransport) WriteTo(p []byte, _ net.Addr) (int, error) {
	if len(p) > streamMaxPayload {
		return 0, fmt.Errorf("msp: stream transport: %d-byte datagram is too large", len(p))
	}
	t.wmu.Lock()
	defer t.wmu.Unlock()
	t.wbuf = binary.BigEndian.AppendUint16(t.wbuf[:0], uint16(len(p)))
	t.wbuf = append(t.wbuf, p...)
	if _, err := t.c.Write(t.wbuf); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (t *streamTransport) LocalAddr() net.Addr         { return t.c.LocalAddr() }
func (t *streamTransport) Close() error                { return t.c.Close() }
func (t *streamTransport) MaxPayload(identity.SID) int { return streamMaxPayload }

// PeerAddr returns the far end of the connection, whatever the node and
// port: the connection reaches one node only.
func (t *streamTransport) PeerAddr(identity.SID, uint16) net.Addr { return t.remote }

// FromNode returns true: the transport does not know which node is at the
// far end (the handshake says).
func (t *streamTransport) FromNode(net.Addr, identity.SID) bool { return true }

// SingleNode returns true: the connection reaches one node only, chosen by
// whoever opened it (see Transport).
func (t *streamTransport) SingleNode() bool { return true }

// PeerAuthenticated opens the connection's receive window where it has one
// to open (a splitter session behind a gated listener).
func (t *streamTransport) PeerAuthenticated() {
	if o, ok := t.c.(interface{ OpenWindow() }); ok {
		o.OpenWindow()
	}
}
