package splitter

// A lane is one TCP connection of a session, with a reader and a writer
// goroutine.
//
//	writer: LANEACK/PING (this lane) + ACK/NACK/TAIL (session, healthy
//	        lanes only) + DATA shards pulled within the lane window -> writev
//	reader: frames -> onData / onAck / onNack / onTail / lane ack / close
//
// Every frame but LANEACK and CLOSE counts toward the lane's byte
// acknowledgement. The writer keeps at most ConnWindow such bytes
// unacknowledged; a lane whose acknowledgements stop for MaxHold is
// "suspect" and gets no new shards, and after StallTimeout it is closed.

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

type lane struct {
	s    *Conn
	id   uint64 // unique in the session, from 1
	conn net.Conn
	br   *bufio.Reader
	slot int
	wake chan struct{} // cap 1
	done chan struct{} // closed when the lane is removed

	// Guarded by Conn.mu.
	dead         bool
	waiting      bool // writer waits for work (kickLocked wakes it)
	hungry       bool // waiting with window room and nothing it may take
	blocked      bool // writer's window is full and work remains
	suspect      bool // bytes unacknowledged and no progress for MaxHold
	sent         uint64
	acked        uint64
	lastProgress time.Time
	lastWrite    time.Time
	sendClose    bool
	closeFrame   wire.CloseFrame

	rxBytes    atomic.Uint64 // ack-eliciting bytes read
	rxAckSent  atomic.Uint64 // last LANEACK value written
	ackWanted  atomic.Bool
	pingWanted atomic.Bool
}

const readBufSize = 8 << 10

// addLane attaches an established connection (handshake done) to the
// session and starts its goroutines. It fails if the session is over or
// full.
func (s *Conn) addLane(c net.Conn) error { return s.addLaneAt(c, -1) }

// addLaneAt is addLane into a slot reserved earlier (slot >= 0) or into
// any free one (slot < 0).
func (s *Conn) addLaneAt(c net.Conn, slot int) error {
	s.mu.Lock()
	if s.dead {
		err := s.deadErr // set with dead, under mu
		s.mu.Unlock()
		return err
	}
	for i := 0; slot < 0 && i < s.maxLanes && i < len(s.slots); i++ {
		if !s.slots[i] {
			slot = i
		}
	}
	if slot < 0 {
		s.mu.Unlock()
		return errors.New("splitter: session has its maximum of connections")
	}
	now := time.Now()
	s.laneSeq++
	l := &lane{
		id:           s.laneSeq,
		s:            s,
		conn:         c,
		br:           bufio.NewReaderSize(c, readBufSize),
		slot:         slot,
		wake:         make(chan struct{}, 1),
		done:         make(chan struct{}),
		lastProgress: now,
		lastWrite:    now,
	}
	s.slots[slot] = true
	s.lanes = append(s.lanes, l)
	if s.local == nil {
		s.local, s.remote = c.LocalAddr(), c.RemoteAddr()
	}
	opened := s.st.connsOpened.Add(1)
	if lost := s.st.connsLost.Load(); opened > 1 && s.st.connsReopened.Load() < lost {
		s.st.connsReopened.Add(1)
	}
	s.noLaneSince = time.Time{}
	s.wg.Add(2)
	s.mu.Unlock()
	s.log.Debug("splitter: connection joined", "slot", slot, "local", c.LocalAddr(), "remote", c.RemoteAddr())
	go l.readLoop()
	go l.writeLoop()
	return nil
}

// killLane removes l from the session and closes its connection.
func (s *Conn) killLane(l *lane, stalled bool, err error) { s.retireLane(l, stalled, false, err) }

