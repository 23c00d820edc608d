package udprelay

import (
	"encoding/binary"
	"math"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup starts an upstream UDP socket, a relay in front of it and a client
// socket; all are closed when the test ends.
func setup(t *testing.T, cfg Config) (r *Relay, client, upstream *net.UDPConn) {
	t.Helper()
	return setupOn(t, net.IPv4(127, 0, 0, 1), cfg)
}

// setupOn is setup on the loopback address ip.
func setupOn(t *testing.T, ip net.IP, cfg Config) (r *Relay, client, upstream *net.UDPConn) {
	t.Helper()
	upstream, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { upstream.Close() })
	upstream.SetReadBuffer(4 << 20)
	r, err = New(upstream.LocalAddr().String(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	raddr, _ := net.ResolveUDPAddr("udp", r.Addr())
	client, err = net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetReadBuffer(4 << 20)
	return r, client, upstream
}

// recvAll reads datagrams from c until none comes for quiet, and returns
// their first 4 bytes as sequence numbers.
func recvAll(t *testing.T, c *net.UDPConn, quiet time.Duration) []uint32 {
	t.Helper()
	var seqs []uint32
	buf := make([]byte, 65536)
	for {
		c.SetReadDeadline(time.Now().Add(quiet))
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			return seqs
		}
		if n >= 4 {
			seqs = append(seqs, binary.BigEndian.Uint32(buf))
		}
	}
}

func send(t *testing.T, c *net.UDPConn, seq uint32, size int) {
	t.Helper()
	b := make([]byte, size)
	binary.BigEndian.PutUint32(b, seq)
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

func TestLossRate(t *testing.T) {
	const n, loss = 4000, 0.2
	r, client, upstream := setup(t, Config{Up: Link{Loss: loss}, Seed: 7})
	for i := range n {
		send(t, client, uint32(i), 100)
		if i%200 == 199 {
			time.Sleep(2 * time.Millisecond) // let the relay keep up: kernel drops are not the relay's
		}
	}
	got := recvAll(t, upstream, 300*time.Millisecond)
	st := r.Stats().Up
	if st.In != n {
		t.Fatalf("relay read %d datagrams, want %d (kernel drops on loopback?)", st.In, n)
	}
	rate := float64(st.Lost) / n
	// 4000 trials at p=0.2: sd 0.0063; 0.035 is more than 5 sd.
	if math.Abs(rate-loss) > 0.035 {
		t.Errorf("lost %.3f of datagrams, want %.2f±0.035", rate, loss)
	}
	if uint64(len(got)) != st.Out || st.Out != n-st.Lost {
		t.Errorf("upstream got %d, relay sent %d, want %d-%d", len(got), st.Out, n, st.Lost)
	}
	if d := r.Stats().Down; d.Lost != 0 || d.In != 0 {
		t.Errorf("down direction touched: %+v", d)
	}
}

func TestDelayBothWays(t *testing.T) {
	const delay = 40 * time.Millisecond
	r, client, upstream := setup(t, Symmetric(Link{Delay: delay}, 1))
	t0 := time.Now()
	send(t, client, 1, 64)
	buf := make([]byte, 100)
	upstream.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := upstream.ReadFromUDP(buf)
	if err != nil {
		t.Fatal(err)
	}
	oneWay := time.Since(t0)
	if _, err := upstream.WriteToUDP(buf[:n], from); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(buf); err != nil {
		t.Fatal(err)
	}
	rtt := time.Since(t0)
	if oneWay < delay-earlyOK || rtt < 2*(delay-earlyOK) {
		t.Errorf("one way %v, round trip %v: want at least %v and %v", oneWay, rtt, delay-earlyOK, 2*(delay-earlyOK))
	}
	if rtt > 2*delay+time.Second {
		t.Errorf("round trip %v, far above 2×%v", rtt, delay)
	}
	// Lateness is what the relay added beyond the delay: counted, and
	// within what the measured round trip allows.
	st := r.Stats()
	for i := 0; i < 100 && st.Down.Out == 0; i++ { // counted just after the write
		time.Sleep(10 * time.Millisecond)
		st = r.Stats()
	}
	if st.Up.Out != 1 || st.Down.Out != 1 || st.Up.MaxLate < 0 || st.Up.Late != st.Up.MaxLate || st.Up.MaxLate+st.Down.MaxLate > rtt-2*(delay-earlyOK) {
		t.Errorf("counters %+v after a round trip of %v", st, rtt)
	}
}

func TestMTU(t *testing.T) {
	r, client, upstream := setup(t, Symmetric(Link{MTU: 1500}, 1))
	send(t, client, 1, 1472)
	send(t, client, 2, 1473)
	send(t, client, 3, 9000)
	send(t, client, 4, 1400)
	got := recvAll(t, upstream, 300*time.Millisecond)
	if len(got) != 2 || got[0] != 1 || got[1] != 4 {
		t.Errorf("upstream got %v, want [1 4]", got)
	}
	if st := r.Stats().Up; st.TooBig != 2 || st.MaxOut != 1472 {
		t.Errorf("counters %+v, want TooBig 2, MaxOut 1472", st)
	}
}

func TestRateCap(t *testing.T) {
	const rate, size, n = 1e6, 1000, 200 // 200 KB at 1 MB/s: 0.2 s
	r, client, upstream := setup(t, Config{Up: Link{Rate: rate}, Seed: 1})
	t0 := time.Now()
	for i := range n {
		send(t, client, uint32(i), size)
	}
	got := recvAll(t, upstream, 500*time.Millisecond)
	if len(got) != n {
		t.Fatalf("upstream got %d datagrams, want %d (%+v)", len(got), n, r.Stats().Up)
	}
	// The last datagram left no earlier than n*size/rate after the first
	// (minus one datagram's time); recvAll's quiet period is not counted.
	el := time.Since(t0) - 500*time.Millisecond
	want := time.Duration(float64((n-1)*size) / rate * float64(time.Second))
	if el < want-10*time.Millisecond {
		t.Errorf("%d bytes took %v through a %.0f B/s cap, want at least %v", n*size, el, rate, want)
	}
	if el > want+time.Second {
		t.Errorf("%d bytes took %v, want about %v", n*size, el, want)
	}
}

func TestJitterKeepsOrder(t *testing.T) {
	_, client, upstream := setup(t, Config{Up: Link{Delay: 5 * time.Millisecond, Jitter: 10 * time.Millisecond}, Seed: 3})
	for i := range 300 {
		send(t, client, uint32(i), 64)
	}
	got := recvAll(t, upstream, 300*time.Millisecond)
	if len(got) != 300 {
		t.Fatalf("got %d datagrams, want 300", len(got))
	}
	for i, s := range got {
		if s != uint32(i) {
			t.Fatalf("datagram %d is seq %d: reordered", i, s)
		}
	}
}

func TestQueueBound(t *testing.T) {
	// A 100 KB/s cap and a 16-datagram queue: a burst of 200 fills it.
	r, client, upstream := setup(t, Config{Up: Link{Rate: 1e5}, Queue: 16, Seed: 1})
	for i := range 200 {
		send(t, client, uint32(i), 1000)
	}
	// Wait until the queue has drained (every datagram sent or dropped).
	st := r.Stats().Up
	for end := time.Now().Add(10 * time.Second); (st.In < 200 || st.Out+st.QueueFull < st.In) && time.Now().Before(end); st = r.Stats().Up {
		time.Sleep(20 * time.Millisecond)
	}
	got := recvAll(t, upstream, 300*time.Millisecond)
	if st.QueueFull == 0 || uint64(len(got)) != st.Out || st.Out+st.QueueFull != st.In {
		t.Errorf("got %d, counters %+v: want drops at the full queue and every datagram counted once", len(got), st)
	}
	if st.Out > 16+20 { // what the queue holds plus what left during the burst
		t.Errorf("%d datagrams passed a 16-datagram queue in a burst", st.Out)
	}
}

func TestSetConfigAndValidate(t *testing.T) {
	r, client, upstream := setup(t, Config{Seed: 1})
	if err := r.SetConfig(Symmetric(Link{Loss: 1}, 0)); err != nil {
		t.Fatal(err)
	}
	send(t, client, 1, 64)
	if got := recvAll(t, upstream, 200*time.Millisecond); len(got) != 0 {
		t.Errorf("loss 1 let %d through", len(got))
	}
	for _, bad := range []Link{{Loss: -0.1}, {Loss: 1.5}, {MTU: 20}, {Delay: -1}} {
		if err := r.SetConfig(Symmetric(bad, 0)); err == nil {
			t.Errorf("SetConfig(%+v) accepted", bad)
		}
	}
	if _, err := New("not an address", Config{}); err == nil {
		t.Error("New accepted a bad upstream")
	}
	r.Close()
	r.Close() // idempotent
}

func TestIPv6Burst(t *testing.T) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skip("no IPv6 loopback:", err)
	}
	c.Close()
	r, client, upstream := setupOn(t, net.IPv6loopback, Config{Up: Link{Delay: 5 * time.Millisecond}, Seed: 1})
	// A burst larger than one batched read or write: all of it arrives, in
	// order, and each datagram whole.
	const n = 500
	for i := range n {
		send(t, client, uint32(i), 100+i)
	}
	got := recvAll(t, upstream, 300*time.Millisecond)
	if len(got) != n {
		t.Fatalf("got %d datagrams, want %d (%+v)", len(got), n, r.Stats().Up)
	}
	for i, s := range got {
		if s != uint32(i) {
			t.Fatalf("datagram %d is seq %d: reordered", i, s)
		}
	}
	if st := r.Stats().Up; st.OutBytes != n*100+n*(n-1)/2 || st.MaxOut != 100+n-1 {
		t.Errorf("counters %+v: want every byte counted", st)
	}
}
