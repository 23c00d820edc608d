package splitter

// The manager goroutine runs a session's timers every tick (MaxHold/4,
// 5..100 ms): re-requests (NACK) and stale ACKs on the receiving side, TAIL
// probes on the sending side, per-lane keepalive, suspicion and stall
// detection, the end of a session without connections, and on the client
// the re-dialling of lost connections (back-off, MaxConns, DialsPerSecond).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

func (s *Conn) manage() {
	defer s.wg.Done()
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case <-s.managerWake:
		}
		now := time.Now()
		s.rmu.Lock()
		bits := s.checkRecvLocked(now)
		s.rmu.Unlock()

		s.mu.Lock()
		if s.dead {
			s.mu.Unlock()
			return
		}
		stalled := s.checkLanesLocked(now)
		s.checkSendLocked(now)
		if bits != 0 {
			s.ctlWant.Or(bits)
		}
		s.kickLocked()
		partial := s.partialPending
		dials := s.planDialsLocked(now)
		var timeout error
		if len(s.lanes) == 0 && now.Sub(s.noLaneSince) >= s.cfg.PeerTimeout {
			timeout = fmt.Errorf("%w: no connection for %v", ErrPeerTimeout, s.cfg.PeerTimeout)
			if s.lastDialErr != nil {
				timeout = fmt.Errorf("%w (last dial: %v)", timeout, s.lastDialErr)
			}
		}
		s.mu.Unlock()

		for _, l := range stalled {
			s.log.Info("splitter: connection stalled, closing it", "slot", l.slot, "timeout", s.cfg.StallTimeout)
			s.killLane(l, true, errors.New("stalled"))
		}
		if partial {
			s.maybeSealPartial()
		}
		for range dials {
			go s.dialLane()
		}
		if timeout != nil {
			s.fail(timeout)
			return
		}
	}
}

// checkLanesLocked marks lanes suspect, schedules keepalives and lane
// acks, and returns the lanes that stalled.
func (s *Conn) checkLanesLocked(now time.Time) []*lane {
	var stalled []*lane
	for _, l := range s.lanes {
		if l.sent > l.acked {
			// A lane is stalled when it makes no progress while the peer
			// reads other lanes; when no lane progresses (a busy or hung
			// peer) lanes are given three times as long.
			quiet := now.Sub(l.lastProgress)
			peerReads := now.Sub(s.lastLaneAck) < s.cfg.StallTimeout
			if quiet >= s.cfg.StallTimeout && (peerReads || quiet >= 3*s.cfg.StallTimeout) {
				stalled = append(stalled, l)
				continue
			}
			if quiet >= s.cfg.MaxHold && !l.suspect {
				l.suspect = true
				n := s.requeueLaneLocked(l, false)
				s.log.Debug("splitter: connection suspect", "slot", l.slot, "unacked", l.sent-l.acked, "shards", n)
			}
		} else {
			l.suspect = false
			if now.Sub(l.lastWrite) >= s.cfg.KeepAlive {
				l.pingWanted.Store(true)
				signal(l.wake)
			}
		}
		if l.rxBytes.Load() != l.rxAckSent.Load() {
			l.ackWanted.Store(true)
			signal(l.wake)
		}
	}
	return stalled
}

// planDialsLocked decides how many connections to dial now (client only)
// and reserves them; the caller starts one dialLane goroutine for each.
func (s *Conn) planDialsLocked(now time.Time) int {
	if !s.client {
		return 0
	}
	burst := float64(s.cfg.Conns)
	s.dialTokens = min(burst, s.dialTokens+now.Sub(s.lastRefill).Seconds()*s.cfg.DialsPerSecond)
	s.lastRefill = now
	n := 0
	for len(s.lanes)+s.dialing < min(s.cfg.Conns, s.maxLanes) && !now.Before(s.nextDial) && s.dialTokens >= 1 {
		s.dialTokens--
		s.dialing++
		n++
	}
	s.wg.Add(n)
	return n
}

// dialLane opens one more connection and joins it to the session.
func (s *Conn) dialLane() {
	defer s.wg.Done()
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HandshakeTimeout)
	c, err := dialJoin(ctx, s.cfg, s.addr, s.id, s.token)
	cancel()
	if err == nil {
		if err = s.addLane(c); err != nil {
			c.Close()
		}
	}
	s.mu.Lock()
	s.dialing--
	if err != nil {
		s.dialFails++
		s.nextDial = time.Now().Add(backoff(s.dialFails))
		s.lastDialErr = err
	} else {
		s.dialFails = 0
	}
	s.mu.Unlock()
	if err != nil && s.alive() {
		s.st.dialFailures.Add(1)
		s.log.Debug("splitter: dial failed", "err", err)
		var re *RefusedError
		if errors.As(err, &re) && re.fatal() && !s.closingRace(re) {
			s.fail(err)
			return
		}
	}
	signal(s.managerWake)
}

// closingRace reports whether a join refused as naming an unknown
// session can be the listener ending the session while our live
// connections still carry its CLOSE: then the refusal is not the reason
// the session ends (the CLOSE is, or the loss of those connections).
func (s *Conn) closingRace(re *RefusedError) bool {
	if re.code != wire.RefuseUnknownSession {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lanes) > 0
}

// backoff returns the wait after n consecutive failed dials: 50 ms
// doubling up to 2 s, with jitter.
func backoff(n int) time.Duration {
	d := min(50*time.Millisecond<<min(n-1, 6), 2*time.Second)
	return d/2 + rand.N(d/2+1)
}
