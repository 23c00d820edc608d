package mesh

// Batched socket I/O. On Linux a node on a real UDP socket reads up to
// readBatch datagrams with one recvmmsg and a link's flush writes what it
// has (ACK, SKIP, resent and new frames) with one sendmmsg: with one
// syscall per datagram, syscalls were two thirds of a node's CPU at MTU
// 1500. Elsewhere, and on sockets that are not a *net.UDPConn (memnet),
// the node reads and writes one datagram at a time as before.

import (
	"errors"
	"net"
	"slices"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"

	"github.com/servald/servald/mesh/internal/wire"
)

// readBatch is how many datagrams one batched read may return.
const readBatch = 32

// writeBatch bounds the datagrams of one batched write.
const writeBatch = 64

// batchConn is a socket that reads and writes several datagrams per
// system call (golang.org/x/net's ipv4 and ipv6 PacketConn; their Message
// is the same type).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// sendBatch is the scratch of one batched write: frames and their
// messages, reused through Node.sendBatches.
type sendBatch struct {
	frames [][]byte
	ms     []ipv4.Message
	iov    [][1][]byte
}

func newSendBatchPool() *sync.Pool {
	return &sync.Pool{New: func() any { return new(sendBatch) }}
}

// add appends one frame to the batch.
func (b *sendBatch) add(frame []byte) { b.frames = append(b.frames, frame) }

// reset drops the batch's frames (not its storage).
func (b *sendBatch) reset() {
	clear(b.frames)
	b.frames = b.frames[:0]
}

// writeAll writes b's frames to to: with WriteBatch on bc, in order, each
// frame attempted exactly once (a frame the kernel refuses is counted and
// skipped, the ones after it still go), or one WriteTo each when bc is
// nil. failed is called for each frame that could not be written.
func (n *Node) writeAll(bc batchConn, b *sendBatch, to net.Addr, failed func(frame []byte, err error)) {
	if bc == nil {
		for _, f := range b.frames {
			if err := n.send(f, to); err != nil {
				failed(f, err)
			}
		}
		return
	}
	for len(b.ms) < min(len(b.frames), writeBatch) {
		b.iov = append(b.iov, [1][]byte{})
		b.ms = append(b.ms, ipv4.Message{})
	}
	for start := 0; start < len(b.frames); {
		k := min(len(b.frames)-start, writeBatch)
		ms := b.ms[:k]
		for i := range ms {
			b.iov[i][0] = b.frames[start+i]
			ms[i] = ipv4.Message{Buffers: b.iov[i][:], Addr: to}
		}
		sent, err := bc.WriteBatch(ms, 0)
		sent = max(sent, 0)
		n.stats.framesOut.Add(uint64(sent))
		start += sent
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				n.stats.writeErrors.Add(uint64(len(b.frames) - start))
				break
			}
			// The frame at start is the one refused.
			n.stats.writeErrors.Add(1)
			failed(b.frames[start], err)
			start++
		}
	}
	for i := range b.iov {
		b.iov[i][0] = nil
		b.ms[i] = ipv4.Message{}
	}
}

// sendFrames authenticates and writes ack and skip (each when not
// nil) and then out to the link's neighbour, in that order, in as few
// system calls as the socket allows. A frame too large for the path lowers
// the neighbour's MTU. Called with sendMu held (counters and order).
func (l *link) sendFrames(ack, skip []byte, out []*[]byte, to net.Addr) {
	n := l.n
	k := l.nb.keys.Load()
	if k == nil {
		return
	}
	b := n.sendBatches.Get().(*sendBatch)
	for _, f := range [][]byte{ack, skip} {
		if f != nil {
			b.add(k.seal(f, l.nb.txCtr.Add(1)))
		}
	}
	for _, f := range out {
		b.add(k.seal(*f, l.nb.txCtr.Add(1)))
	}
	n.writeAll(n.batch, b, to, func(f []byte, err error) {
		if errors.Is(err, syscall.EMSGSIZE) {
			l.nb.lowerMTU(len(f) - wire.AuthLen)
		}
	})
	b.reset()
	n.sendBatches.Put(b)
}

// readBatches is the read loop on a batching socket: one ReadBatch fills
// up to readBatch large buffers; a datagram that fits a small buffer is
// copied into one (so the large buffer stays for the next read and a
// queued or relayed frame pins 2 KiB, not 64), a larger one is handed on
// in its own buffer and replaced. handle takes ownership of each buffer.
func (n *Node) readBatches(bc batchConn, handle func(bp *[]byte, from net.Addr)) {
	ms := make([]ipv4.Message, readBatch)
	bufs := make([]*[]byte, readBatch)
	for i := range ms {
		bufs[i] = n.bufs.get(maxDatagram)
		ms[i].Buffers = [][]byte{*bufs[i]}
	}
	defer func() {
		for _, bp := range bufs {
			n.bufs.put(bp)
		}
	}()
	for {
		k, err := bc.ReadBatch(ms, 0)
		if err != nil {
			if n.closed.Load() || errors.Is(err, net.ErrClosed) {
				return
			}
			n.log.Debug("mesh: read", "err", err)
			n.stats.readErrors.Add(1)
			continue
		}
		for i := range ms[:k] {
			size, from := ms[i].N, ms[i].Addr
			ms[i].Addr = nil
			var bp *[]byte
			if size <= smallBuf-wire.AuthLen {
				bp = n.bufs.get(size)
				copy(*bp, (*bufs[i])[:size])
			} else {
				bp = bufs[i]
				*bp = (*bp)[:size]
				bufs[i] = n.bufs.get(maxDatagram)
				ms[i].Buffers[0] = *bufs[i]
			}
			handle(bp, from)
		}
		n.sendBatchAcks()
	}
}

// ackAfterBatch has the read loop acknowledge l's frames once the current
// read batch is handled, not at once: up to readBatch frames (and the
// gaps among them) take one ACK. Read loop only.
func (n *Node) ackAfterBatch(l *link) {
	if !slices.Contains(n.ackDue, l) {
		n.ackDue = append(n.ackDue, l)
	}
}

// sendBatchAcks sends the ACKs ackAfterBatch asked for (read loop).
func (n *Node) sendBatchAcks() {
	for _, l := range n.ackDue {
		l.mu.Lock()
		l.rx.ackPending = false
		l.rx.unacked = 0
		l.buildAckLocked(&l.rx.loopAck)
		l.mu.Unlock()
		l.rx.loopAckBuf = wire.AppendAck(l.rx.loopAckBuf[:0], &l.rx.loopAck)
		n.stats.ackOut.Add(uint64(len(l.rx.loopAckBuf)))
		n.sendLink(l.nb, l.rx.loopAckBuf, l.nb.address())
	}
	clear(n.ackDue)
	n.ackDue = n.ackDue[:0]
}
