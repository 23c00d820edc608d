package daemon

// The remote PacketConn: an MDP port bound through the daemon.
//
// Data path: a Port is a control-socket connection after BIND. WriteTo
// (WriteToWithin: a TIMED frame) appends a DATAGRAM frame to the connection's frameWriter
// (group-committed by its flusher, waiting while 256 KiB are pending, until
// the write deadline); ReadFrom takes frames off the connection, answering
// itself the MAXPAYLOAD answers and write errors that come in between
// datagrams.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/deadline"
	"github.com/servald/servald/mesh"
)

// mtuTTL is how long a MaxPayload answer is used before it is asked again:
// short, because a path's MTU grows in the first moments of a link.
const mtuTTL = 250 * time.Millisecond

// maxMTUEntries bounds the MaxPayload cache of a port.
const maxMTUEntries = 4096

type mtuEntry struct {
	max     int       // 0: not known yet
	at      time.Time // when max was learnt
	askedAt time.Time // when it was last asked for
}

// Port is an MDP port bound through the daemon. It implements
// net.PacketConn (with mesh.Addr addresses) and msp.Transport (its write
// errors unwrap to mesh.ErrNoRoute and mesh.ErrTooLarge, which msp tells
// apart).
//
// Errors of a datagram that the daemon could not send (no route, too large
// for the path) come back asynchronously, as ICMP errors do on a UDP
// socket: the next WriteTo to that SID returns it and sends nothing.
type Port struct {
	c      *Client
	conn   *net.UnixConn
	local  mesh.Addr
	defMax int  // max payload towards a SID without a known path
	noProg bool // the daemon takes NO-PROGRESS frames
	timed  bool // the daemon takes TIMED frames (WriteToWithin)
	// reports: the daemon takes REPORT frames (report.go).
	reports    bool
	reportFn   atomic.Pointer[func() Report]
	reportOnce sync.Once
	reportWG   sync.WaitGroup // the report goroutine

	rmu sync.Mutex
	fr  *frameReader // guarded by rmu

	fw *frameWriter
	wd deadline.Timer // the write deadline

	dmu    sync.Mutex // orders read-deadline changes with Close
	closed atomic.Bool
	gone   atomic.Bool // the daemon closed the connection
	stop   atomic.Bool // the daemon said it was stopping
	once   sync.Once
	done   chan struct{}

	mpMu sync.Mutex
	mp   map[identity.SID]*mtuEntry // guarded by mpMu

	errMu   sync.Mutex
	errs    map[identity.SID]error // pending write errors; guarded by errMu
	nerrs   atomic.Int32           // len(errs), read without the lock
	dropped atomic.Uint64          // write errors not kept (table full)
}

// maxPendingErrs bounds the write errors a port keeps.
const maxPendingErrs = 1024

// LocalAddr returns the daemon's SID and the bound port.
func (p *Port) LocalAddr() net.Addr { return p.local }

// ReadFrom reads one datagram; the address is a mesh.Addr. A datagram
// longer than b is cut to fit, as on a UDP socket.
func (p *Port) ReadFrom(b []byte) (int, net.Addr, error) {
	if p.closed.Load() {
		return 0, nil, net.ErrClosed
	}
	p.rmu.Lock()
	defer p.rmu.Unlock()
	for {
		if p.closed.Load() {
			return 0, nil, net.ErrClosed
		}
		typ, body, err := p.fr.next(maxDataFrame)
		if err != nil {
			switch {
			case p.closed.Load():
				return 0, nil, net.ErrClosed
			case errors.Is(err, os.ErrDeadlineExceeded):
				return 0, nil, os.ErrDeadlineExceeded
			}
			p.gone.Store(true)
			gone := ErrDaemonGone
			if p.stop.Load() {
				gone = ErrDaemonStopping
			}
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return 0, nil, gone
			}
			return 0, nil, fmt.Errorf("daemon: read: %v: %w", err, gone)
		}
		switch typ {
		case frameData:
			from, payload, err := parseDatagram(body)
			if err != nil {
				return 0, nil, p.protocolError(err)
			}
			return copy(b, payload), from, nil
		case frameMTU:
			sid, max, err := parseMTU(body)
			if err != nil {
				return 0, nil, p.protocolError(err)
			}
			p.learnMTU(sid, max)
		case frameWriteErr:
			we, err := parseWriteErr(body)
			if err != nil {
				return 0, nil, p.protocolError(err)
			}
			p.learnMTU(we.SID, we.MaxPayload)
			p.keepErr(we)
		case frameStopping:
			if len(body) != 0 {
				return 0, nil, p.protocolError(fmt.Errorf("%w: %d bytes in a stopping frame", errMalformed, len(body)))
			}
			// The port still sends for a moment (the sessions' goodbyes);
			// the connection closes next.
			p.stop.Store(true)
			return 0, nil, ErrDaemonStopping
		default:
			return 0, nil, p.protocolError(fmt.Errorf("%w: frame type %q on a bound connection", errMalformed, typ))
		}
	}
}

