package kcpbase

// Flow, as in kcptun:
//
//	app ─TCP─► Client (one KCP session, smux client) ─UDP─► Server (smux server) ─TCP─► target
//
// Each TCP connection accepted by the client becomes one smux stream; the
// server dials the target for each stream. As in kcptun, when either
// direction of a connection ends, both are closed (smux has no half-close).
//
// Settings from kcptun's defaults: key "it's a secrect" expanded with
// pbkdf2 (4096 rounds of SHA-1, salt "kcp-go") to a 32-byte AES key
// (crypt aes); mode fast (nodelay 0, interval 30, resend 2, nc 1); FEC
// 10 data : 3 parity; MTU 1350; windows 128/512 (client) and 1024/1024
// (server); 4 MiB socket buffers; stream mode, no write delay, no ACK
// nodelay; smux version 1, 4 MiB session buffer, 2 MiB stream buffer, 10 s
// keepalive. kcptun also compresses with snappy by default; this baseline
// does not (the benchmarks send incompressible data, where compression
// only costs CPU).

import (
	"crypto/pbkdf2"
	"crypto/sha1"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	kcp "github.com/xtaci/kcp-go/v5"
	"github.com/xtaci/smux"
)

// Config is one end's KCP and smux settings.
type Config struct {
	Key                         string
	MTU                         int
	SndWnd, RcvWnd              int
	DataShard, ParityShard      int
	NoDelay, Interval, Resend   int
	NoCongestion                int
	SockBuf                     int
	SmuxVersion                 int
	SmuxBuf, StreamBuf          int
	KeepAlive                   time.Duration
	AckNoDelay, WriteDelayFlush bool
}

// ClientConfig is kcptun's client defaults (mode fast).
func ClientConfig() Config {
	return Config{
		Key: "it's a secrect", MTU: 1350, SndWnd: 128, RcvWnd: 512,
		DataShard: 10, ParityShard: 3,
		NoDelay: 0, Interval: 30, Resend: 2, NoCongestion: 1,
		SockBuf: 4 << 20, SmuxVersion: 1, SmuxBuf: 4 << 20, StreamBuf: 2 << 20,
		KeepAlive: 10 * time.Second,
	}
}

// ServerConfig is kcptun's server defaults (mode fast).
func ServerConfig() Config {
	c := ClientConfig()
	c.SndWnd, c.RcvWnd = 1024, 1024
	return c
}

// salt is kcptun's pbkdf2 salt.
const salt = "kcp-go"

func (c Config) block() (kcp.BlockCrypt, error) {
	key, err := pbkdf2.Key(sha1.New, c.Key, []byte(salt), 4096, 32)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: key: %w", err)
	}
	b, err := kcp.NewAESBlockCrypt(key)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	return b, nil
}

func (c Config) smux() *smux.Config {
	s := smux.DefaultConfig()
	s.Version = c.SmuxVersion
	s.MaxReceiveBuffer = c.SmuxBuf
	s.MaxStreamBuffer = c.StreamBuf
	s.KeepAliveInterval = c.KeepAlive
	return s
}

// tune applies c to a KCP session as kcptun does.
func (c Config) tune(s *kcp.UDPSession) {
	s.SetStreamMode(true)
	s.SetWriteDelay(c.WriteDelayFlush)
	s.SetNoDelay(c.NoDelay, c.Interval, c.Resend, c.NoCongestion)
	s.SetMtu(c.MTU)
	s.SetWindowSize(c.SndWnd, c.RcvWnd)
	s.SetACKNoDelay(c.AckNoDelay)
}

// Server accepts KCP sessions on a UDP socket and forwards their streams
// to a TCP target.
type Server struct {
	cfg    Config
	ln     *kcp.Listener
	pc     *net.UDPConn
	target string
	wg     sync.WaitGroup
	once   sync.Once
	mu     sync.Mutex // guards muxes
	muxes  []*smux.Session
}

