package memnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

func TestMTU(t *testing.T) {
	tests := []struct {
		mtu, size int
		ok        bool
	}{
		{0, 1500, true}, // 0: leave the default
		{0, 1501, false},
		{0, 0, true},
		{1280, 1280, true},
		{1280, 1281, false},
		{9000, 9000, true},
		{9000, 65536, false},
	}
	for _, tt := range tests {
		net := newNet(t)
		if tt.mtu != 0 {
			net.SetMTU(tt.mtu)
		}
		a, b := net.Listen(), net.Listen()
		n, err := a.WriteTo(make([]byte, tt.size), b.LocalAddr())
		s := net.LinkStats(a.LocalAddr(), b.LocalAddr())
		if tt.ok {
			if err != nil || n != tt.size || len(drain(t, b)) != 1 {
				t.Errorf("mtu %d size %d: n=%d err=%v", tt.mtu, tt.size, n, err)
			}
			continue
		}
		if !errors.Is(err, syscall.EMSGSIZE) || n != 0 || !strings.Contains(fmt.Sprint(err), "exceeds MTU") {
			t.Errorf("mtu %d size %d: n=%d err=%v, want EMSGSIZE", tt.mtu, tt.size, n, err)
		}
		var ne interface{ Timeout() bool }
		if errors.As(err, &ne) && ne.Timeout() {
			t.Errorf("EMSGSIZE error claims to be a timeout")
		}
		if s.Oversize != 1 || s.Sent != 0 || a.Stats().Oversize != 1 || b.Stats().Queued != 0 {
			t.Errorf("mtu %d size %d: stats %+v / %+v", tt.mtu, tt.size, s, a.Stats())
		}
	}
}

func TestReadDeadline(t *testing.T) {
	net := newNet(t)
	a, b := net.Listen(), net.Listen()

	// A deadline in the future fires while blocked.
	start := time.Now()
	b.SetReadDeadline(start.Add(50 * time.Millisecond))
	_, _, err := b.ReadFrom(make([]byte, 10))
	if el := time.Since(start); el < 50*time.Millisecond || el > 2*time.Second {
		t.Errorf("blocked read returned after %v, want ~50ms", el)
	}
	if !isTimeout(err) {
		t.Errorf("err = %v, want a timeout matching os.ErrDeadlineExceeded", err)
	}

	// A passed deadline fails at once, even with data queued.
	a.WriteTo([]byte("x"), b.LocalAddr())
	if _, _, err := b.ReadFrom(make([]byte, 10)); !isTimeout(err) {
		t.Errorf("expired deadline with data queued: %v", err)
	}
	// Clearing it makes the data readable.
	b.SetReadDeadline(time.Time{})
	if n, from, err := b.ReadFrom(make([]byte, 10)); err != nil || n != 1 || from != a.LocalAddr() {
		t.Errorf("after clearing: %d %v %v", n, from, err)
	}

	// Moving the deadline of a blocked read takes effect.
	b.SetReadDeadline(time.Now().Add(time.Hour))
	done := make(chan error)
	go func() {
		_, _, err := b.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Errorf("moved deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("moved deadline did not unblock the read")
	}

	// A deadline far enough away lets a datagram through.
	b.SetDeadline(time.Now().Add(time.Hour))
	go a.WriteTo([]byte("y"), b.LocalAddr())
	if n, _, err := b.ReadFrom(make([]byte, 10)); err != nil || n != 1 {
		t.Errorf("read before the deadline: %d %v", n, err)
	}
}

func TestDeadlinesSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := newNet(t)
		a, b := net.Listen(), net.Listen()
		net.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Delay: 30 * time.Millisecond})
		start := time.Now()
		a.WriteTo([]byte("late"), b.LocalAddr())
		b.SetReadDeadline(start.Add(20 * time.Millisecond))
		if _, _, err := b.ReadFrom(make([]byte, 10)); !isTimeout(err) || time.Since(start) != 20*time.Millisecond {
			t.Errorf("read: %v after %v, want a timeout after exactly 20ms", err, time.Since(start))
		}
		b.SetReadDeadline(start.Add(40 * time.Millisecond))
		if n, _, err := b.ReadFrom(make([]byte, 10)); err != nil || n != 4 || time.Since(start) != 30*time.Millisecond {
			t.Errorf("read: %d %v after %v, want the datagram after exactly 30ms", n, err, time.Since(start))
		}
	})
}