// protocolError ends the connection after the daemon sent garbage.
func (p *Port) protocolError(err error) error {
	p.gone.Store(true)
	p.conn.Close()
	return fmt.Errorf("daemon: %v: %w", err, ErrDaemonGone)
}

// mtuEntryLocked returns sid's MaxPayload cache entry, made if need be
// (the cache is emptied when full). Called with p.mpMu held.
func (p *Port) mtuEntryLocked(sid identity.SID) *mtuEntry {
	e := p.mp[sid]
	if e == nil {
		if len(p.mp) >= maxMTUEntries {
			clear(p.mp)
		}
		e = &mtuEntry{}
		p.mp[sid] = e
	}
	return e
}

func (p *Port) learnMTU(sid identity.SID, max int) {
	p.mpMu.Lock()
	defer p.mpMu.Unlock()
	e := p.mtuEntryLocked(sid)
	e.max, e.at = max, time.Now()
}

func (p *Port) keepErr(we writeErr) {
	err := &RemoteError{Code: we.Code, Msg: we.Msg}
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if _, ok := p.errs[we.SID]; !ok && len(p.errs) >= maxPendingErrs {
		p.dropped.Add(1)
		return
	}
	p.errs[we.SID] = err
	p.nerrs.Store(int32(len(p.errs)))
}

// takeErr returns and forgets the pending write error for sid.
func (p *Port) takeErr(sid identity.SID) error {
	if p.nerrs.Load() == 0 {
		return nil
	}
	p.errMu.Lock()
	defer p.errMu.Unlock()
	err := p.errs[sid]
	if err != nil {
		delete(p.errs, sid)
		p.nerrs.Store(int32(len(p.errs)))
	}
	return err
}

// MaxPayload returns the largest payload that reaches sid now, as the
// daemon last said (asking again, without waiting, when that is more than
// 250 ms old). Until the first answer, it is the size every link carries.
func (p *Port) MaxPayload(sid identity.SID) int {
	if sid == p.local.SID {
		return mesh.MaxPayload
	}
	now := time.Now()
	p.mpMu.Lock()
	e := p.mtuEntryLocked(sid)
	max := e.max
	ask := now.Sub(e.at) > mtuTTL && now.Sub(e.askedAt) > mtuTTL
	if ask {
		e.askedAt = now
	}
	p.mpMu.Unlock()
	if ask {
		p.fw.write(frameHeaderLen+1+sidLen, func(b []byte) []byte { return appendMTUQuery(b, sid) }, false, nil)
	}
	if max == 0 {
		return p.defMax
	}
	return max
}

// NoProgress tells the daemon that a session with node sid saw nothing
// acknowledged for several round trips (see msp.Transport), which it hands
// to its mesh.PacketConn: the daemon's router may then avoid the next hop
// towards sid. The report is advisory (dropped when 256 KiB wait for the
// daemon) and unanswered, so NoProgress cannot know whether the route
// moved: it returns true (the session then probes at once, a few packets).
// To a daemon that did not say in its BIND reply that it takes the report
// (an older one), nothing is sent and it returns false.
func (p *Port) NoProgress(sid identity.SID) bool {
	if !p.noProg || p.closed.Load() {
		return false
	}
	p.fw.write(frameHeaderLen+1+sidLen, func(b []byte) []byte { return appendNoProgress(b, sid) }, false, nil)
	return true
}

// PeerAddr returns the address of port on node sid (a mesh.Addr), as
// msp.Transport asks.
func (p *Port) PeerAddr(sid identity.SID, port uint16) net.Addr {
	return mesh.Addr{SID: sid, Port: port}
}

// FromNode reports whether a datagram ReadFrom returned with address addr
// was sent by node sid, as msp.Transport asks.
func (p *Port) FromNode(addr net.Addr, sid identity.SID) bool {
	a, ok := mesh.AddrOf(addr)
	return ok && a.SID == sid
}

