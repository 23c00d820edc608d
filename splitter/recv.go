package splitter

// Receiving side of a session.
//
//	lane reader -> onData: the shard payload is read from TCP straight into
//	its own buffer; the block's record is in the rx ring at block mod window.
//	A block with as many shards as it has data shards (D, fewer for a short
//	block: see geometry) is complete (Reed-Solomon rebuilds missing data
//	shards); complete blocks below the first incomplete one are acknowledged
//	cumulatively; Read copies their data out in order (the one copy) and
//	frees them, which opens the window. A block known to exist (a later
//	block's shard or a TAIL arrived) that is still incomplete after MaxHold
//	is re-requested with a NACK naming the shards held; again every MaxHold.

import (
	"bufio"
	"fmt"
	"io"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

const noBlock = ^uint64(0)

// rxBlock is a block being reassembled or waiting to be read. Guarded by Conn.rmu.
type rxBlock struct {
	block      uint64 // noBlock when the slot is free
	meta       bool   // dlen, sl, d, n and offset are known
	dlen, sl   int
	d, n       int // data shards and all shards (see geometry)
	offset     uint64
	shards     [][]byte // nil when missing
	have       int
	complete   bool
	rebuilding bool
	knownSince time.Time // when the block was learnt of, then when its last shard came
	lastNack   time.Time
}

// recvState is guarded by Conn.rmu.
type recvState struct {
	rx          []rxBlock
	rxBufs      [][]byte
	consumed    uint64 // blocks below consumed have been read and freed
	readOff     int    // bytes of block consumed already read
	readOffset  uint64 // stream offset of the next byte Read returns
	rcum        uint64 // blocks below rcum are complete
	known       uint64 // blocks below known are known to exist
	rfinSet     bool
	rfinBlock   uint64
	rfinOffset  uint64
	advCum      uint64 // last advertised ACK
	advLimit    uint64
	lastAckSent time.Time
	nackOut     []wire.NackEntry // entries waiting for a lane writer
	nackBits    []byte
}

func protoErrf(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProtocol}, a...)...)
}

func (s *Conn) getRxBufLocked() []byte {
	if n := len(s.rxBufs); n > 0 {
		b := s.rxBufs[n-1]
		s.rxBufs = s.rxBufs[:n-1]
		return b
	}
	return make([]byte, s.ps)
}

func (s *Conn) putRxBufLocked(b []byte) {
	if len(s.rxBufs) < s.wnd*s.d {
		s.rxBufs = append(s.rxBufs, b[:cap(b)])
	}
}

// learnLocked records that blocks below upto exist (upto <= consumed+wnd).
func (s *Conn) learnLocked(upto uint64, since time.Time) {
	for s.known < upto {
		e := &s.rx[s.known%uint64(s.wnd)]
		if e.shards == nil {
			e.shards = make([][]byte, s.shards)
		}
		e.block = s.known
		e.meta, e.complete, e.rebuilding = false, false, false
		e.have = 0
		e.knownSince, e.lastNack = since, time.Time{}
		s.known++
	}
}

