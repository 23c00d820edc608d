package splitter

// Sending side of a session.
//
//	Write copies into the open block (one copy). A full block, or a partly
//	filled one when a lane is hungry, is sealed: padded, Reed-Solomon
//	encoded in place and put in the tx ring under the next block number
//	(a partly filled block has fewer shards: see geometry).
//	Lane writers pull shards (re-sends first, then new shards of the oldest
//	blocks, in index order), taking at most ceil(shards/healthy lanes)
//	of one block each, so that losing one lane costs a block few shards;
//	one write may carry shards of many blocks. For every shard the ring
//	records the lane and the lane byte count after it: a NACK re-sends a
//	shard only if that lane died, is suspect, or delivered it and the peer
//	still asks after a second NACK. A block leaves the ring when the
//	peer's cumulative ACK passes it.

import (
	"time"

	"github.com/klauspost/reedsolomon"

	"github.com/servald/servald/splitter/internal/wire"
)

// txBlock is a sealed block kept until acknowledged. Guarded by Conn.mu.
type txBlock struct {
	block   uint64
	offset  uint64
	dlen    int
	sl      int    // shard length
	d, n    int    // data shards and all shards (data and parity)
	buf     []byte // shards at i*sl, room for (D+P)*ps bytes
	refs    int    // the ring's reference plus one per shard being written
	nextIdx int    // shards below nextIdx have been handed to lanes
	lost    int    // shards lost with their lane
	retxQ   [wire.MaxShards / 64]uint64
	perLane [4 * MaxConnsPerSession]uint8 // shards handed to each lane slot
	where   []shardLoc                    // per shard: where its last copy went
}

// shardLoc records the lane a shard was last written to and that lane's
// byte count just after it.
type shardLoc struct {
	lane  uint64
	end   uint64
	nacks uint8
}

// txItem is one shard handed to a lane writer.
type txItem struct {
	blk   *txBlock
	index int
	retx  bool
}

func (it txItem) payload() []byte {
	sl := it.blk.sl
	return it.blk.buf[it.index*sl : (it.index+1)*sl]
}

// getTxBuf returns a block buffer for the open block (writeMu held).
func (s *Conn) getTxBuf() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.txBufs); n > 0 {
		b := s.txBufs[n-1]
		s.txBufs = s.txBufs[:n-1]
		return b
	}
	return make([]byte, s.shards*s.ps)
}

// releaseLocked drops one reference to b and recycles it at zero.
func (s *Conn) releaseLocked(b *txBlock) {
	b.refs--
	if b.refs > 0 {
		return
	}
	if len(s.txBufs) < s.wnd {
		s.txBufs = append(s.txBufs, b.buf)
	}
	b.buf = nil
	if len(s.txFree) < s.wnd {
		s.txFree = append(s.txFree, b)
	}
}

// canSealLocked reports whether the peer's window and our ring have room
// for block next.
func (s *Conn) canSealLocked() bool {
	return s.next < s.limit && s.next-s.cum < uint64(s.wnd)
}

// encode pads and encodes the open block in place (writeMu held) and
// returns its shard length.
func (s *Conn) encode() int {
	dlen := s.openN
	d, p := s.geometry(dlen)
	sl := (dlen + d - 1) / d
	buf := s.open
	clear(buf[dlen : d*sl])
	if p > 0 {
		sh := s.shardScratch[:d+p]
		for i := range sh {
			sh[i] = buf[i*sl : (i+1)*sl]
		}
		// Encode only fails on shard shape errors, impossible here.
		if err := s.encoder(d).Encode(sh); err != nil {
			panic("splitter: encode: " + err.Error())
		}
	}
	return sl
}

// installLocked puts the encoded open block in the ring (writeMu and mu held).
func (s *Conn) installLocked(sl int, now time.Time) {
	var b *txBlock
	if n := len(s.txFree); n > 0 {
		b = s.txFree[n-1]
		s.txFree = s.txFree[:n-1]
		b.retxQ = [len(b.retxQ)]uint64{}
		clear(b.perLane[:])
		clear(b.where)
	} else {
		b = &txBlock{where: make([]shardLoc, s.shards)}
	}
	b.nextIdx, b.lost = 0, 0
	b.block = s.next
	b.offset = s.txOffset
	b.dlen = s.openN
	b.sl = sl
	d, p := s.geometry(b.dlen)
	b.d, b.n = d, d+p
	b.buf = s.open
	b.refs = 1
	if s.cum == s.next {
		s.lastProgress = now
	}
	s.tx[s.next%uint64(s.wnd)] = b
	s.next++
	s.txOffset += uint64(s.openN)
	s.open, s.openN = nil, 0
	s.partialPending = false
	s.st.blocksSent.Add(1)
	s.setFinLocked(now)
	s.kickLocked()
}

