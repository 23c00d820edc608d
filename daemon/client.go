package daemon

// Client side of the control socket: the requests.
//
// Data path: each request opens its own connection (so a long wait does not
// hold up anything else), sends one REQUEST frame and reads one REPLY, all
// in roundTrip. Most connections end there; STOP's stays until the daemon
// closes it, ADVERTISE's for as long as the advertisement stands, and
// BIND's becomes a Port (port.go).

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

// ErrDaemonStopping is returned by a Port's ReadFrom as soon as its
// daemon says it is stopping (servald stop, SIGTERM), and after that. It
// wraps ErrDaemonGone. WriteTo still sends for a moment (at most 500 ms),
// for the last datagrams of the caller's sessions; then Close the port.
var ErrDaemonStopping = fmt.Errorf("daemon: the daemon is stopping (servald stop): %w", ErrDaemonGone)

// Status describes a running daemon.
type Status struct {
	SID        identity.SID
	PID        int
	UDP        net.Addr // the node's UDP socket
	Neighbours int
	Routes     int
	Uptime     time.Duration
	Stats      mesh.Stats
	Peers      []string // the HOST:PORT it was configured to link with
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

// call is a request's connection once the reply has come, still watched by
// the request's ctx (whose end sets its deadlines to now).
type call struct {
	conn    *net.UnixConn
	ctx     context.Context
	unwatch func() bool // stops the watch; false if ctx's end fired it
}

// close ends the call.
func (x *call) close() {
	x.unwatch()
	x.conn.Close()
}

// keep stops the watch and returns the connection, its deadlines cleared,
// for the caller to own. If ctx ended during the request, the connection
// is closed and the error is ctx's.
func (x *call) keep() (*net.UnixConn, error) {
	if !x.unwatch() {
		x.conn.Close()
		return nil, fmt.Errorf("daemon: %w", x.ctx.Err())
	}
	x.conn.SetDeadline(time.Time{})
	return x.conn, nil
}

// roundTrip is every request: it opens a connection of its own, sends req
// and reads the reply with read. The end of ctx interrupts both (the
// connection's deadlines are set to now; with grace, a deadline that passes
// leaves the reply that long to arrive, so the daemon's own explanation
// comes through). A request the daemon refused gets its reason. On error
// the connection is closed; otherwise the caller ends the call (close or
// keep).
func roundTrip[T any](ctx context.Context, c *Client, req request, grace time.Duration, read func(*net.UnixConn) (T, error)) (*call, T, error) {
	var zero T
	conn, err := c.connect(ctx)
	if err != nil {
		return nil, zero, err
	}
	x := &call{conn: conn, ctx: ctx}
	x.unwatch = context.AfterFunc(ctx, func() {
		if grace > 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			conn.SetReadDeadline(time.Now().Add(grace))
			return
		}
		conn.SetDeadline(time.Now())
	})
	if err := sendRequest(ctx, conn, req); err != nil {
		err = refusal(conn, err)
		x.close()
		return nil, zero, ctxErr(ctx, err)
	}
	v, err := read(conn)
	if err != nil {
		x.close()
		return nil, zero, ctxErr(ctx, err)
	}
	return x, v, nil
}

// sendRequest writes one request on conn, honouring ctx's deadline.
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

// replyReader reads one reply of op from a connection (readReply).
func replyReader(op string) func(*net.UnixConn) (reply, error) {
	return func(conn *net.UnixConn) (reply, error) { return readReply(conn, op) }
}

// readReply reads one reply from r, nothing past it.
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
	return replyOf(op, b[0], b[1:])
}

