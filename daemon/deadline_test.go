package daemon

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// stalledPort returns a Port whose daemon end never reads, so that its
// writes fill the socket and then the frameWriter's buffer.
func stalledPort(t *testing.T) *Port {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(t.TempDir(), "s"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn, err := net.DialUnix("unix", nil, ln.Addr().(*net.UnixAddr))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ln.AcceptUnix()
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	c := &Client{ports: map[*Port]struct{}{}, adverts: map[*Advert]struct{}{}}
	p := &Port{
		c: c, conn: conn, defMax: 1000,
		fr:   newFrameReader(bufio.NewReader(conn)),
		fw:   newFrameWriter(conn),
		mp:   map[identity.SID]*mtuEntry{},
		errs: map[identity.SID]error{},
		done: make(chan struct{}),
	}
	t.Cleanup(func() {
		peer.Close()
		p.Close()
	})
	return p
}

// blockedWrites writes to p until a write fails, whose error it sends;
// it returns once the writer waits for room in the buffer.
func blockedWrites(t *testing.T, p *Port) <-chan error {
	t.Helper()
	errc := make(chan error, 1)
	var writes atomic.Int64
	go func() {
		b := make([]byte, 1000)
		for {
			if _, err := p.WriteTo(b, mesh.Addr{Port: 9}); err != nil {
				errc <- err
				return
			}
			writes.Add(1)
		}
	}()
	// Blocked: waiting for room, and no write got through for a while.
	limit := time.Now().Add(10 * time.Second)
	last, still := int64(-1), 0
	for still < 5 {
		if time.Now().After(limit) {
			t.Fatal("WriteTo never blocked")
		}
		time.Sleep(10 * time.Millisecond)
		p.fw.mu.Lock()
		waiting := p.fw.waiting
		p.fw.mu.Unlock()
		if n := writes.Load(); waiting && n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	return errc
}

// TestPortWriteToSeesMovedDeadline: a WriteTo blocked on a full buffer
// returns when the write deadline is set, moved earlier or moved into the
// past while it waits (net.PacketConn: a deadline applies to pending calls).
// (That a deadline moved later is not kept to the old time is shown by
// internal/deadline's tests, on virtual time.)
func TestPortWriteToSeesMovedDeadline(t *testing.T) {
	p := stalledPort(t)
	cases := []struct {
		name   string
		before time.Duration // the deadline when WriteTo blocks; 0: none
		moved  time.Duration // from when it is moved
	}{
		{"set while blocked", 0, 50 * time.Millisecond},
		{"moved earlier", time.Hour, 50 * time.Millisecond},
		{"moved into the past", time.Hour, -time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.SetWriteDeadline(time.Time{})
			if tc.before != 0 {
				p.SetWriteDeadline(time.Now().Add(tc.before))
			}
			errc := blockedWrites(t, p)
			start := time.Now()
			p.SetWriteDeadline(start.Add(tc.moved))
			select {
			case err := <-errc:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("WriteTo: %v, want os.ErrDeadlineExceeded", err)
				}
				if el := time.Since(start); el < tc.moved {
					t.Fatalf("WriteTo returned after %v, before the deadline (%v)", el, tc.moved)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the blocked WriteTo did not see the moved deadline")
			}
		})
	}
}