// setFinLocked marks the end of stream once CloseWrite was called and
// every byte is sealed (mu held; reads finReq, so writeMu held too).
func (s *Conn) setFinLocked(now time.Time) {
	if !s.finReq || s.finSet || s.openN > 0 {
		return
	}
	s.finSet = true
	s.writeShut = true
	s.finBlock = s.next
	s.finOffset = s.txOffset
	if s.cum == s.next {
		s.lastProgress = now
	}
	s.ctlWant.Or(ctlTail)
	s.kickLocked()
}

// sealWait seals the full open block, waiting for window (writeMu held).
func (s *Conn) sealWait() error {
	for {
		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return s.writeErr()
		}
		if s.canSealLocked() {
			s.writeBlocked = false
			s.mu.Unlock()
			sl := s.encode()
			s.mu.Lock()
			s.installLocked(sl, time.Now())
			s.mu.Unlock()
			return nil
		}
		if !s.writeBlocked {
			s.writeBlocked = true
			s.lastProgress = time.Now()
		}
		s.mu.Unlock()
		if err := s.writeErr(); err != nil {
			return err
		}
		if err := s.wait(s.writeWake, s.writeTimer, &s.writeDL, "write"); err != nil {
			return err
		}
	}
}

// sealPartialLocked seals a partly filled open block if the window allows
// (writeMu held), and marks the end of stream if CloseWrite asked for it.
func (s *Conn) sealPartialLocked() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return
	}
	now := time.Now()
	if s.openN == 0 {
		s.partialPending = false
		s.setFinLocked(now)
		return
	}
	if !s.canSealLocked() {
		s.partialPending = true
		return
	}
	s.mu.Unlock()
	sl := s.encode()
	s.mu.Lock()
	s.installLocked(sl, now)
}

// maybeSealPartial seals the partly filled open block when a lane is idle
// (called without locks). Whoever holds writeMu when this runs calls it
// again after releasing it, so a partial block is never left behind.
func (s *Conn) maybeSealPartial() {
	for {
		s.mu.Lock()
		want := !s.dead && s.partialPending && s.hungry > 0 && s.canSealLocked()
		s.mu.Unlock()
		if !want || !s.writeMu.TryLock() {
			return
		}
		s.sealPartialLocked()
		s.writeMu.Unlock()
	}
}

// maxBatch bounds the shards in one lane write, and maxScan the blocks
// one pull looks at.
const (
	maxBatch = 16
	maxScan  = 64
)

// pullResult says why a pull stopped.
type pullResult struct {
	used    int  // frame bytes taken
	blocked bool // the lane window is full and work remains
	capped  bool // work remains that this lane may not take (per-block cap)
}

// pullLocked hands shards to lane l within budget bytes: re-sends first,
// then new shards of the oldest blocks (mu held).
func (s *Conn) pullLocked(l *lane, items []txItem, budget int) ([]txItem, pullResult) {
	var r pullResult
	fits := func(sl int) bool {
		n := wire.HeaderLen + wire.DataHeaderLen + sl
		if r.used+n > budget {
			r.blocked = true
			return false
		}
		r.used += n
		return true
	}
	for len(items) < maxBatch && s.retxHead < len(s.retx) {
		it := s.retx[s.retxHead]
		b := it.blk
		if b.block < s.cum || s.tx[b.block%uint64(s.wnd)] != b {
			s.retxHead++
			continue
		}
		if !fits(b.sl) {
			return items, r
		}
		s.retxHead++
		b.retxQ[it.index/64] &^= 1 << (it.index % 64)
		b.refs++
		items = append(items, it)
	}
	if s.retxHead == len(s.retx) {
		s.retx, s.retxHead = s.retx[:0], 0
	}
	s.sendHead = max(s.sendHead, s.cum)
	healthy := max(s.healthyCountLocked(), 1)
	for bn, scanned := s.sendHead, 0; bn < s.next && len(items) < maxBatch && scanned < maxScan; bn, scanned = bn+1, scanned+1 {
		b := s.tx[bn%uint64(s.wnd)]
		perBlock := (b.n + healthy - 1) / healthy
		room := perBlock - int(b.perLane[l.slot])
		if b.nextIdx < b.n && room <= 0 {
			r.capped = true
		}
		for ; room > 0 && b.nextIdx < b.n && len(items) < maxBatch; room-- {
			if !fits(b.sl) {
				return items, r
			}
			b.refs++
			b.perLane[l.slot]++
			items = append(items, txItem{blk: b, index: b.nextIdx})
			b.nextIdx++
		}
		if bn == s.sendHead && b.nextIdx == b.n {
			s.sendHead++
		}
	}
	return items, r
}

