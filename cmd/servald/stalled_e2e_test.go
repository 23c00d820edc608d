package main

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestStalledClientsBesideFresh: through one tunnel (one msp connect
// --forward, one session), 4 local clients that take 8 MiB of a download
// and then stop reading do not hold up 5 new connections beside them:
// each echoes within 1 s. With a session buffer smaller than a few stream
// windows, two stalled downloads froze the whole tunnel.
func TestStalledClientsBesideFresh(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 4 stream windows")
	}
	t.Parallel()
	var pushed atomic.Int64
	target := tcpService(t, func(c net.Conn) {
		cmd := make([]byte, 1)
		if _, err := io.ReadFull(c, cmd); err != nil {
			return
		}
		if cmd[0] == 'E' {
			io.Copy(c, c)
			return
		}
		buf := make([]byte, 32<<10)
		for {
			n, err := c.Write(buf)
			pushed.Add(int64(n))
			if err != nil {
				return
			}
		}
	})
	l := startListen(t, nil, nil, "--forward", target.Addr().String(), "5000")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	start(t, nil, nil, connectArgs(t, l, "--forward", strconv.Itoa(port), l.sid, "5000")...)
	for range 4 {
		c := dialRetry(t, addr)
		defer c.Close()
		c.Write([]byte{'P'})
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.CopyN(io.Discard, c, 8<<20); err != nil {
			t.Fatalf("a download: %v", err)
		}
	}
	// Wait until the downloads have stopped: every buffer on the way full.
	last := int64(-1)
	for deadline := time.Now().Add(30 * time.Second); pushed.Load() != last; {
		last = pushed.Load()
		time.Sleep(500 * time.Millisecond)
		if time.Now().After(deadline) {
			t.Fatalf("the stalled downloads go on: %d bytes pushed", pushed.Load())
		}
	}
	t.Logf("4 stalled downloads hold %d MiB on the way", pushed.Load()>>20)
	for i := range 5 {
		c := dialRetry(t, addr)
		start := time.Now()
		c.SetDeadline(start.Add(time.Second))
		msg := []byte("Ehello beside four stalled downloads")
		c.Write(msg)
		got := make([]byte, len(msg)-1)
		if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg[1:]) {
			t.Fatalf("connection %d beside 4 stalled ones: %q, %v (want an echo within 1 s)", i, got, err)
		}
		t.Logf("connection %d echoed in %v", i, time.Since(start).Round(time.Millisecond))
		c.Close()
	}
}
