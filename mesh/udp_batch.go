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
	"time"

	"golang.org/x/net/ipv4"

	"github.com/servald/servald/mesh/internal/wire"
)

// readBatch is how many datagrams one batched read may return.
const readBatch = 32

// writeBatch bounds the datagrams of one batched write.
const writeBatch = 64

// burstGap: a local frame that follows the previous one this closely is
// part of a burst (msp writes a congestion window's worth back to back,
// about 10 µs apart) and goes through the link's queue, so that the link
// goroutine writes it with the others in one batch; a lone frame (an
// echo, a keepalive) is still written at once by its sender.
const burstGap = 100 * time.Microsecond

// burstLocked reports whether a local frame enqueued now is part of a
// burst, on a batching socket, and notes the time. Called with mu held.
func (l *link) burstLocked() bool {
	if l.n.batch == nil {
		return false
	}
	now := time.Now()
	burst := now.Sub(l.tx.lastLocal) < burstGap
	l.tx.lastLocal = now
	return burst
}

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
	runs   []int  // the frame after each message's last
	oob    []byte // the GSO control messages of ms
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
	b.oob = b.oob[:0]
}

// writeAll writes b's frames to to: with WriteBatch on bc, in order, each
// frame attempted exactly once (a frame the kernel refuses is counted and
// skipped, the ones after it still go), or one WriteTo each when bc is
// nil. failed is called for each frame that was not written. With
// gso, runs of frames of one size (the last of a run may be shorter) go
// as one message each that the kernel cuts into datagrams (UDP GSO): one
// trip through the stack for up to maxSegments datagrams.
func (n *Node) writeAll(bc batchConn, b *sendBatch, to net.Addr, gso bool, failed func(frame []byte, err error)) {
	if bc == nil {
		for _, f := range b.frames {
			if err := n.send(f, to); err != nil {
				failed(f, err)
			}
		}
		return
	}
	for start := 0; start < len(b.frames); {
		// Messages from frame start on: each a run of frames (gso) or one.
		b.ms = b.ms[:0]
		b.runs = b.runs[:0]
		i := start
		for i < len(b.frames) && len(b.ms) < writeBatch {
			j := i + 1
			if gso {
				j = gsoRun(b.frames, i)
			}
			m := ipv4.Message{Buffers: b.frames[i:j], Addr: to}
			if j-i > 1 {
				b.oob = gsoControl(b.oob, len(b.frames[i]))
				m.OOB = b.oob[len(b.oob)-gsoControlLen:]
			}
			b.ms = append(b.ms, m)
			b.runs = append(b.runs, j)
			i = j
		}
		sent, err := bc.WriteBatch(b.ms, 0)
		sent = max(sent, 0)
		done := start
		if sent > 0 {
			done = b.runs[sent-1]
		}
		n.stats.framesOut.Add(uint64(done - start))
		start = done
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				n.stats.writeErrors.Add(uint64(len(b.frames) - start))
				for _, f := range b.frames[start:] {
					failed(f, err)
				}
				break
			}
			// The message at sent is the one refused: one frame, or a
			// run, whose frames are tried one by one (a run is refused as
			// a whole: one frame too large for the path, or no GSO here).
			end := b.runs[sent]
			if end-start > 1 {
				if gsoUnsupported(err) {
					gso = false
					n.gsoOff.Store(true)
				}
				one := &sendBatch{frames: b.frames[start:end]}
				n.writeAll(bc, one, to, false, failed)
			} else {
				n.stats.writeErrors.Add(1)
				failed(b.frames[start], err)
			}
			start = end
		}
	}
	clear(b.ms)
	b.ms = b.ms[:0]
}

// maxSegments and maxGSOBytes bound a GSO message (the kernel's limits
// are 64 or 128 segments, by version, and one IP datagram's payload).
const (
	maxSegments = 64
	maxGSOBytes = 65000
)

// gsoRun returns the end of the run of frames starting at i: frames of
// frames[i]'s size, and at most one shorter one to end it.
func gsoRun(frames [][]byte, i int) int {
	size := len(frames[i])
	total := size
	j := i + 1
	for j < len(frames) && j-i < maxSegments && len(frames[j]) <= size && total+len(frames[j]) <= maxGSOBytes {
		total += len(frames[j])
		j++
		if len(frames[j-1]) < size {
			break
		}
	}
	return j
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
	frames, bytes := len(b.frames), 0
	for _, f := range b.frames {
		bytes += len(f)
	}
	n.writeAll(n.batch, b, to, gsoSupported && !n.gsoOff.Load(), func(f []byte, err error) {
		frames--
		bytes -= len(f)
		if errors.Is(err, syscall.EMSGSIZE) {
			l.nb.lowerMTU(len(f) - wire.AuthLen)
		}
	})
	// The link's traffic, as sendLink counts it: frames written, whole.
	l.nb.framesOut.Add(uint64(frames))
	l.nb.bytesOut.Add(uint64(bytes))
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
		n.flushRelayed()
	}
}

// flushAfterBatch has the read loop write the frames relayed to l once
// the current read batch is handled: in one batched write, and without
// waking l's goroutine, a wake-up per relayed batch that cost a busy
// relay more than the write (BenchmarkRealChain). Read loop only.
func (n *Node) flushAfterBatch(l *link) {
	if !slices.Contains(n.flushDue, l) {
		n.flushDue = append(n.flushDue, l)
	}
}

// flushRelayed flushes the links flushAfterBatch asked for (read loop). A
// link that a writer is flushing already gets a kick instead: the read loop
// never waits for a socket write of another goroutine.
func (n *Node) flushRelayed() {
	for _, l := range n.flushDue {
		if l.sendMu.TryLock() {
			l.flushLocked()
			l.sendMu.Unlock()
		} else {
			l.kick()
		}
	}
	clear(n.flushDue)
	n.flushDue = n.flushDue[:0]
}

// ackAfterBatch has the read loop acknowledge l's frames once the current
// read batch is handled, not at once: up to readBatch frames (and the
// gaps among them) take one ACK. Read loop only.
func (n *Node) ackAfterBatch(l *link) {
	if !slices.Contains(n.ackDue, l) {
		n.ackDue = append(n.ackDue, l)
	}
}

// ackFromLoopLocked sends an ACK of what arrived from the read loop.
// Called with mu held; it unlocks mu.
func (l *link) ackFromLoopLocked() {
	l.rx.ackPending = false
	l.rx.unacked = 0
	l.buildAckLocked(&l.rx.loopAck)
	l.mu.Unlock()
	l.rx.loopAckBuf = wire.AppendAck(l.rx.loopAckBuf[:0], &l.rx.loopAck)
	l.n.stats.ackOut.Add(uint64(len(l.rx.loopAckBuf)))
	l.n.sendLink(l.nb, l.rx.loopAckBuf, l.nb.address())
}

// sendBatchAcks sends the ACKs ackAfterBatch asked for (read loop).
func (n *Node) sendBatchAcks() {
	for _, l := range n.ackDue {
		l.mu.Lock()
		l.ackFromLoopLocked()
	}
	clear(n.ackDue)
	n.ackDue = n.ackDue[:0]
}
