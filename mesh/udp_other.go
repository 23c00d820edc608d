//go:build !linux

package mesh

func forceBuffers(fd, size int) {}

func setDontFragment(fd int) {}