func TestWriteDeadline(t *testing.T) {
	net := newNet(t)
	a, b := net.Listen(), net.Listen()
	a.SetWriteDeadline(time.Now().Add(-time.Second))
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); !isTimeout(err) {
		t.Errorf("write after the deadline: %v", err)
	}
	a.SetWriteDeadline(time.Now().Add(time.Hour))
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); err != nil {
		t.Errorf("write before the deadline: %v", err)
	}
	a.SetDeadline(time.Now().Add(-time.Second))
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); !isTimeout(err) {
		t.Errorf("write after SetDeadline: %v", err)
	}
	if _, _, err := a.ReadFrom(nil); !isTimeout(err) {
		t.Errorf("read after SetDeadline: %v", err)
	}
	a.SetDeadline(time.Time{})
	if _, err := a.WriteTo([]byte("x"), b.LocalAddr()); err != nil {
		t.Errorf("write after clearing: %v", err)
	}
}

func TestClose(t *testing.T) {
	nw := newNet(t)
	a, b := nw.Listen(), nw.Listen()
	done := make(chan error)
	go func() {
		_, _, err := a.ReadFrom(make([]byte, 10))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	b.WriteTo([]byte("queued"), a.LocalAddr()) // may be read or discarded
	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock ReadFrom")
	}
	calls := map[string]func() error{
		"Close":            a.Close,
		"ReadFrom":         func() error { _, _, err := a.ReadFrom(nil); return err },
		"WriteTo":          func() error { _, err := a.WriteTo(nil, b.LocalAddr()); return err },
		"SetDeadline":      func() error { return a.SetDeadline(time.Time{}) },
		"SetReadDeadline":  func() error { return a.SetReadDeadline(time.Time{}) },
		"SetWriteDeadline": func() error { return a.SetWriteDeadline(time.Time{}) },
	}
	for name, f := range calls {
		if err := f(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want net.ErrClosed", name, err)
		}
	}
	// Its address is now unreachable; writing to it is not an error.
	if _, err := b.WriteTo([]byte("x"), a.LocalAddr()); err != nil {
		t.Errorf("write to a closed endpoint: %v", err)
	}
	if s := nw.LinkStats(b.LocalAddr(), a.LocalAddr()); s.Unreachable != 1 {
		t.Errorf("b→a %+v, want 1 unreachable", s)
	}
}

func TestNetworkClose(t *testing.T) {
	nw := New(1)
	a, b := nw.Listen(), nw.Listen()
	nw.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Delay: time.Hour})
	a.WriteTo([]byte("in flight"), b.LocalAddr())
	done := make(chan error)
	go func() {
		_, _, err := b.ReadFrom(make([]byte, 10))
		done <- err
	}()
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("blocked read: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Network.Close did not unblock ReadFrom")
	}
	if err := nw.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
	if err := a.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Conn.Close after Network.Close: %v", err)
	}
	c := nw.Listen()
	if _, err := c.WriteTo(nil, a.LocalAddr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Listen after Close gave a usable Conn: %v", err)
	}
	if nw.InFlight() != 0 {
		t.Errorf("InFlight after Close: %d", nw.InFlight())
	}
}

func TestAddr(t *testing.T) {
	nw := newNet(t)
	a, b := nw.Listen(), nw.Listen()
	if a.Addr() == b.Addr() || a.Addr().ID < 1 {
		t.Errorf("addresses %v %v", a.Addr(), b.Addr())
	}
	if got := a.LocalAddr().String(); got != "mem:1" || a.LocalAddr().Network() != "memnet" {
		t.Errorf("String %q Network %q", got, a.LocalAddr().Network())
	}
	if got := nw.Broadcast().String(); got != "mem:broadcast" {
		t.Errorf("broadcast String %q", got)
	}
	m := map[net.Addr]int{a.LocalAddr(): 1}
	if m[Addr{ID: 1}] != 1 {
		t.Error("Addr does not work as a map key")
	}
	// *Addr is accepted; foreign and nil addresses are errors, not panics.
	ba := b.Addr()
	if _, err := a.WriteTo([]byte("p"), &ba); err != nil {
		t.Errorf("WriteTo *Addr: %v", err)
	}
	var nilAddr *Addr
	for _, to := range []net.Addr{&net.UDPAddr{}, nil, nilAddr} {
		if _, err := a.WriteTo([]byte("x"), to); err == nil {
			t.Errorf("WriteTo %#v accepted", to)
		}
	}
	// Unknown addresses swallow datagrams, like UDP.
	if _, err := a.WriteTo([]byte("x"), Addr{ID: 999}); err != nil {
		t.Errorf("WriteTo unknown: %v", err)
	}
	if s := nw.LinkStats(a.LocalAddr(), Addr{ID: 999}); s.Unreachable != 1 {
		t.Errorf("unknown %+v", s)
	}
}

