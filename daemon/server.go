package daemon

// Data path (this file): the server accepts connections; each reads one
// request and answers it. A BIND turns its connection into a datagram
// channel: one goroutine reads DATAGRAM frames from the socket and writes
// them to the bound MDP port (waiting while the next hop's queue is full,
// so a fast client is slowed, not buffered without end); another reads the
// port and appends DATAGRAM frames to the connection's frameWriter. When the
// connection closes, the port is unbound at once.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// Config configures a Server. Zero fields take defaults.
type Config struct {
	// Dir is the instance directory; the socket is Dir/servald.sock
	// (required).
	Dir string
	// Node is the node served (required). The server does not close it.
	Node *mesh.Node
	// Lock is the instance lock, taken by the caller with LockPidFile
	// before the node was started; the caller releases it. Nil: Listen
	// takes it and Close releases it.
	Lock *PidFile
	// MaxConns bounds the connections served at once. Default 1024.
	MaxConns int
	// RequestTimeout is how long a new connection may take to send its
	// request. Default 10 s.
	RequestTimeout time.Duration
	// Logger receives logs; nil is silent.
	Logger *slog.Logger
	// Peers are the HOST:PORT the node was configured to link with, for
	// the status (clients say which peer does not answer).
	Peers []string

	// Version is the program's version, for Snapshot.
	Version string
}

// maxSocketPath is the longest socket path every Unix accepts (sun_path).
const maxSocketPath = 104

// replyTimeout bounds the writing of one reply.
const replyTimeout = 5 * time.Second

// stoppingGrace bounds how long a stopping daemon keeps a bound port
// after its STOPPING notice, for the client's last datagrams.
const stoppingGrace = 500 * time.Millisecond

// Server serves one node on the instance's control socket.
type Server struct {
	cfg     Config
	node    *mesh.Node
	log     *slog.Logger
	ln      *net.UnixListener
	path    string
	sock    fs.FileInfo // the socket file, to remove only our own
	lnOnce  sync.Once
	uid     int      // the effective uid: peers must run as it, or as root
	lock    *PidFile // ours to release, or nil
	started time.Time
	sem     chan struct{} // one token per connection served

	st statusState // tunnel reports and rate samples (status.go)

	disc     *discovery.Responder // the node's discovery port, shared by every client's services
	discOnce sync.Once

	stopReq  chan struct{} // closed by a stop request
	stopOnce sync.Once
	served   atomic.Bool
	wg       sync.WaitGroup

	mu        sync.Mutex
	stopConns []net.Conn // connections of stop requests, closed by Close; guarded by mu
	closed    bool       // guarded by mu
}

// Listen takes the instance lock (unless cfg.Lock holds it already),
// replaces a stale socket, and listens on Dir/servald.sock with mode 0600
// (from the moment the name exists: see listenPrivate). Only peers running
// as the daemon's effective uid, or as root, are served.
// It binds the node's discovery port (discovery.Port) and answers queries
// there for the services its clients advertise. A *RunningError means
// another daemon holds the instance.
func Listen(cfg Config) (*Server, error) {
	if cfg.Dir == "" || cfg.Node == nil {
		return nil, errors.New("daemon: config needs Dir and Node")
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 1024
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	path := SocketPath(cfg.Dir)
	if len(path) >= maxSocketPath {
		return nil, fmt.Errorf("daemon: socket path %s is too long for a Unix socket (%d bytes, limit %d): use a shorter instance directory", path, len(path), maxSocketPath-1)
	}
	lock := cfg.Lock
	var own *PidFile
	if lock == nil {
		var err error
		if own, err = LockPidFile(cfg.Dir); err != nil {
			return nil, err
		}
	}
	// We hold the lock: a socket file here is a dead daemon's, and the
	// rename in listenPrivate replaces it.
	ln, sock, err := listenPrivate(path)
	if err != nil {
		own.Close()
		return nil, err
	}
	dpc, err := cfg.Node.Bind(discovery.Port)
	if err != nil {
		ln.Close()
		removeSocket(path, sock)
		own.Close()
		return nil, fmt.Errorf("daemon: discovery port: %w", err)
	}
	s := &Server{
		cfg: cfg, node: cfg.Node, ln: ln, path: path, sock: sock, lock: own,
		uid:     os.Geteuid(),
		disc:    discovery.NewResponder(dpc, cfg.Node.Identity(), cfg.Logger),
		log:     cfg.Logger.With("socket", path),
		started: time.Now(),
		sem:     make(chan struct{}, cfg.MaxConns),
		stopReq: make(chan struct{}),
	}
	return s, nil
}

// SocketPath returns the path of the server's socket.
func (s *Server) SocketPath() string { return s.path }

// Serve answers connections until ctx ends or a client asks the daemon to
// stop; then it closes the socket (removing its file), ends every
// connection, unbinding their ports, and returns nil. Connections that
// asked to stop stay open until Close, so that their clients learn when the
// daemon is gone. Serve may be called once.
func (s *Server) Serve(ctx context.Context) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("daemon: Serve called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-ctx.Done():
		case <-s.stopReq:
		}
		s.closeListener()
	}()
	s.wg.Add(1)
	go s.sampleLoop(ctx)