// WriteTo sends b to addr (a mesh.Addr) through the daemon. It waits while
// 256 KiB are already on their way to the daemon.
func (p *Port) WriteTo(b []byte, addr net.Addr) (int, error) {
	return p.write(b, addr, 0, false)
}

// WriteToWithin sends b like WriteTo, but the datagram may be delivered
// only within budget of now, as mesh.PacketConn.WriteToWithin: the time it
// waits for room on its way to the daemon is spent from the budget, and
// the daemon's node spends the rest hop by hop, dropping the datagram
// (counted in its Stats.Late, not an error of the write) when it runs out.
// A daemon that does not take budgets (an older one, which did not say so
// when the port was bound) gets nothing: the error wraps
// errors.ErrUnsupported.
func (p *Port) WriteToWithin(b []byte, addr net.Addr, budget time.Duration) (int, error) {
	return p.write(b, addr, budget, true)
}

// write is WriteTo, or WriteToWithin when timed.
func (p *Port) write(b []byte, addr net.Addr, budget time.Duration, timed bool) (int, error) {
	a, ok := mesh.AddrOf(addr)
	if !ok {
		return 0, fmt.Errorf("daemon: write to %v: not an MDP address", addr)
	}
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.gone.Load() {
		return 0, ErrDaemonGone
	}
	if timed && !p.timed {
		return 0, fmt.Errorf("daemon: write to %s within %v: the daemon does not take budgets: %w", a.SID.Short(), budget, errors.ErrUnsupported)
	}
	if err := p.takeErr(a.SID); err != nil {
		return 0, err
	}
	if len(b) > mesh.MaxPayload {
		return 0, fmt.Errorf("daemon: write %d bytes to %s: %w (max %d)", len(b), a.SID.Short(), mesh.ErrTooLarge, mesh.MaxPayload)
	}
	size, appendFn := frameHeaderLen+1+addrLen+len(b), func(buf []byte) []byte { return appendDatagram(buf, a, b) }
	if timed {
		due := time.Now().Add(budget)
		// The budget is stamped when the frame is queued, after any wait.
		size, appendFn = size+budgetLen, func(buf []byte) []byte { return appendTimed(buf, a, time.Until(due), b) }
	}
	err := p.fw.write(size, appendFn, true, p.wd.Done())
	if err != nil {
		switch {
		case p.closed.Load():
			return 0, net.ErrClosed
		case errors.Is(err, os.ErrDeadlineExceeded):
			return 0, os.ErrDeadlineExceeded
		}
		p.gone.Store(true)
		return 0, fmt.Errorf("daemon: write: %v: %w", err, ErrDaemonGone)
	}
	return len(b), nil
}

// closeTimeout bounds how long Close waits for the daemon to take the
// datagrams already written and to unbind the port.
const closeTimeout = time.Second

// Close sends what WriteTo already accepted, unbinds the port and waits
// (at most a second) until the daemon has done so; blocked calls return
// net.ErrClosed. It is idempotent.
func (p *Port) Close() error {
	p.once.Do(func() {
		p.dmu.Lock()
		p.closed.Store(true)
		p.dmu.Unlock()
		close(p.done)
		p.reportWG.Wait()
		p.fw.drain(closeTimeout)
		// Our half-close makes the daemon unbind the port and close its
		// end; wait for that (a blocked ReadFrom sees it too).
		p.conn.CloseWrite()
		p.conn.SetReadDeadline(time.Now().Add(closeTimeout))
		p.rmu.Lock()
		io.Copy(io.Discard, p.fr.r)
		p.rmu.Unlock()
		p.conn.Close()
		p.fw.wait()
		p.c.mu.Lock()
		delete(p.c.ports, p)
		p.c.mu.Unlock()
	})
	return nil
}

// SetDeadline sets the read and write deadlines.
func (p *Port) SetDeadline(t time.Time) error {
	if err := p.SetReadDeadline(t); err != nil {
		return err
	}
	return p.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (p *Port) SetReadDeadline(t time.Time) error {
	p.dmu.Lock()
	defer p.dmu.Unlock()
	if p.closed.Load() {
		return net.ErrClosed
	}
	return p.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline: how long WriteTo may wait for
// room to queue its datagram.
func (p *Port) SetWriteDeadline(t time.Time) error {
	if p.closed.Load() {
		return net.ErrClosed
	}
	p.wd.Set(t)
	return nil
}
