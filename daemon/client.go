// Client side of the control socket.
//
// Data path: each request opens its own connection (so a long wait does not
// hold up anything else), sends one REQUEST frame and reads one REPLY. A
// Port is a connection after BIND: WriteTo appends a DATAGRAM frame to the
// connection's frameWriter (group-committed by its flusher, waiting while
// 256 KiB are pending); ReadFrom takes frames off the connection, answering
// itself the MAXPAYLOAD answers and write errors that come in between
// datagrams.
package daemon

import (
	"bufio"
	"context"
	"encoding/json"
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
	"github.com/servald/servald/mesh"
)

// ErrNotRunning means no daemon answers on the socket: there is no socket
// file, or it is a dead daemon's.
var ErrNotRunning = errors.New("daemon: not running")

// ErrDaemonGone is returned by a Port whose daemon closed the connection
// (it stopped, or unbound the port). It wraps net.ErrClosed.
var ErrDaemonGone = fmt.Errorf("daemon: connection to the daemon lost: %w", net.ErrClosed)

// Status describes a running daemon.
type Status struct {
	SID        identity.SID
	PID        int
	UDP        net.Addr // the node's UDP socket
	Neighbours int
	Routes     int
	Uptime     time.Duration
	Stats      mesh.Stats
}

// Client talks to one daemon. Its methods are safe for concurrent use.
type Client struct {
	path   string
	status Status

	mu      sync.Mutex
	ports   map[*Port]struct{}   // open ports; guarded by mu
	adverts map[*Advert]struct{} // standing advertisements; guarded by mu
	closed  bool                 // guarded by mu
}

// Dial connects to the daemon listening on sockPath and asks its status.
// With nothing answering there, the error wraps ErrNotRunning.
func Dial(ctx context.Context, sockPath string) (*Client, error) {
	c := &Client{path: sockPath, ports: map[*Port]struct{}{}, adverts: map[*Advert]struct{}{}}
	st, err := c.Status(ctx)
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		// It took the connection and died (or is dying: stop, kill -9)
		// before it answered.
		return nil, fmt.Errorf("%w (the daemon on %s went away: %v)", ErrNotRunning, sockPath, err)
	}
	if err != nil {
		return nil, err
	}
	c.status = st
	return c, nil
}

// SID returns the daemon node's SID (as of Dial).
func (c *Client) SID() identity.SID { return c.status.SID }

// PID returns the daemon's process id (as of Dial).
func (c *Client) PID() int { return c.status.PID }

// UDPAddr returns the daemon node's UDP address (as of Dial).
func (c *Client) UDPAddr() net.Addr { return c.status.UDP }

// Close closes every port bound and withdraws every service advertised
// through c; later calls return net.ErrClosed.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ports, adverts := c.ports, c.adverts
	c.ports, c.adverts = nil, nil
	c.mu.Unlock()
	for p := range ports {
		p.Close()
	}
	for a := range adverts {
		a.Close()
	}
	return nil
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// connect opens a connection to the daemon.
func (c *Client) connect(ctx context.Context) (*net.UnixConn, error) {
	if c.isClosed() {
		return nil, net.ErrClosed
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", c.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w (no daemon on %s)", ErrNotRunning, c.path)
		}
		return nil, fmt.Errorf("daemon: %w", err)
	}
	return conn.(*net.UnixConn), nil
}

// send writes one request on conn, honouring ctx.
func sendRequest(ctx context.Context, conn net.Conn, req request) error {
	req.V = ProtocolVersion
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("daemon: %w", err)
	}
	if d, ok := ctx.Deadline(); ok {
		conn.SetWriteDeadline(d)
	}
	_, err = conn.Write(appendFrame(nil, frameRequest, b))
	conn.SetWriteDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("daemon: send %s request: %w", req.Op, err)
	}
	return nil
}

