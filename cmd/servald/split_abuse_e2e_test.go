package main

// End-to-end tests of a split listener under abuse, with a real `servald
// msp listen --split`: idle TCP connections (a slowloris) beside
// legitimate split transfers, and split sessions that withhold block 0
// so that the listener would hold the blocks after it.

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialFromIP opens a TCP connection to addr from the loopback address ip
// (127.0.0.0/8 is all loopback: another address is another client).
func dialFromIP(ip, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
	return d.Dial("tcp", addr)
}

// rssKiB is the resident set of process pid.
func rssKiB(t testing.TB, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// TestSplitSlowloris: 200 idle TCP connections to a --split port, re-opened
// every 5 s for 30 s, do not keep 10 legitimate split transfers (each a
// fresh msp connect --split) from succeeding meanwhile. With 128
// handshake slots for everyone and a 5 s hello timeout they took them all.
func TestSplitSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 30 s")
	}
	t.Parallel()
	echo := echoServer(t)
	l := startSplitListen(t, nil, nil, "--fec=10:3", "--forward", strconv.Itoa(echo.Addr().(*net.TCPAddr).Port), "5000")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var conns []net.Conn
			for range 200 {
				if c, err := dialFromIP("127.0.0.2", l.split); err == nil {
					conns = append(conns, c)
				}
			}
			select {
			case <-stop:
			case <-time.After(5 * time.Second):
			}
			for _, c := range conns {
				c.Close()
			}
			select {
			case <-stop:
				return
			default:
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	end := time.Now().Add(30 * time.Second)
	for i := range 10 {
		msg := "legitimate transfer " + strconv.Itoa(i) + "\n"
		var out bytes.Buffer
		cp := start(t, strings.NewReader(msg), &out, splitConnectArgs(t, l, "--fec=10:3", "--timeout=5s", l.sid, "5000")...)
		if code := cp.wait(15 * time.Second); code != 0 || out.String() != msg {
			t.Fatalf("transfer %d beside 200 idle connections: exit %d, echoed %q: %s", i, code, out.String(), cp.stderr)
		}
		if left := time.Until(end); left > 0 {
			time.Sleep(min(left, 3*time.Second))
		}
	}
}

// splitHello is a splitter NEW hello for FEC 10:3, 16 KiB payloads and a
// window of 64 blocks (docs/PROTOCOL.md, Splitter).
func splitHello() []byte {
	b := []byte("SPLT")
	b = append(b, 2, 1) // version 2, kind NEW
	b = binary.BigEndian.AppendUint16(b, 12)
	b = append(b, 10, 3, 0, 0)
	b = binary.BigEndian.AppendUint32(b, 16384)
	return binary.BigEndian.AppendUint32(b, 64)
}

// splitShard is DATA shard 0 of a full block (10 x 16 KiB).
func splitShard(block uint64) []byte {
	const payload, dlen = 16384, 10 * 16384
	b := []byte{1, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, 24+payload)
	b = binary.BigEndian.AppendUint64(b, block)
	b = binary.BigEndian.AppendUint64(b, block*dlen)
	b = binary.BigEndian.AppendUint32(b, dlen)
	b = append(b, 0, 0, 0, 0) // index 0, flags, reserved
	return append(b, make([]byte, payload)...)
}

// TestSplitWithheldBlock: 40 split sessions that send shards of blocks
// 1-50 and withhold block 0 (so that a listener would hold all of them
// for reassembly, and never reach the MSP handshake) cost the listener at
// most 64 MiB, and are all closed within 10 s. Each used to hold ~8 MiB
// for as long as its TCP connections lived.
func TestSplitWithheldBlock(t *testing.T) {
	t.Parallel()
	l := startSplitListen(t, nil, nil, "--fec=10:3", "5000")
	idle := rssKiB(t, l.cmd.Process.Pid)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for i := range 40 {
		c, err := dialFromIP("127.0.0."+strconv.Itoa(2+i/20), l.split)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(splitHello()); err != nil {
			t.Fatal(err)
		}
		reply := make([]byte, 8)
		if _, err := io.ReadFull(c, reply); err != nil || reply[5] != 0 {
			t.Fatalf("session %d: reply %x, %v", i, reply, err)
		}
		go func() {
			for b := uint64(1); b <= 50; b++ {
				if _, err := c.Write(splitShard(b)); err != nil {
					return
				}
			}
		}()
	}
	peak := 0
	closed := make(chan int, len(conns))
	for i, c := range conns {
		go func() {
			c.SetReadDeadline(start.Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				closed <- -1 - i
				return
			}
			closed <- i
		}()
	}
	for range conns {
		select {
		case i := <-closed:
			if i < 0 {
				t.Fatalf("session %d still open 10 s after it started", -1-i)
			}
		case <-time.After(200 * time.Millisecond):
		}
		peak = max(peak, rssKiB(t, l.cmd.Process.Pid))
	}
	t.Logf("listener RSS: %d KiB idle, %d KiB at most during 40 withholding sessions; all closed after %v", idle, peak, time.Since(start))
	if peak-idle > 64<<10 {
		t.Fatalf("40 withholding sessions took the listener from %d to %d KiB (more than 64 MiB)", idle, peak)
	}
}
