package mesh

import (
	"sync"

	"github.com/servald/servald/mesh/internal/wire"
)

// maxDatagram is the largest UDP datagram a node reads or sends.
const maxDatagram = 65535

// smallBuf is the size of the small buffer class: most control frames and
// frames on links with an Ethernet-sized MTU fit.
const smallBuf = 2048

// bufPool hands out frame buffers of two size classes. A buffer's owner
// returns it with put exactly once.
type bufPool struct {
	small, large sync.Pool
}

func newBufPool() *bufPool {
	p := &bufPool{}
	p.small.New = func() any { b := make([]byte, smallBuf); return &b }
	p.large.New = func() any { b := make([]byte, maxDatagram); return &b }
	return p
}

// get returns a buffer of at least n bytes, with length n.
func (p *bufPool) get(n int) *[]byte {
	var b *[]byte
	if n <= smallBuf-wire.AuthLen { // room to authenticate it in place
		b = p.small.Get().(*[]byte)
	} else {
		b = p.large.Get().(*[]byte)
	}
	*b = (*b)[:n]
	return b
}

// put returns b to the pool.
func (p *bufPool) put(b *[]byte) {
	switch cap(*b) {
	case smallBuf:
		p.small.Put(b)
	case maxDatagram:
		p.large.Put(b)
	}
}
