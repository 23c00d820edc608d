package arq

// Buffers of the data path. Write copies application bytes into the send
// ring (addressed by stream offset); the sender goroutine copies them from
// there into packets, as often as they need retransmitting, until they are
// acknowledged. Input copies received STREAM data into the receive ring at
// its stream offset (in order or not), and Read copies it out. The sent
// queue records one entry per packet number sent.

// ring is a byte buffer addressed by absolute stream offset modulo its size
// (a power of two). It grows on demand, up to the owner's bound.
type ring struct {
	b []byte
}

const minRing = 64 << 10

func (r *ring) size() int { return len(r.b) }

// ensure makes room for offsets [start, start+need), keeping the bytes of
// [start, end) (the live region), growing the ring to a power of two.
func (r *ring) ensure(start, end uint64, need int) {
	if need <= len(r.b) {
		return
	}
	n := max(minRing, len(r.b))
	for n < need {
		n *= 2
	}
	nb := ring{b: make([]byte, n)}
	if len(r.b) > 0 {
		for off := start; off < end; {
			seg := r.contiguous(off, int(end-off))
			nb.write(off, seg)
			off += uint64(len(seg))
		}
	}
	*r = nb
}

// contiguous returns the longest slice of the ring starting at offset off,
// at most n bytes, without wrapping.
func (r *ring) contiguous(off uint64, n int) []byte {
	i := int(off & uint64(len(r.b)-1))
	return r.b[i:min(len(r.b), i+n)]
}

// write copies p to the ring at offset off.
func (r *ring) write(off uint64, p []byte) {
	for len(p) > 0 {
		seg := r.contiguous(off, len(p))
		k := copy(seg, p)
		p = p[k:]
		off += uint64(k)
	}
}

// read copies len(p) bytes at offset off into p.
func (r *ring) read(off uint64, p []byte) {
	for len(p) > 0 {
		seg := r.contiguous(off, len(p))
		k := copy(p, seg)
		p = p[k:]
		off += uint64(k)
	}
}

// Flags of a sent packet.
const (
	sentEliciting = 1 << iota // carries PING, STREAM or CLOSE: must be acknowledged
	sentAcked                 // acknowledged by the peer
	sentLost                  // declared lost (stays until acked or retired, to detect spurious losses)
	sentClose                 // carries a CLOSE frame
	sentLimited               // sent while cwnd-limited: its ACK may grow cwnd
)

// sentPacket is the bookkeeping of one sent packet.
type sentPacket struct {
	sent    int64  // send time, ns since the Conn's epoch
	off     uint64 // stream offset of its STREAM frame
	ackOf   uint64 // 1 + largest packet number acknowledged by its ACK frame; 0: no ACK frame
	size    uint32 // bytes handed to Output
	n       uint32 // STREAM data bytes
	episode uint32 // loss episode in which it was declared lost
	flags   uint8
}

// resolved reports whether the packet no longer awaits an ACK to settle
// anything (acknowledged, declared lost, or not ack-eliciting).
func (e *sentPacket) resolved() bool {
	return e.flags&(sentAcked|sentLost) != 0 || e.flags&sentEliciting == 0
}

// sentQueue holds the entries of packet numbers [base, base+n) in a ring,
// so that lookup by packet number, push and pop are O(1).
type sentQueue struct {
	e    []sentPacket // len is a power of two
	head int
	n    int
	base uint64
}

// end is the next packet number to push.
func (q *sentQueue) end() uint64 { return q.base + uint64(q.n) }

func (q *sentQueue) at(pn uint64) *sentPacket {
	return &q.e[(q.head+int(pn-q.base))&(len(q.e)-1)]
}

func (q *sentQueue) push(p sentPacket) {
	if q.n == len(q.e) {
		ne := make([]sentPacket, max(64, 2*len(q.e)))
		for i := range q.n {
			ne[i] = q.e[(q.head+i)&(len(q.e)-1)]
		}
		q.e, q.head = ne, 0
	}
	q.e[(q.head+q.n)&(len(q.e)-1)] = p
	q.n++
}

func (q *sentQueue) front() *sentPacket { return &q.e[q.head] }

func (q *sentQueue) pop() {
	q.e[q.head] = sentPacket{}
	q.head = (q.head + 1) & (len(q.e) - 1)
	q.n--
	q.base++
}

// latePN is a packet number that arrived late and the number of ACK
// frames that are still to list it.
type latePN struct {
	pn   uint64
	left uint8
}

// pnQueue is a bounded FIFO of late packet numbers; pushing onto a full
// queue drops the oldest.
type pnQueue struct {
	a    [maxLate]latePN
	head int
	n    int
}

func (q *pnQueue) push(e latePN) {
	if q.n == len(q.a) {
		q.pop()
	}
	q.a[(q.head+q.n)%len(q.a)] = e
	q.n++
}

func (q *pnQueue) front() latePN { return q.a[q.head] }

func (q *pnQueue) pop() {
	q.head = (q.head + 1) % len(q.a)
	q.n--
}

// lossSuspect is a packet declared lost whose congestion response waits
// until due.
type lossSuspect struct {
	pn  uint64
	due int64
}

// lossQueue is a bounded FIFO of loss suspects, in order of due time.
type lossQueue struct {
	a    [maxSuspects]lossSuspect
	head int
	n    int
}

func (q *lossQueue) push(s lossSuspect) bool {
	if q.n == len(q.a) {
		return false
	}
	q.a[(q.head+q.n)%len(q.a)] = s
	q.n++
	return true
}

func (q *lossQueue) front() lossSuspect { return q.a[q.head] }

func (q *lossQueue) pop() {
	q.head = (q.head + 1) % len(q.a)
	q.n--
}
