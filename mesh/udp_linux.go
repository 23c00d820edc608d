package mesh

import (
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
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

// gsoSupported: UDP GSO (UDP_SEGMENT, Linux 4.18) may be tried.
const gsoSupported = true

// gsoControlLen is the length of one UDP_SEGMENT control message.
var gsoControlLen = unix.CmsgSpace(2)

// gsoControl appends a UDP_SEGMENT control message for segments of size
// bytes to b. The caller keeps b alive until the message is written and
// takes the new message at b's end; b's earlier messages stay valid only
// if b had the capacity (sendBatch reuses its storage across writes).
func gsoControl(b []byte, size int) []byte {
	b = slices.Grow(b, gsoControlLen)
	c := b[len(b) : len(b)+gsoControlLen]
	clear(c)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(size))
	return b[:len(b)+gsoControlLen]
}

// gsoUnsupported reports whether err says the socket cannot do GSO at all
// (not that one message was wrong).
func gsoUnsupported(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.ENOPROTOOPT) || errors.Is(err, unix.EOPNOTSUPP)
}