accept:
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				break
			}
			// Out of file descriptors, say: wait a little and go on.
			s.log.Warn("daemon: accept", "err", err)
			select {
			case <-time.After(50 * time.Millisecond):
				continue
			case <-ctx.Done():
				break accept
			}
		}
		select {
		case s.sem <- struct{}{}:
		default:
			s.refuse(c, "too many connections")
			continue
		}
		s.wg.Add(1)
		go s.handle(ctx, c)
	}
	cancel()
	<-watchDone
	s.wg.Wait()
	s.closeDiscovery()
	return nil
}

// closeDiscovery stops answering discovery queries and unbinds the port.
func (s *Server) closeDiscovery() {
	s.discOnce.Do(func() { s.disc.Close() })
}

// Close releases what Serve left: the lock (when Listen took it) and the
// connections of stop requests. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	conns := s.stopConns
	s.stopConns = nil
	s.mu.Unlock()
	if !s.served.Load() {
		s.closeListener()
	}
	s.closeDiscovery()
	err := s.lock.Close()
	for _, c := range conns {
		c.Close()
	}
	return err
}

// refuse answers a connection that is not served with an error and closes it.
func (s *Server) refuse(c net.Conn, msg string) {
	c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	b, _ := json.Marshal(reply{Error: msg, Code: codeOther})
	c.Write(appendFrame(nil, frameReply, b))
	c.Close()
}

// handle serves one connection.
func (s *Server) handle(ctx context.Context, c *net.UnixConn) {
	defer s.wg.Done()
	defer func() { <-s.sem }()
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	// Shutdown closes every connection it has not handed on.
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	if !s.peerAllowed(c) {
		s.refuse(c, "permission denied: the daemon serves only its own user")
		return
	}

	c.SetReadDeadline(time.Now().Add(s.cfg.RequestTimeout))
	br := bufio.NewReaderSize(c, maxRequest+frameHeaderLen)
	fr := &frameReader{r: br}
	typ, body, err := fr.next(maxRequest)
	if err != nil {
		if errors.Is(err, errMalformed) {
			s.writeReply(c, errorReply(err))
		}
		return
	}
	c.SetReadDeadline(time.Time{})
	if typ != frameRequest {
		s.writeReply(c, errorReply(fmt.Errorf("%w: frame type %q before a request", errMalformed, typ)))
		return
	}
	req, err := parseRequest(body)
	if err != nil {
		s.writeReply(c, errorReply(err))
		return
	}
	s.log.Debug("daemon: request", "op", req.Op)
	switch req.Op {
	case opStatus:
		st := s.status()
		s.writeReply(c, reply{Status: &st})
	case opSnapshot:
		snap := s.Snapshot()
		s.writeReply(c, reply{Snapshot: &snap})
	case opRoutes:
		s.writeReply(c, reply{Routes: routesToJSON(s.node.Routes())})
	case opNeighbours:
		s.writeReply(c, reply{Neighbours: neighboursToJSON(s.node.Neighbours())})
	case opWait:
		s.wait(ctx, c, *req.SID, time.Duration(req.TimeoutMS)*time.Millisecond)
	case opAdvertise:
		s.advertise(c, req.Service, req.Port)
	case opStop:
		s.mu.Lock()
		if !s.closed {
			s.stopConns = append(s.stopConns, c)
			keep = true
		}
		s.mu.Unlock()
		if !keep {
			return
		}
		stop() // this connection outlives Serve
		s.writeReply(c, reply{Stopping: &stoppingJSON{PID: os.Getpid()}})
		s.log.Info("daemon: stop requested")
		s.stopOnce.Do(func() { close(s.stopReq) })
	case opBind:
		br.Discard(fr.consume)
		pc, err := s.node.Bind(req.Port)
		if err != nil {
			s.writeReply(c, errorReply(err))
			return
		}
		// serveBound tells the client when the daemon stops, then closes.
		if !stop() {
			pc.Close()
			return
		}
		var none identity.SID
		port := pc.LocalAddr().(mesh.Addr).Port
		if !s.writeReply(c, reply{Bound: &boundJSON{SID: s.node.SID(), Port: port, MaxPayload: pc.MaxPayload(none), NoProgress: true, Timed: true, Report: true}}) {
			pc.Close()
			return
		}
		_, pid, _ := peerCred(c) // 0 when this system cannot tell
		tn := s.addTunnel(port, pid)
		defer s.removeTunnel(tn)
		s.serveBound(ctx, c, br, pc, tn)
	}
}