func TestWriteCopiesAndTruncates(t *testing.T) {
	nw := newNet(t)
	a, b := nw.Listen(), nw.Listen()
	msg := []byte("hello world")
	a.WriteTo(msg, b.LocalAddr())
	copy(msg, "XXXXX")
	buf := make([]byte, 64)
	n, _, err := b.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "hello world" {
		t.Errorf("got %q %v: WriteTo did not copy", buf[:n], err)
	}
	// A short buffer truncates, and the rest of the datagram is gone.
	a.WriteTo([]byte("0123456789"), b.LocalAddr())
	a.WriteTo([]byte("next"), b.LocalAddr())
	n, _, _ = b.ReadFrom(buf[:4])
	if string(buf[:n]) != "0123" {
		t.Errorf("truncated read %q", buf[:n])
	}
	n, _, _ = b.ReadFrom(buf)
	if string(buf[:n]) != "next" {
		t.Errorf("read after truncation %q", buf[:n])
	}
}

func TestConfigValidation(t *testing.T) {
	bad := []LinkConfig{
		{Loss: -0.1}, {Loss: 1.1}, {Reorder: 2}, {Duplicate: -1}, {Delay: -1},
		{Jitter: -1}, {ReorderDelay: -1}, {Bandwidth: -1}, {QueueBytes: -1},
	}
	for _, c := range bad {
		if c.Validate() == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := (LinkConfig{Loss: 1, Reorder: 0.5, Duplicate: 1, Delay: 1, Bandwidth: 1}).Validate(); err != nil {
		t.Errorf("good config: %v", err)
	}
	nw := newNet(t)
	a := nw.Listen()
	mustPanic := func(name string, f func()) {
		t.Helper()
		defer func() {
			if recover() == nil {
				t.Errorf("%s did not panic", name)
			}
		}()
		f()
	}
	mustPanic("SetDefault bad", func() { nw.SetDefault(LinkConfig{Loss: 2}) })
	mustPanic("SetLink bad", func() { nw.SetLink(a.LocalAddr(), Addr{ID: 9}, LinkConfig{Loss: 2}) })
	mustPanic("SetLink foreign", func() { nw.SetLink(a.LocalAddr(), &net.UDPAddr{}, LinkConfig{}) })
	mustPanic("SetLink broadcast", func() { nw.SetLink(a.LocalAddr(), nw.Broadcast(), LinkConfig{}) })
	mustPanic("SetMTU 0", func() { nw.SetMTU(0) })
	mustPanic("SetRecvQueue 0", func() { nw.SetRecvQueue(0, 1) })
	mustPanic("SetInFlightLimit 0", func() { nw.SetInFlightLimit(0) })
}

func TestClearLink(t *testing.T) {
	nw := newNet(t)
	a, b := nw.Listen(), nw.Listen()
	nw.SetLink(a.LocalAddr(), b.LocalAddr(), LinkConfig{Cut: true})
	a.WriteTo([]byte("x"), b.LocalAddr())
	nw.ClearLink(a.LocalAddr(), b.LocalAddr())
	a.WriteTo([]byte("y"), b.LocalAddr())
	if got := drain(t, b); len(got) != 1 {
		t.Errorf("after ClearLink %d arrived, want 1", len(got))
	}
	if s := nw.LinkStats(a.LocalAddr(), b.LocalAddr()); s.Sent != 2 || s.CutDropped != 1 || s.Delivered != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestConcurrent hammers one Network from many goroutines (for -race):
// senders, readers, configuration changes, closes.
func TestConcurrent(t *testing.T) {
	nw := newNet(t)
	nw.SetDefault(LinkConfig{Delay: time.Millisecond, Jitter: time.Millisecond, Loss: 0.05, Duplicate: 0.05})
	const k = 4
	var conns []*Conn
	for range k {
		conns = append(conns, nw.Listen())
	}
	var readers, writers sync.WaitGroup
	var mu sync.Mutex
	received := 0
	for _, c := range conns {
		readers.Go(func() {
			buf := make([]byte, 2000)
			for {
				_, _, err := c.ReadFrom(buf)
				if err != nil {
					if !errors.Is(err, net.ErrClosed) {
						t.Error(err)
					}
					return
				}
				mu.Lock()
				received++
				mu.Unlock()
			}
		})
	}
	msg := bytes.Repeat([]byte{7}, 1000)
	for i, c := range conns {
		writers.Go(func() {
			for j := range 2000 {
				to := conns[(i+1+j%(k-1))%k].LocalAddr()
				if j%100 == 0 {
					to = nw.Broadcast()
				}
				if _, err := c.WriteTo(msg, to); err != nil {
					t.Error(err)
					return
				}
				if j%500 == 1 {
					nw.SetLink(c.LocalAddr(), to, LinkConfig{Bandwidth: 10 << 20})
					nw.LinkStats(c.LocalAddr(), to)
					c.Stats()
					c.SetReadDeadline(time.Time{})
				}
			}
		})
	}
	writers.Wait()
	time.Sleep(20 * time.Millisecond)
	nw.Close()
	readers.Wait()
	s := nw.Stats()
	if received == 0 || uint64(received) > s.Delivered {
		t.Errorf("received %d, delivered %d", received, s.Delivered)
	}
	t.Logf("received %d, totals %+v", received, s)
}
