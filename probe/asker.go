package probe

// The asking side's port.
//
// Packet path: a goroutine reads the port, stamps each datagram with the
// time it arrived, and hands it on through a bounded channel (full: the
// datagram is dropped, as a full socket buffer would); Ping and Trace send
// from their own goroutine and take replies off the channel, which is
// closed when reading stops.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/servald/servald/mesh"
)

// received is one datagram that reached the asking port.
type received struct {
	b    []byte
	from mesh.Addr
	at   time.Time
}

// asker owns an MDP port used to ask: it reads it until close.
type asker struct {
	pc   PacketConn
	id   uint16 // tells our replies from strays on a reused port
	in   chan received
	done chan struct{}
	stop func() bool // releases the context hook
	wg   sync.WaitGroup
	// err is why reading stopped; written before in is closed.
	err error
}

// askerQueue bounds the replies waiting to be taken.
const askerQueue = 64

// newAsker starts reading pc; ctx ending closes it.
func newAsker(ctx context.Context, pc PacketConn) *asker {
	a := &asker{pc: pc, id: uint16(rand.Uint32()), in: make(chan received, askerQueue), done: make(chan struct{})}
	a.stop = context.AfterFunc(ctx, func() { pc.Close() })
	a.wg.Add(1)
	go a.read()
	return a
}

func (a *asker) read() {
	defer a.wg.Done()
	defer close(a.in)
	buf := make([]byte, HeaderLen+MaxData+1)
	for {
		k, from, err := a.pc.ReadFrom(buf)
		if err != nil {
			a.err = fmt.Errorf("probe: read: %w", err)
			return
		}
		addr, ok := mesh.AddrOf(from)
		if !ok {
			continue
		}
		select {
		case a.in <- received{b: append([]byte(nil), buf[:k]...), from: addr, at: time.Now()}:
		default:
		case <-a.done:
			return
		}
	}
}

// close closes the port and waits for the reader.
func (a *asker) close() {
	a.stop()
	close(a.done)
	a.pc.Close()
	a.wg.Wait()
}
