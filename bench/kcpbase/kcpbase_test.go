package kcpbase

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// kcp-go runs package-level timer goroutines that live for the process.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/xtaci/kcp-go/v5.(*TimedSched).run"),
		goleak.IgnoreAnyFunction("github.com/xtaci/kcp-go/v5.postProcessWorker"),
	)
}

// TestTunnel carries an echo through Client and Server with kcptun's
// defaults: a 64-byte round trip and 1 MiB of random bytes back intact.
func TestTunnel(t *testing.T) {
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); io.Copy(c, c) }()
		}
	}()
	srv, err := NewServer("127.0.0.1:0", target.Addr().String(), ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	go srv.Run()
	defer srv.Close()
	cli, err := NewClient("127.0.0.1:0", srv.Addr(), ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	go cli.Run()
	defer cli.Close()

	c, err := net.Dial("tcp", cli.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	want := make([]byte, 1<<20)
	rand.Read(want)
	go c.Write(want)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("echo through the kcp tunnel differs")
	}
}

func TestKeyIsKcptuns(t *testing.T) {
	// kcptun: pbkdf2.Key([]byte("it's a secrect"), []byte("kcp-go"), 4096, 32, sha1.New)
	if _, err := ClientConfig().block(); err != nil {
		t.Fatal(err)
	}
	if c, s := ClientConfig(), ServerConfig(); c.SndWnd != 128 || c.RcvWnd != 512 || s.SndWnd != 1024 || s.RcvWnd != 1024 || c.MTU != 1350 || c.Interval != 30 {
		t.Errorf("not kcptun's defaults: client %+v server %+v", c, s)
	}
}