// NewServer listens on udpAddr (e.g. "127.0.0.1:0") and forwards to
// target. Run serves; Close stops.
func NewServer(udpAddr, target string, cfg Config) (*Server, error) {
	block, err := cfg.block()
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", udpAddr)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	pc, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	pc.SetReadBuffer(cfg.SockBuf)
	pc.SetWriteBuffer(cfg.SockBuf)
	ln, err := kcp.ServeConn(block, cfg.DataShard, cfg.ParityShard, pc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	return &Server{cfg: cfg, ln: ln, pc: pc, target: target}, nil
}

// Addr is the UDP address the server listens on.
func (s *Server) Addr() string { return s.pc.LocalAddr().String() }

// Run accepts sessions until Close.
func (s *Server) Run() error {
	for {
		conn, err := s.ln.AcceptKCP()
		if err != nil {
			return fmt.Errorf("kcpbase: accept: %w", err)
		}
		s.cfg.tune(conn)
		mux, err := smux.Server(conn, s.cfg.smux())
		if err != nil {
			conn.Close()
			return fmt.Errorf("kcpbase: smux: %w", err)
		}
		s.mu.Lock()
		s.muxes = append(s.muxes, mux)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			ServeStreams(mux, s.target, &s.wg)
		}()
	}
}

// Close stops the server and its sessions and waits for their goroutines
// (Run returns on its own).
func (s *Server) Close() error {
	s.once.Do(func() {
		s.ln.Close()
		s.pc.Close()
		s.mu.Lock()
		for _, m := range s.muxes {
			m.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return nil
}

// Client accepts TCP connections and carries each as a smux stream of one
// KCP session to a Server.
type Client struct {
	cfg  Config
	tcp  net.Listener
	pc   *net.UDPConn
	mux  *smux.Session
	wg   sync.WaitGroup
	once sync.Once
}

// NewClient listens for TCP on tcpAddr and opens a KCP session to the
// server's UDP address remote (from a UDP socket on loopback).
func NewClient(tcpAddr, remote string, cfg Config) (*Client, error) {
	block, err := cfg.block()
	if err != nil {
		return nil, err
	}
	ra, err := net.ResolveUDPAddr("udp", remote)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	var local *net.UDPAddr
	if ra.IP.IsLoopback() {
		local = &net.UDPAddr{IP: ra.IP} // stay on loopback
	}
	pc, err := net.ListenUDP("udp", local)
	if err != nil {
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	pc.SetReadBuffer(cfg.SockBuf)
	pc.SetWriteBuffer(cfg.SockBuf)
	sess, err := kcp.NewConn2(ra, block, cfg.DataShard, cfg.ParityShard, pc)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	cfg.tune(sess)
	mux, err := smux.Client(sess, cfg.smux())
	if err != nil {
		sess.Close()
		pc.Close()
		return nil, fmt.Errorf("kcpbase: smux: %w", err)
	}
	ln, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		mux.Close()
		pc.Close()
		return nil, fmt.Errorf("kcpbase: %w", err)
	}
	return &Client{cfg: cfg, tcp: ln, pc: pc, mux: mux}, nil
}

// Addr is the TCP address the client listens on.
func (c *Client) Addr() string { return c.tcp.Addr().String() }

// Run accepts TCP connections until Close or until the session dies.
func (c *Client) Run() error {
	for {
		conn, err := c.tcp.Accept()
		if err != nil {
			return fmt.Errorf("kcpbase: accept: %w", err)
		}
		st, err := c.mux.OpenStream()
		if err != nil {
			conn.Close()
			return fmt.Errorf("kcpbase: open stream: %w", err)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			Pipe(conn, st)
		}()
	}
}

// Close stops the client: the listener, the session and its streams, and
// waits for their goroutines (Run returns on its own).
func (c *Client) Close() error {
	c.once.Do(func() {
		c.tcp.Close()
		c.mux.Close()
		c.pc.Close()
		c.wg.Wait()
	})
	return nil
}

// ServeStreams accepts mux's streams until it ends (then closes it),
// carrying each to a new TCP connection to target, as kcptun's server
// does; wg counts the goroutines it starts.
func ServeStreams(mux *smux.Session, target string, wg *sync.WaitGroup) {
	defer mux.Close()
	for {
		st, err := mux.AcceptStream()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", target)
			if err != nil {
				st.Close()
				return
			}
			Pipe(st, c)
		}()
	}
}

// Pipe copies both ways between a and b and closes both when either
// direction ends, as kcptun does (smux streams have no half-close).
func Pipe(a, b io.ReadWriteCloser) {
	var once sync.Once
	closeBoth := func() { a.Close(); b.Close() }
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); io.Copy(a, b); once.Do(closeBoth) }()
	go func() { defer wg.Done(); io.Copy(b, a); once.Do(closeBoth) }()
	wg.Wait()
}