// peerAllowed reports whether the process at the other end of c runs as
// the daemon's user or as root (SO_PEERCRED), logging a refusal. The
// socket's mode 0600 keeps others out already; this still holds when that
// mode or the directory's has been widened.
func (s *Server) peerAllowed(c *net.UnixConn) bool {
	uid, pid, err := peerCred(c)
	if errors.Is(err, errNoPeerCred) {
		return true // this system cannot tell; the socket's mode must do
	}
	if err != nil {
		s.log.Warn("daemon: connection refused: peer credentials unknown", "err", err)
		return false
	}
	if uid != s.uid && uid != 0 {
		s.log.Warn("daemon: connection refused: peer runs as another user", "uid", uid, "pid", pid, "want_uid", s.uid)
		return false
	}
	return true
}

// closeListener closes the listener and removes its socket file, if the
// name is still our socket. Safe to call more than once.
func (s *Server) closeListener() {
	s.lnOnce.Do(func() {
		s.ln.Close()
		removeSocket(s.path, s.sock)
	})
}

// status describes the node.
func (s *Server) status() statusJSON {
	return statusJSON{
		Proto:      ProtocolVersion,
		SID:        s.node.SID(),
		PID:        os.Getpid(),
		UDP:        s.node.LocalAddr().String(),
		Neighbours: len(s.node.Neighbours()),
		Routes:     len(s.node.Routes()),
		UptimeMS:   time.Since(s.started).Milliseconds(),
		Stats:      s.node.Stats(),
		Peers:      s.cfg.Peers,
	}
}

// wait answers a wait request: the reply comes when sid is reachable, the
// timeout passes (with the mesh's explanation), or the client gives up by
// closing the connection.
func (s *Server) wait(ctx context.Context, c net.Conn, sid identity.SID, timeout time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// The client sends nothing more: a read returning means it left.
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		var b [1]byte
		c.Read(b[:])
		cancel()
	}()
	err := s.node.WaitReachable(wctx, sid)
	if err != nil {
		s.writeReply(c, errorReply(err))
	} else {
		s.writeReply(c, reply{})
	}
	c.Close()
	<-gone
}

// advertise answers discovery queries for (name, port) for as long as the
// client keeps the connection open (the listener that asked lives).
func (s *Server) advertise(c net.Conn, name string, port uint16) {
	withdraw, err := s.disc.Advertise(name, port)
	if err != nil {
		s.writeReply(c, errorReply(err))
		return
	}
	defer withdraw()
	if !s.writeReply(c, reply{}) {
		return
	}
	s.log.Debug("daemon: service advertised", "service", name, "port", port)
	// The client sends nothing more: a read returning means it left (or
	// the server is shutting down and closed the connection).
	var b [1]byte
	c.Read(b[:])
	s.log.Debug("daemon: service withdrawn", "service", name, "port", port)
}

