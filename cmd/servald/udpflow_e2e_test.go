package main

// End-to-end tests of UDP flows (--forward=udp:) with real processes on
// loopback: a UDP echo server behind msp listen, clients of msp connect's
// local UDP port.

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

// udpEchoServer echoes every UDP datagram on loopback until the test ends.
func udpEchoServer(t testing.TB) *net.UDPAddr {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc.SetReadBuffer(4 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDP(buf)
			if err != nil {
				return
			}
			pc.WriteToUDP(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().(*net.UDPAddr)
}

// freeUDPPort returns a UDP port on loopback that was free a moment ago.
func freeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// udpFlowTunnel starts msp listen --forward=udp:TARGET and msp connect
// --forward=udp:PORT (with extra flags on both) and returns the connect
// process and the local UDP address its clients send to.
func udpFlowTunnel(t *testing.T, target string, extra ...string) (*proc, *net.UDPAddr) {
	t.Helper()
	l := startListen(t, nil, nil, append([]string{"--forward=udp:" + target}, append(extra, "5400")...)...)
	port := freeUDPPort(t)
	c := start(t, nil, nil, connectArgs(t, l, append([]string{"-v", "--forward=udp:" + strconv.Itoa(port)}, append(extra, l.sid, "5400")...)...)...)
	c.waitLine(`forwarding UDP 127\.0\.0\.1:` + strconv.Itoa(port) + ` to [0-9A-F]{64} port 5400`)
	return c, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
}

// flowResult is what one client saw of its flow.
type flowResult struct {
	received, duplicates, reordered, foreign, corrupt int
}

// udpDatagram is client's datagram seq: client, seq, then bytes derived
// from both, size bytes in all (at least 8).
func udpDatagram(client, seq, size int) []byte {
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, uint32(client))
	binary.BigEndian.PutUint32(b[4:], uint32(seq))
	rng := rand.New(rand.NewPCG(uint64(client), uint64(seq)))
	for i := 8; i < size; i++ {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// runFlow sends count datagrams of mixed sizes (8 to 1200 bytes) from one
// client socket, at most window of them unanswered, and checks what comes
// back: each its own, unchanged, once; reordering counted.
func runFlow(t *testing.T, to *net.UDPAddr, client, count, window int) flowResult {
	c, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Error(err)
		return flowResult{}
	}
	defer c.Close()
	c.SetReadBuffer(1 << 20)
	size := func(seq int) int {
		return 8 + int(rand.New(rand.NewPCG(uint64(client), uint64(seq)+1<<32)).Uint32()%1193)
	}
	answered := make(chan int, count)
	var r flowResult
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the receiver: until 3 s of silence after the last send
		defer wg.Done()
		seen := make([]bool, count)
		highest := -1
		buf := make([]byte, 65535)
		for {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			b := buf[:n]
			if n < 8 || int(binary.BigEndian.Uint32(b)) != client {
				r.foreign++
				continue
			}
			seq := int(binary.BigEndian.Uint32(b[4:]))
			switch {
			case seq >= count || string(b) != string(udpDatagram(client, seq, size(seq))):
				r.corrupt++
				continue
			case seen[seq]:
				r.duplicates++
				continue
			case seq < highest:
				r.reordered++
			}
			seen[seq] = true
			highest = max(highest, seq)
			r.received++
			answered <- seq
		}
	}()
	got := 0
	for seq := range count {
		for seq-got >= window { // wait for answers, or give the missing up after 1 s
			select {
			case <-answered:
				got++
			case <-time.After(time.Second):
				got = seq - window + 1
			}
		}
		if _, err := c.Write(udpDatagram(client, seq, size(seq))); err != nil {
			t.Errorf("client %d send %d: %v", client, seq, err)
			break
		}
	}
	wg.Wait()
	return r
}

// TestUDPFlowsE2E: 10,000 datagrams of mixed sizes from 4 client sockets
// through msp connect --forward=udp: and msp listen --forward=udp: to an
// echo server come back to the client that sent each, unchanged, none
// twice, none reordered (loopback reorders nothing); a datagram larger
// than the path carries is dropped and counted, its size logged (-v).
func TestUDPFlowsE2E(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 datagrams through two processes")
	}
	echo := udpEchoServer(t)
	conn, to := udpFlowTunnel(t, echo.String())
	const clients, total = 4, 10000
	results := make([]flowResult, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runFlow(t, to, i, total/clients, 32)
		}()
	}
	wg.Wait()
	var sum flowResult
	for i, r := range results {
		t.Logf("client %d: %+v", i, r)
		sum.received += r.received
		sum.duplicates += r.duplicates
		sum.reordered += r.reordered
		sum.foreign += r.foreign
		sum.corrupt += r.corrupt
	}
	t.Logf("%d of %d datagrams came back; %d reordered, %d duplicated", sum.received, total, sum.reordered, sum.duplicates)
	if sum.duplicates != 0 || sum.foreign != 0 || sum.corrupt != 0 || sum.reordered != 0 {
		t.Errorf("duplicated %d, to the wrong client %d, corrupt %d, reordered %d", sum.duplicates, sum.foreign, sum.corrupt, sum.reordered)
	}
	if sum.received < total*99/100 {
		t.Errorf("only %d of %d datagrams came back", sum.received, total)
	}

	// Too large for the path (loopback links probe up to 32 KiB frames):
	// dropped and counted.
	big, err := net.DialUDP("udp", nil, to)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	big.Write(make([]byte, 50000))
	conn.waitLine(`UDP datagram larger than the tunnel carries: dropped.*size=50000 largest_that_fits=\d+`)
	conn.cmd.Process.Signal(os.Interrupt)
	m := conn.waitLine(`UDP flows datagrams_in=(\d+) datagrams_out=(\d+) .*dropped_too_large=1 largest_dropped=50000 flows_opened=5`)
	in, _ := strconv.Atoi(m[1])
	out, _ := strconv.Atoi(m[2])
	if in != total || out != sum.received {
		t.Errorf("connect counted %d in, %d out; the clients sent %d and got %d", in, out, total, sum.received)
	}
	conn.exitsZero(10*time.Second, "msp connect")
}

