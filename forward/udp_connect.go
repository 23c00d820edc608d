package forward

// The connecting side of UDP flows (see udp.go): the local socket's
// clients, each a flow numbered in order of arrival.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// udpClient is a connecting side's flow: one local client address.
type udpClient struct {
	id   uint64
	addr net.Addr
}

// udpConnector is one ServeConnect call's state.
type udpConnector struct {
	u      *UDPFlows
	pc     net.PacketConn
	byAddr *flowTable[string, *udpClient]

	mu   sync.Mutex
	byID map[uint64]*udpClient // guarded by mu; the same flows as byAddr
}

// ServeConnect takes datagrams from clients on pc and carries each
// client's as a flow in the session that session returns (asked again once
// the one it gave has ended, so a redialer gives a new one), and writes
// the replies back to the client of their flow, until ctx ends (ctx.Err())
// or pc is closed (nil). It closes pc.
func (u *UDPFlows) ServeConnect(ctx context.Context, pc net.PacketConn, session func(context.Context) (DialedSession, error)) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer func() {
		cancel()
		stop()
		pc.Close()
		wg.Wait()
		u.flows.Store(0)
	}()
	growReadBuffer(pc)
	c := &udpConnector{u: u, pc: pc, byAddr: newFlowTable[string, *udpClient](), byID: map[uint64]*udpClient{}}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sweep(ctx, sweepEvery(u.idle()), c.forgetIdle)
	}()
	var (
		cur   DialedSession
		next  uint64
		frame []byte
	)
	buf := make([]byte, maxUDP)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("forward: UDP: %w", err)
		}
		now := time.Now()
		cl, ok := c.byAddr.get(from.String(), now)
		if !ok {
			cl = &udpClient{id: next, addr: from}
			next++
			c.add(cl, now)
		}
		if cur = c.session(ctx, cur, session, &wg); cur == nil {
			continue
		}
		frame = u.send(cur, frame, cl.id, buf[:n])
	}
}

// session returns cur, or while it has ended the one session returns
// then, whose replies a new goroutine (in wg) writes back; nil if there is
// none (the datagram is dropped and counted).
func (c *udpConnector) session(ctx context.Context, cur DialedSession, session func(context.Context) (DialedSession, error), wg *sync.WaitGroup) DialedSession {
	if cur != nil && !isDone(cur) {
		return cur
	}
	s, err := session(ctx)
	if err != nil {
		c.u.sendErrors.Add(1)
		c.u.log().Warn("forward: UDP datagram dropped: no session", "err", err)
		return nil
	}
	if s != cur {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.replies(ctx, s)
		}()
	}
	return s
}

func isDone(s DatagramSession) bool {
	select {
	case <-s.Done():
		return true
	default:
		return false
	}
}

// add holds a new flow, forgetting the one idle longest if full.
func (c *udpConnector) add(cl *udpClient, now time.Time) {
	c.mu.Lock()
	c.byID[cl.id] = cl
	c.mu.Unlock()
	c.u.opened.Add(1)
	c.u.flows.Add(1)
	if old, ok := c.byAddr.add(cl.addr.String(), cl, now, c.u.maxFlows(), nil); ok {
		c.forget(old)
		c.u.evicted.Add(1)
	}
}

func (c *udpConnector) forget(cls ...*udpClient) {
	c.mu.Lock()
	for _, cl := range cls {
		delete(c.byID, cl.id)
	}
	c.mu.Unlock()
	c.u.flows.Add(-int64(len(cls)))
}

func (c *udpConnector) forgetIdle(now time.Time) {
	idle := c.u.idle()
	gone := c.byAddr.remove(func(_ string, _ *udpClient, last time.Time) bool { return now.Sub(last) > idle })
	c.forget(gone...)
	c.u.expired.Add(uint64(len(gone)))
}

// replies writes the datagrams of s to the clients of their flows, until
// s or ctx ends.
func (c *udpConnector) replies(ctx context.Context, s DialedSession) {
	for {
		p, err := s.ReceiveDatagram(ctx)
		if err != nil {
			return
		}
		id, payload, err := parseFlow(p)
		if err != nil {
			c.u.unknown.Add(1)
			continue
		}
		c.mu.Lock()
		cl := c.byID[id]
		c.mu.Unlock()
		if cl == nil {
			c.u.unknown.Add(1)
			continue
		}
		c.byAddr.get(cl.addr.String(), time.Now())
		if _, err := c.pc.WriteTo(payload, cl.addr); err == nil {
			c.u.out.Add(1)
		}
	}
}