// retireLane removes l from the session. Without drain it closes the
// connection at once. With drain it only ends the writing side and leaves
// the reader up to closeWriteTimeout to read what the peer sent before
// (its CLOSE frame above all), then the reader closes the connection:
// closing a socket that holds unread bytes sends a TCP reset, and a reset
// makes the peer's kernel drop what its reader had not taken yet.
func (s *Conn) retireLane(l *lane, stalled, drain bool, err error) {
	s.mu.Lock()
	if l.dead {
		s.mu.Unlock()
		return
	}
	l.dead = true
	sessionDead := s.dead
	for i, o := range s.lanes {
		if o == l {
			s.lanes = slices.Delete(s.lanes, i, i+1)
			break
		}
	}
	s.slots[l.slot] = false
	if !sessionDead {
		s.st.shardsLost.Add(uint64(s.requeueLaneLocked(l, true)))
	}
	if len(s.lanes) == 0 {
		s.noLaneSince = time.Now()
	}
	s.kickLocked()
	s.mu.Unlock()
	close(l.done)
	if drain {
		if cw, ok := l.conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		l.conn.SetReadDeadline(time.Now().Add(closeWriteTimeout))
	} else {
		l.conn.Close()
	}
	if sessionDead {
		return
	}
	s.st.connsLost.Add(1)
	if stalled {
		s.st.connsStalled.Add(1)
	}
	s.log.Debug("splitter: connection lost", "slot", l.slot, "stalled", stalled, "err", err)
	signal(s.managerWake)
}

func (l *lane) readLoop() {
	s := l.s
	defer s.wg.Done()
	err := l.readFrames()
	if errors.Is(err, ErrProtocol) {
		s.fail(err)
	}
	s.killLane(l, false, err)
	l.conn.Close() // a draining lane's connection is still open
}

func (l *lane) readFrames() error {
	s := l.s
	var hb [wire.HeaderLen + wire.DataHeaderLen]byte
	body := make([]byte, wire.MaxControlBody)
	entries := make([]wire.NackEntry, 0, wire.MaxNackEntries)
	pinged := false
	for {
		select {
		case <-s.done:
			// The session is over; read out what the peer still sends,
			// until it closes or the drain deadline passes.
			io.Copy(io.Discard, l.br)
			return net.ErrClosed
		default:
		}
		if l.br.Buffered() == 0 {
			// About to block: acknowledge what was read if the peer may
			// be waiting for it.
			un := l.rxBytes.Load() - l.rxAckSent.Load()
			if un > 0 && (pinged || un >= s.laneAck/2) {
				l.wantAck()
			}
			pinged = false
		}
		if _, err := io.ReadFull(l.br, hb[:wire.HeaderLen]); err != nil {
			return err
		}
		h, err := wire.ParseHeader(hb[:wire.HeaderLen], s.maxData)
		if err != nil {
			return protoErrf("%v", err)
		}
		n := wire.HeaderLen + h.Length
		s.st.wireReceived.Add(uint64(n))
		switch h.Type {
		case wire.TypeData:
			if _, err := io.ReadFull(l.br, hb[wire.HeaderLen:]); err != nil {
				return err
			}
			dh, err := wire.ParseDataHeader(hb[wire.HeaderLen:])
			if err != nil {
				return protoErrf("%v", err)
			}
			if err := s.onData(l.br, dh, h.Length-wire.DataHeaderLen); err != nil {
				return err
			}
		case wire.TypePing:
			pinged = true
		default:
			b := body[:h.Length]
			if _, err := io.ReadFull(l.br, b); err != nil {
				return err
			}
			if err := l.onControl(h.Type, b, entries); err != nil {
				return err
			}
			if h.Type == wire.TypeClose {
				return nil
			}
		}
		if h.Type.AckEliciting() {
			if l.rxBytes.Add(uint64(n))-l.rxAckSent.Load() >= s.laneAck {
				l.wantAck()
			}
		}
	}
}

