package forward

// The listening side of UDP flows (see udp.go): each flow of each session
// gets its own UDP socket connected to the target, so that the target's
// replies come back to it alone.

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"
)

// flowKey names a listening side's flow: the session and the flow id the
// connecting side gave it.
type flowKey struct {
	s  DatagramSession
	id uint64
}

// bySession groups a listening side's flows by session (one peer's), so
// that a peer that opens many flows evicts its own (see flowTable.add).
func bySession(k flowKey) any { return k.s }

// udpTarget is a listening side's flow.
type udpTarget struct {
	key  flowKey
	conn net.Conn // UDP, connected to the target
}

// udpListener is one ServeListen call's state.
type udpListener struct {
	u      *UDPFlows
	target string
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	table  *flowTable[flowKey, *udpTarget]
	wg     sync.WaitGroup
}

// ServeListen takes the datagrams receive returns, with the session each
// came in, and sends each flow's to target from a UDP socket of the
// flow's own, whose replies go back in the flow's session; dial opens
// those sockets (nil: net.Dialer). It runs until ctx ends (ctx.Err()) or
// receive returns net.ErrClosed (nil), and then closes its flows.
func (u *UDPFlows) ServeListen(ctx context.Context, receive func(context.Context) (DatagramSession, []byte, error),
	target string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) error {
	if dial == nil {
		dial = (&net.Dialer{Timeout: DialTimeout}).DialContext
	}
	l := &udpListener{u: u, target: target, dial: dial, table: newFlowTable[flowKey, *udpTarget]()}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		l.close(l.table.remove(func(flowKey, *udpTarget, time.Time) bool { return true }))
		l.wg.Wait()
	}()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		sweep(ctx, sweepEvery(u.idle()), l.forgetIdle)
	}()
	for {
		s, p, err := receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		id, payload, err := parseFlow(p)
		if err != nil {
			u.unknown.Add(1)
			continue
		}
		f, ok := l.flow(ctx, flowKey{s: s, id: id})
		if !ok {
			continue
		}
		if _, err := f.conn.Write(payload); err == nil {
			u.out.Add(1)
		}
	}
}

// flow returns key's flow, opening it (and its socket, and the goroutine
// that reads it) if it is new; false if the target cannot be reached.
func (l *udpListener) flow(ctx context.Context, key flowKey) (*udpTarget, bool) {
	now := time.Now()
	if f, ok := l.table.get(key, now); ok {
		return f, true
	}
	u := l.u
	conn, err := l.dial(ctx, "udp", l.target)
	if err != nil {
		u.sendErrors.Add(1)
		u.log().Warn("forward: UDP flow: cannot reach the target", "target", l.target, "err", err)
		return nil, false
	}
	growReadBuffer(conn)
	f := &udpTarget{key: key, conn: conn}
	u.opened.Add(1)
	u.flows.Add(1)
	if old, ok := l.table.add(key, f, now, u.maxFlows(), bySession); ok {
		u.evicted.Add(1)
		l.close([]*udpTarget{old})
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		u.targetReplies(f, l.table)
	}()
	return f, true
}

// close closes flows taken out of the table.
func (l *udpListener) close(fs []*udpTarget) {
	for _, f := range fs {
		f.conn.Close()
	}
	l.u.flows.Add(-int64(len(fs)))
}

// forgetIdle closes the flows idle for Idle and those whose session ended.
func (l *udpListener) forgetIdle(now time.Time) {
	idle := l.u.idle()
	gone := l.table.remove(func(k flowKey, _ *udpTarget, last time.Time) bool {
		return now.Sub(last) > idle || isDone(k.s)
	})
	l.u.expired.Add(uint64(len(gone)))
	l.close(gone)
}

// targetReplies sends what the target answers on f's socket back in f's
// session, until the socket is closed.
func (u *UDPFlows) targetReplies(f *udpTarget, table *flowTable[flowKey, *udpTarget]) {
	buf := make([]byte, maxUDP)
	var frame []byte
	for {
		n, err := f.conn.Read(buf)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue // the target's port is closed (ICMP): it may open
			}
			return // closed
		}
		table.get(f.key, time.Now())
		frame = u.send(f.key.s, frame, f.key.id, buf[:n])
	}
}