// readReply reads one reply from r; a reply carrying an error becomes a
// *RemoteError.
func readReply(r io.Reader, op string) (reply, error) {
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return reply{}, fmt.Errorf("daemon: %s: no reply: %w", op, err)
	}
	_, _, _, err := parseFrame(append(hdr[:], 0), maxReply)
	if err != nil {
		return reply{}, fmt.Errorf("daemon: %s: %w", op, err)
	}
	l := int(hdr[0])<<24 | int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
	b := make([]byte, l)
	if _, err := io.ReadFull(r, b); err != nil {
		return reply{}, fmt.Errorf("daemon: %s: short reply: %w", op, err)
	}
	if b[0] != frameReply {
		return reply{}, fmt.Errorf("daemon: %s: %w: frame type %q instead of a reply", op, errMalformed, b[0])
	}
	rep, err := parseReply(b[1:])
	if err != nil {
		return reply{}, fmt.Errorf("daemon: %s: %w", op, err)
	}
	if rep.Error != "" {
		return rep, &RemoteError{Code: rep.Code, Msg: rep.Error}
	}
	return rep, nil
}

// do sends one request on a new connection and returns the reply.
func (c *Client) do(ctx context.Context, req request) (reply, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := sendRequest(ctx, conn, req); err != nil {
		return reply{}, ctxErr(ctx, refusal(conn, err))
	}
	rep, err := readReply(conn, req.Op)
	return rep, ctxErr(ctx, err)
}

// refusal returns the daemon's reason when a request could not be sent
// because the daemon refused the connection (it answers before closing),
// else err.
func refusal(conn net.Conn, err error) error {
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, rerr := readReply(conn, "connect")
	var re *RemoteError
	if errors.As(rerr, &re) {
		return re
	}
	return err
}

// ctxErr prefers the context's error when it ended an operation.
func ctxErr(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	var re *RemoteError
	if errors.As(err, &re) {
		return err
	}
	return fmt.Errorf("daemon: %w", ctx.Err())
}

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (Status, error) {
	rep, err := c.do(ctx, request{Op: opStatus})
	if err != nil {
		return Status{}, err
	}
	st := rep.Status
	if st == nil {
		return Status{}, fmt.Errorf("daemon: status: %w: empty reply", errMalformed)
	}
	if st.Proto != ProtocolVersion {
		return Status{}, fmt.Errorf("daemon: the daemon speaks protocol %d, this program %d: restart it", st.Proto, ProtocolVersion)
	}
	return Status{
		SID: st.SID, PID: st.PID, UDP: parseAddr(st.UDP),
		Neighbours: st.Neighbours, Routes: st.Routes,
		Uptime: time.Duration(st.UptimeMS) * time.Millisecond, Stats: st.Stats,
	}, nil
}

// Routes returns the daemon node's routing table, nearest first.
func (c *Client) Routes(ctx context.Context) ([]mesh.Route, error) {
	rep, err := c.do(ctx, request{Op: opRoutes})
	if err != nil {
		return nil, err
	}
	return routesFromJSON(rep.Routes), nil
}

// Neighbours returns the daemon node's neighbours.
func (c *Client) Neighbours(ctx context.Context) ([]mesh.Neighbour, error) {
	rep, err := c.do(ctx, request{Op: opNeighbours})
	if err != nil {
		return nil, err
	}
	return neighboursFromJSON(rep.Neighbours), nil
}

// waitGrace is how long past the caller's deadline a wait's reply is
// awaited, so that the daemon's explanation arrives.
const waitGrace = time.Second

// WaitReachable waits until the daemon's node has a route to sid, or ctx
// ends. The error then is the node's explanation (wrapping mesh.ErrNoRoute)
// when ctx had a deadline, or ctx's error when it was cancelled.
func (c *Client) WaitReachable(ctx context.Context, sid identity.SID) error {
	timeout := maxWait
	if d, ok := ctx.Deadline(); ok {
		timeout = min(time.Until(d), maxWait)
	}
	if timeout < time.Millisecond {
		timeout = time.Millisecond
	}
	conn, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	// On cancellation give up at once; on the deadline wait a little for
	// the daemon's answer.
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			conn.SetReadDeadline(time.Now().Add(waitGrace))
			return
		}
		conn.SetDeadline(time.Now())
	})
	defer stop()
	if err := sendRequest(ctx, conn, request{Op: opWait, SID: &sid, TimeoutMS: max(timeout.Milliseconds(), 1)}); err != nil {
		return err
	}
	_, err = readReply(conn, opWait)
	var re *RemoteError
	if err != nil && !errors.As(err, &re) && ctx.Err() != nil {
		return fmt.Errorf("daemon: wait for %s: %w", sid.Short(), ctx.Err())
	}
	return err
}