// healthyCountLocked counts lanes that are not suspect.
func (s *Conn) healthyCountLocked() int {
	n := 0
	for _, l := range s.lanes {
		if !l.suspect {
			n++
		}
	}
	return n
}

// laneByIDLocked returns the live lane with id, or nil.
func (s *Conn) laneByIDLocked(id uint64) *lane {
	for _, l := range s.lanes {
		if l.id == id {
			return l
		}
	}
	return nil
}

// onAck processes an ACK from the peer's receiver.
func (s *Conn) onAck(a wire.Ack) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a.Cum > s.next {
		return protoErrf("ack of block %d beyond %d sent", a.Cum, s.next)
	}
	now := time.Now()
	progressed := false
	for s.cum < a.Cum {
		i := s.cum % uint64(s.wnd)
		if b := s.tx[i]; b != nil {
			s.tx[i] = nil
			s.releaseLocked(b)
		}
		s.cum++
		progressed = true
	}
	if a.Limit > s.limit {
		s.limit = a.Limit
		progressed = true
	}
	if a.Flags&wire.AckFin != 0 && s.finSet {
		s.finAcked = true
	}
	if progressed {
		s.lastProgress = now
		signal(s.writeWake)
		s.kickLocked()
	}
	signal(s.lingerWake)
	return nil
}