// writeReply writes one reply frame; false if it could not.
func (s *Server) writeReply(c net.Conn, r reply) bool {
	b, err := json.Marshal(r)
	if err != nil || len(b)+1 > maxReply {
		b, _ = json.Marshal(reply{Error: "reply too large", Code: codeOther})
	}
	c.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err = c.Write(appendFrame(nil, frameReply, b))
	c.SetWriteDeadline(time.Time{})
	return err == nil
}

func errorReply(err error) reply {
	return reply{Error: err.Error(), Code: errorCode(err)}
}

// serveBound carries datagrams between the connection and the bound port
// until either closes.
func (s *Server) serveBound(ctx context.Context, c net.Conn, br *bufio.Reader, pc *mesh.PacketConn, tn *tunnel) {
	local := pc.LocalAddr().(mesh.Addr)
	log := s.log.With("port", local.Port)
	log.Debug("daemon: port bound")
	fw := newFrameWriter(c)
	// When the daemon stops, the client is told (STOPPING) and given
	// stoppingGrace to send its last datagrams (its sessions' goodbyes)
	// and close its end; then the port is unbound.
	stop := context.AfterFunc(ctx, func() {
		if fw.write(frameHeaderLen+1, appendStopping, false, nil) != nil {
			pc.Close()
			return
		}
		time.AfterFunc(stoppingGrace, func() { pc.Close() })
	})
	defer stop()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // port → connection
		defer wg.Done()
		defer c.Close() // the client must learn that the port is gone
		buf := make([]byte, mesh.MaxPayload)
		for {
			k, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			a, ok := from.(mesh.Addr)
			if !ok {
				continue
			}
			p := buf[:k]
			if err := fw.write(frameHeaderLen+1+addrLen+k, func(b []byte) []byte { return appendDatagram(b, a, p) }, true, nil); err != nil {
				return
			}
		}
	}()
	fr := newFrameReader(br)
	for {
		typ, body, err := fr.next(maxDataFrame)
		if err != nil {
			if errors.Is(err, errMalformed) {
				log.Debug("daemon: bad frame", "err", err)
			}
			break
		}
		if typ == frameData || typ == frameTimed {
			to, payload, err := parseDatagram(body)
			var budget time.Duration
			if typ == frameTimed {
				to, budget, payload, err = parseTimed(body)
			}
			if err != nil {
				log.Debug("daemon: bad datagram", "err", err)
				break
			}
			if typ == frameTimed {
				_, err = pc.WriteToWithin(payload, to, budget)
			} else {
				_, err = pc.WriteTo(payload, to)
			}
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					break
				}
				we := writeErr{SID: to.SID, Code: errorCode(err), MaxPayload: pc.MaxPayload(to.SID), Msg: err.Error()}
				// Advisory: dropped when the client does not read.
				fw.write(frameHeaderLen+1+sidLen+5+maxErrText, func(b []byte) []byte { return appendWriteErr(b, we) }, false, nil)
			}
			continue
		}
		if typ == frameMTUQuery {
			sid, err := parseMTUQuery(body)
			if err != nil {
				break
			}
			max := pc.MaxPayload(sid)
			fw.write(frameHeaderLen+1+sidLen+4, func(b []byte) []byte { return appendMTU(b, sid, max) }, false, nil)
			continue
		}
		if typ == frameReport {
			r, err := parseReport(body)
			if err != nil {
				log.Debug("daemon: bad report", "err", err)
				break
			}
			s.setReport(tn, r, len(body))
			continue
		}
		if typ == frameNoProgress {
			sid, err := parseNoProgress(body)
			if err != nil {
				break
			}
			pc.NoProgress(sid)
			continue
		}
		log.Debug("daemon: unexpected frame on a bound connection", "type", typ)
		break
	}
	pc.Close() // unbind at once
	fw.close()
	c.Close()
	wg.Wait()
	fw.wait()
	log.Debug("daemon: port unbound")
}