// TestUDPFlowsUsage: nonsense around --forward=udp: is a usage error (exit
// 2, one line).
func TestUDPFlowsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"msp", "connect", "--forward=udp:5353", "--deadline=-1s", "ABCDEF12", "5000"},
		{"msp", "connect", "--forward=udp:5353", "--udp-idle=0", "ABCDEF12", "5000"},
		{"msp", "connect", "--forward=udp:5353", "--socks=1080", "ABCDEF12", "5000"},
		{"msp", "connect", "--forward=udp:5353", "--once", "ABCDEF12", "5000"},
		{"msp", "listen", "--forward=udp:53", "--socks", "--to=*", "5000"},
		{"msp", "listen", "--forward=53", "--deadline=50ms", "5000"},
		{"msp", "listen", "--forward=udp:", "5000"},
	} {
		p := start(t, nil, nil, append([]string{"--instance", instance(t)}, args...)...)
		if code := p.wait(10 * time.Second); code != 2 {
			t.Errorf("%v: exit %d, want 2; stderr %q", args, code, p.stderr)
			continue
		}
		oneLine(t, p.stderr.String(), "")
	}
}

// TestUDPFlowsThroughDaemons: the same through two daemons (the sessions'
// datagrams cross their control sockets).
func TestUDPFlowsThroughDaemons(t *testing.T) {
	t.Parallel()
	a := startDaemon(t, instance(t))
	b := startDaemon(t, instance(t), "--peer", a.udp)
	echo := udpEchoServer(t)
	lis := start(t, nil, nil, "msp", "listen", "--instance", a.inst, "--forward=udp:"+echo.String(), "5402")
	lis.waitLine(`listening as ` + a.sid + ` on MDP port 5402`)
	port := freeUDPPort(t)
	c := start(t, nil, nil, "msp", "connect", "--instance", b.inst, "--forward=udp:"+strconv.Itoa(port), a.sid, "5402")
	c.waitLine(`forwarding UDP 127\.0\.0\.1:` + strconv.Itoa(port))
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runFlow(t, to, i, 500, 16)
			if r.received < 495 || r.duplicates+r.foreign+r.corrupt+r.reordered != 0 {
				t.Errorf("client %d: %+v", i, r)
			}
		}()
	}
	wg.Wait()
}

// TestUDPFlowsOverSplit: UDP flows in sessions over split transport (msp
// connect --split): the datagrams ride the splitter's streams.
func TestUDPFlowsOverSplit(t *testing.T) {
	t.Parallel()
	echo := udpEchoServer(t)
	l := startSplitListen(t, nil, nil, "--forward=udp:"+echo.String(), "5403")
	port := freeUDPPort(t)
	c := start(t, nil, nil, splitConnectArgs(t, l, "--forward=udp:"+strconv.Itoa(port), l.sid, "5403")...)
	c.waitLine(`forwarding UDP 127\.0\.0\.1:` + strconv.Itoa(port))
	r := runFlow(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, 0, 500, 16)
	if r.received != 500 || r.duplicates+r.foreign+r.corrupt+r.reordered != 0 {
		t.Errorf("%+v", r)
	}
}