func (l *lane) onControl(t wire.FrameType, b []byte, entries []wire.NackEntry) error {
	s := l.s
	switch t {
	case wire.TypeAck:
		a, err := wire.ParseAck(b)
		if err != nil {
			return protoErrf("%v", err)
		}
		return s.onAck(a)
	case wire.TypeNack:
		n, err := wire.ParseNack(b, entries)
		if err != nil {
			return protoErrf("%v", err)
		}
		return s.onNack(n)
	case wire.TypeTail:
		tl, err := wire.ParseTail(b)
		if err != nil {
			return protoErrf("%v", err)
		}
		return s.onTail(tl)
	case wire.TypeLaneAck:
		v, err := wire.ParseLaneAck(b)
		if err != nil {
			return protoErrf("%v", err)
		}
		return s.onLaneAck(l, v)
	case wire.TypeClose:
		c, err := wire.ParseClose(b)
		if err != nil {
			return protoErrf("%v", err)
		}
		s.onPeerClose(c)
	}
	return nil
}

func (l *lane) wantAck() {
	if !l.ackWanted.Swap(true) {
		signal(l.wake)
	}
}

// onLaneAck records the peer's count of bytes read from this lane.
func (s *Conn) onLaneAck(l *lane, v uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v > l.sent {
		return protoErrf("lane ack of %d bytes, %d sent", v, l.sent)
	}
	if v > l.acked {
		l.acked = v
		l.lastProgress = time.Now()
		s.lastLaneAck = l.lastProgress
		if l.suspect {
			l.suspect = false
			s.kickLocked()
		}
		if l.blocked {
			l.blocked = false
			signal(l.wake)
		}
	}
	return nil
}

// onPeerClose ends the session at the peer's request. A normal close
// says where the peer's stream ended: if nothing is missing, Read then
// ends with io.EOF instead of ErrPeerClosed.
func (s *Conn) onPeerClose(c wire.CloseFrame) {
	if c.Code == wire.CloseNormal {
		s.rmu.Lock()
		if !s.rfinSet && s.known <= c.Next && c.Next <= s.consumed+uint64(s.rwnd) {
			s.rfinSet, s.rfinBlock, s.rfinOffset = true, c.Next, c.EndOffset
		}
		s.rmu.Unlock()
	}
	err := ErrPeerClosed
	if c.Code != wire.CloseNormal && c.Reason != "" {
		err = errors.Join(ErrPeerClosed, errors.New("splitter: peer said: "+c.Reason))
	}
	s.log.Debug("splitter: peer closed the session", "code", c.Code, "reason", c.Reason)
	s.teardown(err, -1, "")
}

// maxCtlBytes bounds the control frames in one write.
const maxCtlBytes = wire.HeaderLen + wire.LaneAckLen + wire.HeaderLen +
	wire.HeaderLen + wire.AckLen + wire.HeaderLen + wire.MaxControlBody + wire.HeaderLen + wire.TailLen