// replyOf parses a frame that should be op's reply; a reply carrying an
// error becomes a *RemoteError.
func replyOf(op string, typ byte, body []byte) (reply, error) {
	if typ != frameReply {
		return reply{}, fmt.Errorf("daemon: %s: %w: frame type %q instead of a reply", op, errMalformed, typ)
	}
	rep, err := parseReply(body)
	if err != nil {
		return reply{}, fmt.Errorf("daemon: %s: %w", op, err)
	}
	if rep.Error != "" {
		return rep, &RemoteError{Code: rep.Code, Msg: rep.Error}
	}
	return rep, nil
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

// do sends one request and returns the reply.
func (c *Client) do(ctx context.Context, req request) (reply, error) {
	x, rep, err := roundTrip(ctx, c, req, 0, replyReader(req.Op))
	if err != nil {
		return rep, err
	}
	x.close()
	return rep, nil
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
		Uptime: time.Duration(st.UptimeMS) * time.Millisecond, Stats: st.Stats, Peers: st.Peers,
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
	req := request{Op: opWait, SID: &sid, TimeoutMS: max(timeout.Milliseconds(), 1)}
	x, _, err := roundTrip(ctx, c, req, waitGrace, replyReader(opWait))
	if err == nil {
		x.close()
		return nil
	}
	var re *RemoteError
	if !errors.As(err, &re) && ctx.Err() != nil {
		return fmt.Errorf("daemon: wait for %s: %w", sid.Short(), ctx.Err())
	}
	return err
}

// Stop asks the daemon to stop and waits until it has closed its node and
// released the instance, or ctx ends. It returns the daemon's pid.
func (c *Client) Stop(ctx context.Context) (int, error) {
	x, rep, err := roundTrip(ctx, c, request{Op: opStop}, 0, replyReader(opStop))
	if err != nil {
		return 0, err
	}
	defer x.close()
	pid := 0
	if rep.Stopping != nil {
		pid = rep.Stopping.PID
	}
	// The daemon closes this connection as the last thing it does.
	var b [64]byte
	for {
		if _, err := x.conn.Read(b[:]); err != nil {
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
	req := request{Op: opAdvertise, Service: name, Port: port}
	x, _, err := roundTrip(ctx, c, req, 0, replyReader(opAdvertise))
	if err != nil {
		return nil, err
	}
	conn, err := x.keep()
	if err != nil {
		return nil, err
	}
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

// bound is BIND's reply and the reader it came through, which datagrams
// that followed it at once may be waiting in.
type bound struct {
	*boundJSON
	fr *frameReader
}

// readBound reads BIND's reply through the buffer that will read the
// datagrams.
func readBound(conn *net.UnixConn) (bound, error) {
	fr := newFrameReader(bufio.NewReaderSize(conn, frameHeaderLen+maxDataFrame))
	typ, body, err := fr.next(maxDataFrame)
	if err != nil {
		return bound{}, fmt.Errorf("daemon: bind: no reply: %w", err)
	}
	rep, err := replyOf(opBind, typ, body)
	if err != nil {
		return bound{}, err
	}
	if rep.Bound == nil || rep.Bound.MaxPayload <= 0 || rep.Bound.MaxPayload > mesh.MaxPayload {
		return bound{}, fmt.Errorf("daemon: bind: %w: no binding in the reply", errMalformed)
	}
	return bound{rep.Bound, fr}, nil
}

// Bind binds an MDP port on the daemon's node (0: any free one) and returns
// it. Its datagrams travel over a connection of their own; closing the
// Port (or the Client) unbinds it at once.
func (c *Client) Bind(ctx context.Context, port uint16) (*Port, error) {
	x, b, err := roundTrip(ctx, c, request{Op: opBind, Port: port}, 0, readBound)
	if err != nil {
		return nil, err
	}
	conn, err := x.keep()
	if err != nil {
		return nil, err
	}
	p := &Port{
		c:       c,
		conn:    conn,
		local:   mesh.Addr{SID: b.SID, Port: b.Port},
		defMax:  b.MaxPayload,
		noProg:  b.NoProgress,
		timed:   b.Timed,
		reports: b.Report,
		fr:      b.fr,
		fw:      newFrameWriter(conn),
		mp:      map[identity.SID]*mtuEntry{},
		errs:    map[identity.SID]error{},
		done:    make(chan struct{}),
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
