package mesh

import (
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

func forceBuffers(fd, size int) {
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size)
}

func setDontFragment(fd int) {
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, syscall.IP_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
	syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_MTU_DISCOVER, syscall.IP_PMTUDISC_DO)
}

// newBatchConn returns c as a batchConn when it is a UDP socket, else nil.
func newBatchConn(c net.PacketConn) batchConn {
	u, ok := c.(*net.UDPConn)
	if !ok {
		return nil
	}
	if a, ok := u.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() != nil {
		return ipv4.NewPacketConn(u)
	}
	return ipv6.NewPacketConn(u)
}