// onData handles a DATA frame whose header has been read; it reads the
// payload of plen bytes from br.
func (s *Conn) onData(br *bufio.Reader, dh wire.DataHeader, plen int) error {
	if dh.DataLen > s.blockMax {
		return protoErrf("block of %d bytes, at most %d", dh.DataLen, s.blockMax)
	}
	d, p := s.geometry(dh.DataLen)
	if dh.Index >= d+p {
		return protoErrf("shard index %d of %d in a block of %d bytes", dh.Index, d+p, dh.DataLen)
	}
	if (dh.DataLen+d-1)/d != plen {
		return protoErrf("block of %d bytes with %d-byte shards", dh.DataLen, plen)
	}
	b := dh.Block
	s.rmu.Lock()
	if b < s.rcum || s.isDead() {
		s.rmu.Unlock()
		return s.discard(br, plen)
	}
	if b >= s.consumed+uint64(s.rwnd) {
		s.rmu.Unlock()
		return protoErrf("block %d beyond window %d+%d", b, s.consumed, s.rwnd)
	}
	if s.rfinSet && b >= s.rfinBlock {
		s.rmu.Unlock()
		return protoErrf("block %d after end of stream at block %d", b, s.rfinBlock)
	}
	now := time.Now()
	s.learnLocked(b+1, now)
	e := &s.rx[b%uint64(s.wnd)]
	if !e.meta {
		e.meta, e.dlen, e.sl, e.offset = true, dh.DataLen, plen, dh.Offset
		e.d, e.n = d, d+p
	} else if e.dlen != dh.DataLen || e.offset != dh.Offset {
		s.rmu.Unlock()
		return protoErrf("block %d shards disagree on length or offset", b)
	}
	if e.complete || e.rebuilding || e.shards[dh.Index] != nil {
		s.rmu.Unlock()
		return s.discard(br, plen)
	}
	buf := s.getRxBufLocked()[:plen]
	s.rmu.Unlock()

	// Another lane may be reading the same shard (a re-send): the first
	// to finish keeps its copy.
	if _, err := io.ReadFull(br, buf); err != nil {
		s.rmu.Lock()
		s.putRxBufLocked(buf)
		s.rmu.Unlock()
		return err
	}

	s.rmu.Lock()
	if e.block != b || e.complete || e.rebuilding || e.shards[dh.Index] != nil {
		s.putRxBufLocked(buf)
		s.rmu.Unlock()
		s.st.shardsDiscarded.Add(1)
		return nil
	}
	e.shards[dh.Index] = buf
	e.have++
	e.knownSince = time.Now() // the hold time runs from the last shard seen
	s.st.shardsReceived.Add(1)
	if e.have < e.d {
		s.rmu.Unlock()
		return nil
	}
	missing := false
	for i := 0; i < e.d; i++ {
		if e.shards[i] == nil {
			missing = true
			break
		}
	}
	if missing {
		if err := s.rebuildLocked(e); err != nil {
			s.rmu.Unlock()
			return err
		}
	}
	ack := s.completeLocked(e)
	s.rmu.Unlock()
	if ack {
		s.want(ctlAck)
	}
	return nil
}

// rebuildLocked reconstructs the missing data shards of e; rmu is released
// while Reed-Solomon runs (shards arriving meanwhile are discarded).
func (s *Conn) rebuildLocked(e *rxBlock) error {
	e.rebuilding = true
	work := make([][]byte, e.n)
	for i := range work {
		switch {
		case e.shards[i] != nil:
			work[i] = e.shards[i]
		case i < e.d:
			work[i] = s.getRxBufLocked()[:0]
		}
	}
	enc := s.encoder(e.d)
	s.rmu.Unlock()
	err := enc.ReconstructData(work)
	s.rmu.Lock()
	e.rebuilding = false
	if err != nil {
		return protoErrf("rebuilding block %d: %v", e.block, err)
	}
	for i := 0; i < e.d; i++ {
		if e.shards[i] == nil {
			e.shards[i] = work[i][:e.sl]
		}
	}
	s.st.blocksRebuilt.Add(1)
	return nil
}

// completeLocked marks e complete, frees its parity and advances the
// cumulative ack; it reports whether an ACK should be sent.
func (s *Conn) completeLocked(e *rxBlock) bool {
	e.complete = true
	for i := e.d; i < len(e.shards); i++ {
		if e.shards[i] != nil {
			s.putRxBufLocked(e.shards[i])
			e.shards[i] = nil
		}
	}
	s.st.blocksReceived.Add(1)
	advanced := false
	for s.rcum < s.known {
		c := &s.rx[s.rcum%uint64(s.wnd)]
		if c.block != s.rcum || !c.complete {
			break
		}
		s.rcum++
		advanced = true
	}
	if advanced {
		signal(s.readWake)
	}
	return advanced
}

// discard reads and drops a payload nobody needs.
func (s *Conn) discard(br *bufio.Reader, n int) error {
	s.st.shardsDiscarded.Add(1)
	_, err := br.Discard(n)
	return err
}

func (s *Conn) isDead() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// readLocked copies complete data into p; it returns the bytes copied, an
// error or io.EOF when no data is left, and whether an ACK should be sent
// because the window opened.
func (s *Conn) readLocked(p []byte) (int, error, bool) {
	n := 0
	ack := false
	for n < len(p) && s.consumed < s.rcum {
		e := &s.rx[s.consumed%uint64(s.wnd)]
		if s.readOff == 0 && e.offset != s.readOffset {
			return n, protoErrf("block %d at offset %d, expected %d", e.block, e.offset, s.readOffset), false
		}
		for s.readOff < e.dlen && n < len(p) {
			j := s.readOff / e.sl
			o := s.readOff - j*e.sl
			end := min(e.sl, e.dlen-j*e.sl)
			c := copy(p[n:], e.shards[j][o:end])
			n += c
			s.readOff += c
		}
		if s.readOff < e.dlen {
			break
		}
		s.readOffset += uint64(e.dlen)
		for i := 0; i < e.d; i++ {
			if e.shards[i] != nil {
				s.putRxBufLocked(e.shards[i])
				e.shards[i] = nil
			}
		}
		e.block = noBlock
		s.consumed++
		s.readOff = 0
		if s.consumed+uint64(s.rwnd)-s.advLimit >= s.ackEvery() {
			ack = true
		}
	}
	if n > 0 {
		return n, nil, ack
	}
	if s.rfinSet && s.consumed == s.rfinBlock {
		if s.readOffset != s.rfinOffset {
			return 0, protoErrf("stream ended at offset %d, expected %d", s.readOffset, s.rfinOffset), false
		}
		return 0, io.EOF, ack
	}
	if s.isDead() {
		return 0, s.deadErr, ack
	}
	return 0, nil, ack
}