// Stop asks the daemon to stop and waits until it has closed its node and
// released the instance, or ctx ends. It returns the daemon's pid.
func (c *Client) Stop(ctx context.Context) (int, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := sendRequest(ctx, conn, request{Op: opStop}); err != nil {
		return 0, ctxErr(ctx, err)
	}
	rep, err := readReply(conn, opStop)
	if err != nil {
		return 0, ctxErr(ctx, err)
	}
	pid := 0
	if rep.Stopping != nil {
		pid = rep.Stopping.PID
	}
	// The daemon closes this connection as the last thing it does.
	var b [64]byte
	for {
		if _, err := conn.Read(b[:]); err != nil {
			if ctx.Err() != nil {
				return pid, fmt.Errorf("daemon: waiting for pid %d to stop: %w", pid, ctx.Err())
			}
			return pid, nil
		}
	}
}

// Advert is a service the daemon advertises for this client.
type Advert struct {
	c    *Client
	conn net.Conn
	once sync.Once
}

// Advertise makes the daemon answer discovery queries for service name at
// MDP port (a port this client bound, say) until the Advert or the Client
// is closed, or this process ends. Several clients may advertise the same
// name.
func (c *Client) Advertise(ctx context.Context, name string, port uint16) (*Advert, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	err = sendRequest(ctx, conn, request{Op: opAdvertise, Service: name, Port: port})
	if err != nil {
		err = refusal(conn, err)
	} else {
		_, err = readReply(conn, opAdvertise)
	}
	if !stop() {
		err = ctxErr(ctx, fmt.Errorf("daemon: advertise: %w", ctx.Err()))
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	a := &Advert{c: c, conn: conn}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		conn.Close()
		return nil, net.ErrClosed
	}
	c.adverts[a] = struct{}{}
	c.mu.Unlock()
	return a, nil
}

// Close withdraws the advertisement. It is idempotent.
func (a *Advert) Close() error {
	a.once.Do(func() {
		a.conn.Close()
		a.c.mu.Lock()
		delete(a.c.adverts, a)
		a.c.mu.Unlock()
	})
	return nil
}

// Bind binds an MDP port on the daemon's node (0: any free one) and returns
// it. Its datagrams travel over a connection of their own; closing the
// Port (or the Client) unbinds it at once.
func (c *Client) Bind(ctx context.Context, port uint16) (*Port, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	if err := sendRequest(ctx, conn, request{Op: opBind, Port: port}); err != nil {
		stop()
		err = refusal(conn, err)
		conn.Close()
		return nil, ctxErr(ctx, err)
	}
	// Datagrams may follow the reply at once: read it through the
	// buffer that will read them.
	fr := newFrameReader(bufio.NewReaderSize(conn, frameHeaderLen+maxDataFrame))
	rep, err := readBindReply(fr)
	if !stop() {
		err = ctxErr(ctx, fmt.Errorf("daemon: bind: %w", ctx.Err()))
	}
	conn.SetDeadline(time.Time{})
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &Port{
		c:      c,
		conn:   conn,
		local:  mesh.Addr{SID: rep.SID, Port: rep.Port},
		defMax: rep.MaxPayload,
		fr:     fr,
		fw:     newFrameWriter(conn),
		mp:     map[identity.SID]*mtuEntry{},
		errs:   map[identity.SID]error{},
		wd:     makeDeadline(),
		done:   make(chan struct{}),
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		p.Close()
		return nil, net.ErrClosed
	}
	c.ports[p] = struct{}{}
	c.mu.Unlock()
	return p, nil
}