// onNack queues again the shards the peer is missing.
func (s *Conn) onNack(n wire.Nack) error {
	if n.BitmapLen != wire.BitmapLen(s.shards) {
		return protoErrf("nack bitmap of %d bytes for %d shards", n.BitmapLen, s.shards)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	queued := false
	for _, e := range n.Entries {
		if e.Block < s.cum || e.Block >= s.next {
			continue
		}
		b := s.tx[e.Block%uint64(s.wnd)]
		if b == nil || b.block != e.Block {
			continue
		}
		have := 0
		for i := 0; i < b.n; i++ {
			if e.Have[i/8]&(1<<(i%8)) != 0 {
				have++
			}
		}
		need := b.d - have
		if need <= 0 {
			continue
		}
		// Data shards first (no reconstruction needed). Shards not handed
		// out yet, or in flight on a healthy lane, are on their way.
		for i := 0; i < b.n && need > 0; i++ {
			if e.Have[i/8]&(1<<(i%8)) != 0 {
				continue
			}
			if i >= b.nextIdx {
				break
			}
			need--
			if b.retxQ[i/64]&(1<<(i%64)) != 0 {
				continue
			}
			loc := &b.where[i]
			loc.nacks = min(loc.nacks+1, 255)
			if l := s.laneByIDLocked(loc.lane); l != nil && loc.lane != 0 {
				if !l.suspect && l.acked < loc.end && time.Since(l.lastProgress) < s.cfg.MaxHold/2 {
					continue // in flight on a lane that makes progress
				}
				if l.acked >= loc.end && loc.nacks < 2 {
					continue // delivered after the NACK was sent
				}
			}
			b.retxQ[i/64] |= 1 << (i % 64)
			if len(s.retx) >= 2*s.wnd*s.shards {
				s.compactRetxLocked()
			}
			s.retx = append(s.retx, txItem{blk: b, index: i, retx: true})
			queued = true
		}
	}
	if queued {
		s.kickLocked()
	}
	return nil
}

// tailLocked returns the TAIL frame describing the send state (mu held).
func (s *Conn) tailLocked() wire.Tail {
	t := wire.Tail{Next: s.next, EndOffset: s.txOffset}
	if s.finSet {
		t.Next, t.EndOffset, t.Flags = s.finBlock, s.finOffset, wire.TailFin
	}
	if s.probing {
		t.Flags |= wire.TailProbe
		s.probing = false
	}
	return t
}

// checkSend sends a TAIL probe when the peer has not acknowledged progress
// for MaxHold while we wait for it (mu held).
func (s *Conn) checkSendLocked(now time.Time) {
	waiting := s.cum < s.next || (s.finSet && !s.finAcked) || s.writeBlocked ||
		(s.partialPending && !s.canSealLocked())
	if !waiting {
		return
	}
	if now.Sub(s.lastProgress) >= s.cfg.MaxHold && now.Sub(s.lastProbe) >= s.cfg.MaxHold {
		s.lastProbe = now
		s.probing = true
		s.st.probes.Add(1)
		s.ctlWant.Or(ctlTail)
		s.kickLocked()
	}
}

// compactRetxLocked drops taken and stale entries from the re-send queue,
// which keeps it within one entry per shard of the ring (mu held).
func (s *Conn) compactRetxLocked() {
	q := s.retx[:0]
	for _, it := range s.retx[s.retxHead:] {
		b := it.blk
		if b.block >= s.cum && s.tx[b.block%uint64(s.wnd)] == b && b.retxQ[it.index/64]&(1<<(it.index%64)) != 0 {
			q = append(q, it)
		}
	}
	clear(s.retx[len(q):])
	s.retx, s.retxHead = q, 0
}

// requeueLaneLocked looks at the shards lane l carried that it has not had
// acknowledged. When lost (the lane died) they are forgotten and counted;
// either way, those that parity cannot make up for (more than P of one
// block) are queued again at once. It returns the number of such shards.
func (s *Conn) requeueLaneLocked(l *lane, lost bool) int {
	n := 0
	for bn := s.cum; bn < s.next; bn++ {
		b := s.tx[bn%uint64(s.wnd)]
		if b == nil {
			continue
		}
		risk := b.lost
		for i := 0; i < b.nextIdx; i++ {
			loc := &b.where[i]
			if loc.lane != l.id || loc.end <= l.acked {
				continue
			}
			n++
			risk++
			if lost {
				b.lost++
				loc.lane = 0
			}
			if risk > b.n-b.d && b.retxQ[i/64]&(1<<(i%64)) == 0 {
				b.retxQ[i/64] |= 1 << (i % 64)
				s.retx = append(s.retx, txItem{blk: b, index: i, retx: true})
				if lost {
					s.st.lossRequeued.Add(1)
				}
			}
		}
	}
	if n > 0 {
		s.kickLocked()
	}
	return n
}

// geometry returns the data and parity shards of a block of dlen bytes. A
// full block has D+P. A shorter one (sealed because a lane was idle: a
// small write, an echo) has only as many data shards as it fills, at least
// one, and parity in the same proportion, at least one when P > 0: so a
// short write costs a few frames on a few lanes, and its reader waits for
// the first of them, not for D shards from nearly every lane. Both ends
// derive it from the block's length, which every DATA frame carries.
func (s *Conn) geometry(dlen int) (d, p int) {
	d = min(max((dlen+s.ps-1)/s.ps, 1), s.d)
	if s.p > 0 {
		p = (s.p*d + s.d - 1) / s.d
	}
	return d, p
}

// encoder returns the Reed-Solomon codec for blocks of d data shards
// (geometry gives their parity). Codecs are safe for concurrent use.
func (s *Conn) encoder(d int) reedsolomon.Encoder {
	s.encMu.Lock()
	defer s.encMu.Unlock()
	if s.encs[d] == nil {
		_, p := s.geometry(d * s.ps)
		// New only fails for shard counts Validate has already refused.
		enc, err := reedsolomon.New(d, p, reedsolomon.WithAutoGoroutines(s.ps))
		if err != nil {
			panic("splitter: reedsolomon.New: " + err.Error())
		}
		s.encs[d] = enc
	}
	return s.encs[d]
}