func (s *Conn) ackEvery() uint64 { return uint64(max(1, s.rwnd/4)) }

// ackLocked builds the ACK to send and records it as advertised.
func (s *Conn) ackLocked(now time.Time) wire.Ack {
	a := wire.Ack{Cum: s.rcum, Limit: s.consumed + uint64(s.rwnd)}
	if s.rfinSet {
		a.Flags |= wire.AckFin
	}
	s.advCum, s.advLimit, s.lastAckSent = a.Cum, a.Limit, now
	return a
}

// onTail handles the peer's TAIL: it learns of blocks it may have missed
// entirely, re-requests them at once and answers with an ACK.
func (s *Conn) onTail(t wire.Tail) error {
	s.rmu.Lock()
	if t.Next > s.consumed+uint64(s.rwnd) {
		s.rmu.Unlock()
		return protoErrf("tail at block %d beyond window %d+%d", t.Next, s.consumed, s.rwnd)
	}
	if t.Flags&wire.TailFin != 0 {
		if s.rfinSet && (t.Next != s.rfinBlock || t.EndOffset != s.rfinOffset) {
			s.rmu.Unlock()
			return protoErrf("end of stream moved from block %d to %d", s.rfinBlock, t.Next)
		}
		if s.known > t.Next {
			s.rmu.Unlock()
			return protoErrf("end of stream at block %d but block %d seen", t.Next, s.known-1)
		}
		s.rfinSet, s.rfinBlock, s.rfinOffset = true, t.Next, t.EndOffset
		signal(s.readWake)
	}
	now := time.Now()
	since := now
	if t.Flags&wire.TailProbe != 0 {
		// The sender probes only after MaxHold without progress: blocks
		// it names that we never heard of are overdue already.
		since = now.Add(-s.cfg.MaxHold)
	}
	s.learnLocked(t.Next, since)
	bits := uint32(ctlAck)
	if s.scanNacksLocked(now) {
		bits |= ctlNack
	}
	s.rmu.Unlock()
	s.want(bits)
	return nil
}

// scanNacksLocked queues NACK entries for overdue incomplete blocks and
// reports whether there are any.
func (s *Conn) scanNacksLocked(now time.Time) bool {
	bl := wire.BitmapLen(s.shards)
	for b := max(s.rcum, s.consumed); b < s.known && len(s.nackOut) < wire.MaxNackEntries; b++ {
		e := &s.rx[b%uint64(s.wnd)]
		if e.block != b || e.complete || e.rebuilding {
			continue
		}
		since := e.knownSince
		if e.lastNack.After(since) {
			since = e.lastNack
		}
		if now.Sub(since) < s.cfg.MaxHold {
			continue
		}
		e.lastNack = now
		k := len(s.nackOut)
		bm := s.nackBits[k*bl : (k+1)*bl]
		clear(bm)
		for i, sh := range e.shards {
			if sh != nil {
				bm[i/8] |= 1 << (i % 8)
			}
		}
		s.nackOut = append(s.nackOut, wire.NackEntry{Block: b, Have: bm})
		s.st.blocksRerequested.Add(1)
	}
	return len(s.nackOut) > 0
}

// checkRecvLocked runs the receiver's timers: NACKs and a refreshed ACK
// when the advertised one is stale. It returns control bits to request.
func (s *Conn) checkRecvLocked(now time.Time) uint32 {
	var bits uint32
	if s.scanNacksLocked(now) {
		bits |= ctlNack
	}
	if (s.rcum != s.advCum || s.consumed+uint64(s.rwnd) != s.advLimit) && now.Sub(s.lastAckSent) >= s.tick {
		bits |= ctlAck
	}
	return bits
}