func readBindReply(fr *frameReader) (*boundJSON, error) {
	typ, body, err := fr.next(maxDataFrame)
	if err != nil {
		return nil, fmt.Errorf("daemon: bind: no reply: %w", err)
	}
	if typ != frameReply {
		return nil, fmt.Errorf("daemon: bind: %w: frame type %q instead of a reply", errMalformed, typ)
	}
	rep, err := parseReply(body)
	if err != nil {
		return nil, fmt.Errorf("daemon: bind: %w", err)
	}
	if rep.Error != "" {
		return nil, &RemoteError{Code: rep.Code, Msg: rep.Error}
	}
	if rep.Bound == nil || rep.Bound.MaxPayload <= 0 || rep.Bound.MaxPayload > mesh.MaxPayload {
		return nil, fmt.Errorf("daemon: bind: %w: no binding in the reply", errMalformed)
	}
	return rep.Bound, nil
}

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
	defMax int // max payload towards a SID without a known path

	rmu sync.Mutex
	fr  *frameReader // guarded by rmu

	fw *frameWriter
	wd deadline

	dmu    sync.Mutex // orders read-deadline changes with Close
	closed atomic.Bool
	gone   atomic.Bool // the daemon closed the connection
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
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				return 0, nil, ErrDaemonGone
			}
			return 0, nil, fmt.Errorf("daemon: read: %v: %w", err, ErrDaemonGone)
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

func (p *Port) learnMTU(sid identity.SID, max int) {
	p.mpMu.Lock()
	defer p.mpMu.Unlock()
	e := p.mp[sid]
	if e == nil {
		if len(p.mp) >= maxMTUEntries {
			clear(p.mp)
		}
		e = &mtuEntry{}
		p.mp[sid] = e
	}
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
	e := p.mp[sid]
	if e == nil {
		if len(p.mp) >= maxMTUEntries {
			clear(p.mp)
		}
		e = &mtuEntry{}
		p.mp[sid] = e
	}
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

// PeerAddr returns the address of port on node sid (a mesh.Addr), as
// msp.Transport asks.
func (p *Port) PeerAddr(sid identity.SID, port uint16) net.Addr {
	return mesh.Addr{SID: sid, Port: port}
}

// FromNode reports whether a datagram ReadFrom returned with address addr
// was sent by node sid, as msp.Transport asks.
func (p *Port) FromNode(addr net.Addr, sid identity.SID) bool {
	a, ok := addr.(mesh.Addr)
	return ok && a.SID == sid
}

// WriteTo sends b to addr (a mesh.Addr) through the daemon. It waits while
// 256 KiB are already on their way to the daemon.
func (p *Port) WriteTo(b []byte, addr net.Addr) (int, error) {
	a, ok := addr.(mesh.Addr)
	if !ok {
		if ap, isPtr := addr.(*mesh.Addr); isPtr && ap != nil {
			a, ok = *ap, true
		}
	}
	if !ok {
		return 0, fmt.Errorf("daemon: write to %v: not an MDP address", addr)
	}
	if p.closed.Load() {
		return 0, net.ErrClosed
	}
	if p.gone.Load() {
		return 0, ErrDaemonGone
	}
	if err := p.takeErr(a.SID); err != nil {
		return 0, err
	}
	if len(b) > mesh.MaxPayload {
		return 0, fmt.Errorf("daemon: write %d bytes to %s: %w (max %d)", len(b), a.SID.Short(), mesh.ErrTooLarge, mesh.MaxPayload)
	}
	err := p.fw.write(frameHeaderLen+1+addrLen+len(b), func(buf []byte) []byte { return appendDatagram(buf, a, b) }, true, p.wd.wait())
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
	p.wd.set(t)
	return nil
}

// deadline is a settable deadline whose wait channel is closed when it
// passes.
type deadline struct {
	mu    sync.Mutex
	timer *time.Timer   // guarded by mu
	ch    chan struct{} // guarded by mu
	isSet bool          // guarded by mu
}

func makeDeadline() deadline { return deadline{ch: make(chan struct{})} }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	d.ch = make(chan struct{}) // a fresh channel: an old timer closes only its own
	d.isSet = !t.IsZero()
	if !d.isSet {
		return
	}
	if dur := time.Until(t); dur > 0 {
		ch := d.ch
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	close(d.ch)
}

// wait returns a channel closed when the deadline passes; nil if none is set.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.isSet {
		return nil
	}
	return d.ch
}
