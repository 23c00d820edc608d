package msp

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestStalledReadersStopOnlyThemselves: four streams whose readers never
// read, each pushed to by the far end, do not hold up five new streams in
// the same session: each new one echoes within 1 s. With one session-wide
// buffer smaller than a few stream windows, the stalled streams filled it
// and froze the whole tunnel (0 of 7 new connections for ~50 s).
func TestStalledReadersStopOnlyThemselves(t *testing.T) {
	if testing.Short() {
		t.Skip("pushes 4 stream windows")
	}
	a, b := udpNodes(t)
	l, err := listenMesh(b, 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var pushed atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
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
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := dialMesh(ctx, a, b.SID(), 5000, Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	open := func(cmd byte) net.Conn {
		t.Helper()
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte{cmd}); err != nil {
			t.Fatal(err)
		}
		return st
	}
	// Each stalled reader takes 8 MiB and then stops reading, as a
	// forwarder does once its client's TCP buffer is full: smux grants a
	// stream more than its first 256 KiB only as its reader consumes.
	const taken = 8 << 20
	for range 4 {
		st := open('P')
		defer st.Close()
		if _, err := io.CopyN(io.Discard, st, taken); err != nil {
			t.Fatal(err)
		}
	}
	// Wait until the pushers have stopped: their windows are full.
	window := int64(Config{}.withDefaults().StreamWindow)
	last := int64(-1)
	for pushed.Load() != last || pushed.Load() < 4*taken+window {
		last = pushed.Load()
		select {
		case <-time.After(300 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("pushers wrote %d bytes and go on: want them stopped after 4 windows of %d", pushed.Load(), window)
		}
	}
	t.Logf("stalled streams hold %d bytes", pushed.Load())
	for i := range 5 {
		st := open('E')
		msg := []byte("hello through the stalled tunnel")
		start := time.Now()
		st.SetDeadline(start.Add(time.Second))
		if _, err := st.Write(msg); err != nil {
			t.Fatalf("stream %d: write: %v", i, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(st, got); err != nil {
			t.Fatalf("stream %d beside 4 stalled ones: no echo within 1 s: %v", i, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("stream %d: echo %q", i, got)
		}
		t.Logf("stream %d echoed in %v", i, time.Since(start))
		st.Close()
	}
}

// TestMaxStreams: a session holds at most MaxStreams open streams: the
// listener resets one more, OpenStream refuses one more.
func TestMaxStreams(t *testing.T) {
	a, b := udpNodes(t)
	l, err := listenMesh(b, 5000, Config{MaxStreams: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	echoServer(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := dialMesh(ctx, a, b.SID(), 5000, Config{MaxStreams: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	echo := func(st net.Conn) error {
		st.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := st.Write([]byte("x")); err != nil {
			return err
		}
		_, err := io.ReadFull(st, make([]byte, 1))
		return err
	}
	var sts []net.Conn
	for i := range 3 {
		st, err := s.OpenStream(ctx)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		defer st.Close()
		sts = append(sts, st)
	}
	for i, st := range sts[:2] {
		if err := echo(st); err != nil {
			t.Fatalf("stream %d within the listener's 2: %v", i, err)
		}
	}
	if err := echo(sts[2]); err == nil {
		t.Fatal("the listener's third open stream echoed: want it reset")
	}
	if _, err := s.OpenStream(ctx); err == nil {
		t.Fatal("a fourth OpenStream with MaxStreams 3 succeeded")
	}
}
