package main

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// kcp-go (linked in for kcp-server and kcp-client) starts its timer
// goroutines when the package loads.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).run"),
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.postProcessWorker"))
}

// TestSmuxTunnelEchoes: a connection through smux-client and smux-server
// reaches the target and carries bytes both ways, whole and in order.
func TestSmuxTunnelEchoes(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	served := make(chan struct{})
	defer func() { target.Close(); <-served }()
	go func() {
		defer close(served)
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	srv, err := newSmuxServer("127.0.0.1:0", target.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan struct{})
	go func() { srv.Run(); close(ran) }()
	defer func() { srv.Close(); <-ran }()
	cli, err := newSmuxClient("127.0.0.1:0", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	cliRan := make(chan struct{})
	go func() { cli.Run(); close(cliRan) }()
	defer func() { cli.Close(); <-cliRan }()

	c, err := net.Dial("tcp", cli.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := bytes.Repeat([]byte("servald"), 10000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("echo through the smux tunnel differs from what was sent")
	}
}
