// Command benchpeer is the far side of servald's real-path benchmarks: the
// baselines run as their own processes so that they pay what servald's
// processes pay (scheduling, copies through the kernel).
//
//	benchpeer kcp-server -l UDPADDR -t TARGET   kcptun server (kcp-go + smux, kcptun defaults)
//	benchpeer kcp-client -l TCPADDR -r UDPADDR  kcptun client
//	benchpeer tcp-relay  -l TCPADDR -t TARGET   plain io.Copy relay with half-close
//	benchpeer smux-server -l TCPADDR -t TARGET  smux over plain TCP, server end (smuxtcp.go)
//	benchpeer smux-client -l TCPADDR -r TCPADDR smux over plain TCP, client end
//
// Each prints the address it listens on as one line on stdout and runs
// until its stdin is closed. Benchmark-only: addresses should be loopback.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/servald/servald/bench/kcpbase"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "benchpeer:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: benchpeer kcp-server|kcp-client|tcp-relay|smux-server|smux-client [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	listen := fs.String("l", "127.0.0.1:0", "address to listen on")
	target := fs.String("t", "", "TCP target (kcp-server, tcp-relay, smux-server)")
	remote := fs.String("r", "", "the server's address: kcp-server's UDP (kcp-client), smux-server's TCP (smux-client)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	type runner interface {
		Addr() string
		Run() error
		Close() error
	}
	var r runner
	var err error
	switch args[0] {
	case "kcp-server":
		r, err = kcpbase.NewServer(*listen, *target, kcpbase.ServerConfig())
	case "kcp-client":
		r, err = kcpbase.NewClient(*listen, *remote, kcpbase.ClientConfig())
	case "tcp-relay":
		r, err = newRelay(*listen, *target)
	case "smux-server":
		r, err = newSmuxServer(*listen, *target)
	case "smux-client":
		r, err = newSmuxClient(*listen, *remote)
	default:
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err != nil {
		return err
	}
	fmt.Println(r.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		r.Close()
	}()
	r.Run()
	return nil
}

// relay is a plain TCP relay: the floor under any two-process tunnel.
type relay struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
}

func newRelay(listen, target string) (*relay, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return nil, err
	}
	return &relay{ln: ln, target: target}, nil
}

func (r *relay) Addr() string { return r.ln.Addr().String() }

func (r *relay) Run() error {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return err
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer c.Close()
			t, err := net.Dial("tcp", r.target)
			if err != nil {
				return
			}
			defer t.Close()
			var wg sync.WaitGroup
			wg.Add(2)
			half := func(dst, src net.Conn) {
				defer wg.Done()
				io.Copy(dst, src)
				dst.(*net.TCPConn).CloseWrite()
			}
			go half(t, c)
			go half(c, t)
			wg.Wait()
		}()
	}
}

func (r *relay) Close() error { return r.ln.Close() }