func (l *lane) writeLoop() {
	s := l.s
	defer s.wg.Done()
	hdr := make([]byte, 0, maxCtlBytes+maxBatch*(wire.HeaderLen+wire.DataHeaderLen))
	bufs := make(net.Buffers, 0, 2*maxBatch+1)
	var items, written []txItem
	items = make([]txItem, 0, maxBatch)
	written = make([]txItem, 0, maxBatch)
	for {
		hdr, bufs, items = hdr[:0], bufs[:0], items[:0]
		select {
		case <-s.done:
			l.finish(written)
			return
		case <-l.done:
			l.release(written)
			return
		default:
		}
		now := time.Now()

		// Per-lane control (not ack-eliciting: LANEACK; eliciting: PING).
		if l.ackWanted.Swap(false) {
			v := l.rxBytes.Load()
			hdr = wire.AppendLaneAck(hdr, v)
			l.rxAckSent.Store(v)
		}
		ctlEnd := len(hdr)
		if l.pingWanted.Swap(false) {
			hdr = wire.AppendPing(hdr)
		}

		s.mu.Lock()
		s.releaseItemsLocked(written)
		written = written[:0]
		var ctl uint32
		if !l.suspect || s.healthyCountLocked() == 0 {
			ctl = s.ctlWant.Swap(0)
		}
		if ctl&ctlTail != 0 {
			hdr = wire.AppendTail(hdr, s.tailLocked())
		}
		inflight := int(l.sent - l.acked)
		var pr pullResult
		if !l.suspect {
			items, pr = s.pullLocked(l, items, s.cfg.ConnWindow-inflight)
		}
		l.blocked = pr.blocked
		if ctl&(ctlAck|ctlNack) == 0 && len(hdr) == 0 && len(items) == 0 {
			l.waiting = true
			l.hungry = !l.blocked && !l.suspect && !pr.capped
			if l.hungry {
				s.hungry++
			}
			partial := s.partialPending
			s.mu.Unlock()
			if partial {
				s.maybeSealPartial()
			}
			select {
			case <-l.wake:
			case <-l.done:
			case <-s.done:
			}
			s.mu.Lock()
			if l.hungry {
				l.hungry = false
				s.hungry--
			}
			l.waiting = false
			s.mu.Unlock()
			continue
		}
		s.mu.Unlock()

		if ctl&(ctlAck|ctlNack) != 0 {
			s.rmu.Lock()
			if ctl&ctlAck != 0 {
				hdr = wire.AppendAck(hdr, s.ackLocked(now))
			}
			if ctl&ctlNack != 0 && len(s.nackOut) > 0 {
				hdr = wire.AppendNack(hdr, wire.Nack{BitmapLen: wire.BitmapLen(s.shards), Entries: s.nackOut})
				s.nackOut = s.nackOut[:0]
			}
			s.rmu.Unlock()
		}
		total := len(hdr)
		if total > 0 {
			bufs = append(bufs, hdr[:total])
		}
		dataBytes := 0
		for _, it := range items {
			b := it.blk
			dataBytes += wire.HeaderLen + wire.DataHeaderLen + b.sl
			var fl uint8
			if it.retx {
				fl = wire.DataRetransmit
			}
			start := len(hdr)
			hdr = wire.AppendData(hdr, wire.DataHeader{
				Block: b.block, Offset: b.offset, DataLen: b.dlen, Index: it.index, Flags: fl,
			}, b.sl)
			bufs = append(bufs, hdr[start:], it.payload())
			total += len(hdr) - start + b.sl
		}
		eliciting := total - ctlEnd

		s.mu.Lock()
		if l.sent == l.acked {
			l.lastProgress = now
		}
		off := l.sent + uint64(eliciting-dataBytes)
		for _, it := range items {
			off += uint64(wire.HeaderLen + wire.DataHeaderLen + it.blk.sl)
			it.blk.where[it.index] = shardLoc{lane: l.id, end: off, nacks: it.blk.where[it.index].nacks}
		}
		l.sent += uint64(eliciting)
		l.lastWrite = now
		s.mu.Unlock()

		written = append(written, items...)
		wb := bufs // WriteTo consumes its receiver; keep bufs' capacity
		_, err := wb.WriteTo(l.conn)
		s.st.wireSent.Add(uint64(total))
		if err != nil {
			l.release(written)
			s.retireLane(l, false, true, err)
			return
		}
		s.st.shardsSent.Add(uint64(len(items)))
		for _, it := range items {
			if it.retx {
				s.st.shardsResent.Add(1)
			}
		}
	}
}

func (s *Conn) releaseItemsLocked(items []txItem) {
	for _, it := range items {
		s.releaseLocked(it.blk)
	}
}

func (l *lane) release(items []txItem) {
	l.s.mu.Lock()
	l.s.releaseItemsLocked(items)
	l.s.mu.Unlock()
}

// finish runs at session teardown: it sends CLOSE if asked to and closes
// the connection.
func (l *lane) finish(written []txItem) {
	s := l.s
	l.release(written)
	s.mu.Lock()
	send, cf, dead := l.sendClose, l.closeFrame, l.dead
	s.mu.Unlock()
	if send && !dead {
		l.conn.Write(wire.AppendClose(nil, cf))
	}
	s.retireLane(l, false, send, net.ErrClosed)
}
