package mesh

import (
	"fmt"
	"net"
	"syscall"
)

// socketBuffer is the send and receive buffer a UDP socket asks for, so a
// burst of large frames is not dropped by the kernel.
const socketBuffer = 8 << 20

// ListenUDP opens the node's UDP socket on addr ("host:port"). The socket
// sets Don't-Fragment, so MTU probes find the real path MTU, and asks for
// large buffers. With broadcast it may send to broadcast addresses.
func ListenUDP(addr string, broadcast bool) (*net.UDPConn, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("mesh: UDP address %q: %w", addr, err)
	}
	c, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("mesh: listen on UDP %s: %w", addr, err)
	}
	if err := tuneSocket(c, broadcast); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func tuneSocket(c *net.UDPConn, broadcast bool) error {
	c.SetReadBuffer(socketBuffer)
	c.SetWriteBuffer(socketBuffer)
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("mesh: socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		// Beyond rmem_max only root may go; try, and ignore a refusal.
		forceBuffers(int(fd), socketBuffer)
		setDontFragment(int(fd))
		if broadcast {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_BROADCAST, 1)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("mesh: socket options: %w", err)
	}
	return nil
}
