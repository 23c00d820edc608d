//go:build !linux

package mesh

import "net"

func forceBuffers(fd, size int) {}

func setDontFragment(fd int) {}

// newBatchConn returns nil: batched socket I/O is used on Linux only.
func newBatchConn(c net.PacketConn) batchConn { return nil }

const gsoSupported = false

const gsoControlLen = 0

func gsoControl(b []byte, size int) []byte { return b }

func gsoUnsupported(err error) bool { return true }
