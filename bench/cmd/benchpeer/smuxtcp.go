package main

// The smux floor: a two-process tunnel of smux streams over one plain TCP
// connection, with no encryption and no ARQ of its own (TCP is reliable),
// configured as msp configures smux (version 2). Its echo latency is what
// the stream multiplexer servald must use (smux; never our own) costs two
// processes on top of two io.Copy relays: a floor under any smux tunnel.
//
//	app ─TCP─► smux-client ─TCP (one smux session)─► smux-server ─TCP─► target

import (
	"fmt"
	"net"
	"sync"

	"github.com/servald/servald/bench/kcpbase"
	"github.com/xtaci/smux"
)

// smuxConfig is msp's smux configuration (msp/session.go smuxConfig, with
// msp's default windows).
func smuxConfig() *smux.Config {
	c := smux.DefaultConfig()
	c.Version = 2
	c.MaxFrameSize = 32768
	c.MaxStreamBuffer = 16 << 20 // msp's default StreamWindow
	c.MaxReceiveBuffer = 1 << 30 // msp's maxSessionBuffer
	return c
}

// smuxServer accepts one smux session per TCP connection and dials the
// target for each stream.
type smuxServer struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	muxes  []*smux.Session // guarded by mu
}

func newSmuxServer(listen, target string) (*smuxServer, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	return &smuxServer{ln: ln, target: target}, nil
}

func (s *smuxServer) Addr() string { return s.ln.Addr().String() }

func (s *smuxServer) Run() error {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return err
		}
		mux, err := smux.Server(c, smuxConfig())
		if err != nil {
			c.Close()
			return err
		}
		s.mu.Lock()
		s.muxes = append(s.muxes, mux)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			kcpbase.ServeStreams(mux, s.target, &s.wg)
		}()
	}
}

// Close stops the server and its sessions and waits for their goroutines.
func (s *smuxServer) Close() error {
	err := s.ln.Close()
	s.mu.Lock()
	for _, m := range s.muxes {
		m.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// smuxClient carries each accepted TCP connection as a stream of one smux
// session over a TCP connection to a smuxServer.
type smuxClient struct {
	ln  net.Listener
	mux *smux.Session
	wg  sync.WaitGroup
}

func newSmuxClient(listen, remote string) (*smuxClient, error) {
	c, err := net.Dial("tcp", remote)
	if err != nil {
		return nil, err
	}
	mux, err := smux.Client(c, smuxConfig())
	if err != nil {
		c.Close()
		return nil, err
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		mux.Close()
		return nil, err
	}
	return &smuxClient{ln: ln, mux: mux}, nil
}

func (c *smuxClient) Addr() string { return c.ln.Addr().String() }

func (c *smuxClient) Run() error {
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return err
		}
		st, err := c.mux.OpenStream()
		if err != nil {
			conn.Close()
			return fmt.Errorf("open stream: %w", err)
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			kcpbase.Pipe(conn, st)
		}()
	}
}

// Close stops the client and its session and waits for its streams.
func (c *smuxClient) Close() error {
	c.ln.Close()
	err := c.mux.Close()
	c.wg.Wait()
	return err
}
