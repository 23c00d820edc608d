package splitter

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// dialFrom opens a TCP connection to addr from the loopback address ip
// (127.0.0.0/8 is all loopback: another address is another client).
func dialFrom(t testing.TB, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGatedWindowHoldsOneBlock: with GatedWindow a listener's session
// takes one block until OpenWindow, so a peer that withholds block 0 and
// sends later blocks breaks its own session instead of parking the whole
// reorder window in the listener's memory.
func TestGatedWindowHoldsOneBlock(t *testing.T) {
	for _, gated := range []bool{false, true} {
		cfg := testConfig()
		cfg.GatedWindow = gated
		ln := listen(t, cfg)
		c := dialFrom(t, "127.0.0.1", ln.Addr().String())
		c.SetDeadline(time.Now().Add(5 * time.Second))
		r, err := exchange(c, wire.Hello{Version: wire.Version, Kind: wire.KindNew, Params: cfg.params(), Window: 8})
		if err != nil || r.Status != wire.StatusOK {
			t.Fatalf("gated=%v: reply %+v, %v", gated, r, err)
		}
		if want := cfg.windowBlocks(); gated {
			want = 1
			if int(r.Window) != want {
				t.Fatalf("gated: the listener offers %d blocks, want %d", r.Window, want)
			}
		} else if int(r.Window) != want {
			t.Fatalf("not gated: the listener offers %d blocks, want %d", r.Window, want)
		}
		// Block 1 without block 0: one small shard.
		payload := make([]byte, 100)
		frame := wire.AppendData(nil, wire.DataHeader{Block: 1, Offset: 1 << 20, DataLen: 100}, len(payload))
		c.Write(append(frame, payload...))
		c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
		_, err = io.Copy(io.Discard, c)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if gated && timedOut {
			t.Fatal("gated: a block beyond the one-block window kept the session open")
		}
		if !gated && !timedOut {
			t.Fatalf("not gated: block 1 in the window ended the session: %v", err)
		}
	}
}

// TestGatedWindowOpens: a session through a gated listener runs at one
// block per round trip until OpenWindow, then at full window; the data
// arrives whole either way.
func TestGatedWindowOpens(t *testing.T) {
	cfg := testConfig()
	cfg.GatedWindow = true
	ln := listen(t, cfg)
	client, server := pair(t, ln, ln.Addr().String(), cfg)
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	go func() {
		client.Write(data)
		client.CloseWrite()
	}()
	first := make([]byte, 1000)
	if _, err := io.ReadFull(server, first); err != nil {
		t.Fatal(err)
	}
	server.OpenWindow()
	rest, err := io.ReadAll(server)
	if err != nil || !bytes.Equal(append(first, rest...), data) {
		t.Fatalf("read %d bytes, %v", len(first)+len(rest), err)
	}
}

// TestIdleConnectionsFromOneAddress: 200 idle TCP connections from one
// address (a slowloris) take at most maxHandshakesPerAddr handshake slots
// and are dropped after helloTimeout, so a client from another address
// opens a session at once. With 128 slots for everyone and a 5 s timeout,
// they took every slot.
func TestIdleConnectionsFromOneAddress(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 5 * time.Second
	ln := listen(t, cfg)
	for range 200 {
		dialFrom(t, "127.0.0.2", ln.Addr().String())
	}
	time.Sleep(100 * time.Millisecond) // let the listener accept them
	ln.mu.Lock()
	held := ln.hsOf["127.0.0.2"]
	ln.mu.Unlock()
	if held > maxHandshakesPerAddr {
		t.Fatalf("one address holds %d handshake slots, at most %d", held, maxHandshakesPerAddr)
	}
	start := time.Now()
	pair(t, ln, ln.Addr().String(), cfg)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("a session beside 200 idle connections took %v", d)
	}
}

// TestSessionsPerAddress: MaxSessionsPerAddr sessions from one address,
// then busy; another address still gets one.
func TestSessionsPerAddress(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSessionsPerAddr = 2
	ln := listen(t, cfg)
	hello := wire.Hello{Version: wire.Version, Kind: wire.KindNew, Params: cfg.params(), Window: 8}
	open := func(ip string) wire.Reply {
		c := dialFrom(t, ip, ln.Addr().String())
		c.SetDeadline(time.Now().Add(3 * time.Second))
		r, err := exchange(c, hello)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for i := range 2 {
		if r := open("127.0.0.2"); r.Status != wire.StatusOK {
			t.Fatalf("session %d from one address: %+v", i, r)
		}
	}
	if r := open("127.0.0.2"); r.Status != wire.StatusRefused || r.Code != wire.RefuseBusy {
		t.Fatalf("a third session from one address: %+v, want refused busy", r)
	}
	if r := open("127.0.0.3"); r.Status != wire.StatusOK {
		t.Fatalf("a session from another address: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for range 3 {
		if s, err := ln.AcceptContext(ctx); err == nil {
			s.Close()
		}
	}
}
