package arq

// An approximation of the full MSP data path for benchmarks: two Conns in
// one process over real UDP sockets on 127.0.0.1 (kernel-chosen ports),
// every packet sealed with ChaCha20-Poly1305, optionally smux on top. It
// is not the msp package (no mesh, no handshake); it shows what this
// engine costs next to the crypto and the sockets.

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"github.com/xtaci/smux"
	"golang.org/x/crypto/chacha20poly1305"
)

type udpEnd struct {
	pc         *net.UDPConn
	peer       *net.UDPAddr
	seal, open cipher.AEAD
	ctr        uint64 // used by Output only (the Conn's goroutine)
	out        []byte
	nonce      [chacha20poly1305.NonceSize]byte
	conn       *Conn
	wg         sync.WaitGroup
}

func (u *udpEnd) output(pkt []byte) error {
	u.ctr++
	binary.LittleEndian.PutUint64(u.nonce[:], u.ctr)
	b := binary.LittleEndian.AppendUint64(u.out[:0], u.ctr)
	b = u.seal.Seal(b, u.nonce[:], pkt, nil)
	u.out = b
	_, err := u.pc.WriteToUDP(b, u.peer)
	return err
}

func (u *udpEnd) readLoop() {
	defer u.wg.Done()
	buf := make([]byte, 1<<16)
	var nonce [chacha20poly1305.NonceSize]byte
	for {
		n, _, err := u.pc.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if n < 8 {
			continue
		}
		copy(nonce[:8], buf[:8])
		plain, err := u.open.Open(buf[8:8], nonce[:], buf[8:n], nil)
		if err != nil {
			continue
		}
		u.conn.Input(plain)
	}
}

func newUDPPair(b *testing.B, cfg Config) (*Conn, *Conn) {
	key := func() cipher.AEAD {
		k := make([]byte, chacha20poly1305.KeySize)
		rand.Read(k)
		a, err := chacha20poly1305.New(k)
		if err != nil {
			b.Fatal(err)
		}
		return a
	}
	ab, ba := key(), key()
	listen := func() *net.UDPConn {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		pc.SetReadBuffer(4 << 20)
		pc.SetWriteBuffer(4 << 20)
		return pc
	}
	ea := &udpEnd{pc: listen(), seal: ab, open: ba}
	eb := &udpEnd{pc: listen(), seal: ba, open: ab}
	ea.peer = eb.pc.LocalAddr().(*net.UDPAddr)
	eb.peer = ea.pc.LocalAddr().(*net.UDPAddr)
	for _, e := range []*udpEnd{ea, eb} {
		c := cfg
		c.Output = e.output
		conn, err := New(c)
		if err != nil {
			b.Fatal(err)
		}
		e.conn = conn
	}
	for _, e := range []*udpEnd{ea, eb} {
		e.wg.Add(1)
		go e.readLoop()
	}
	b.Cleanup(func() {
		for _, e := range []*udpEnd{ea, eb} {
			e.conn.Close()
			e.pc.Close()
			e.wg.Wait()
		}
	})
	return ea.conn, eb.conn
}

func smuxPair(b *testing.B, ca, cb *Conn) (*smux.Stream, *smux.Stream) {
	sc := smux.DefaultConfig()
	sc.MaxReceiveBuffer = 8 << 20
	sc.MaxStreamBuffer = 4 << 20
	cli, err := smux.Client(ca, sc)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := smux.Server(cb, sc)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close(); srv.Close() })
	accepted := make(chan *smux.Stream, 1)
	go func() {
		s, _ := srv.AcceptStream()
		accepted <- s
	}()
	sa, err := cli.OpenStream()
	if err != nil {
		b.Fatal(err)
	}
	sa.Write([]byte{0}) // smux sends SYN lazily with data
	sb := <-accepted
	if sb == nil {
		b.Fatal("accept failed")
	}
	one := make([]byte, 1)
	if _, err := sb.Read(one); err != nil {
		b.Fatal(err)
	}
	return sa, sb
}

// BenchmarkStack is bulk throughput over UDP loopback with ChaCha20-Poly1305
// and 16 KiB packets, without and with smux.
func BenchmarkStack(b *testing.B) {
	const chunk = 64 << 10
	cfg := Config{MaxPacket: 16 << 10}
	b.Run("udp-chacha-16k", func(b *testing.B) {
		ca, cb := newUDPPair(b, cfg)
		benchStream(b, ca, cb, chunk)
		s := ca.Stats()
		b.ReportMetric(float64(s.PacketsLost), "lost")
		b.ReportMetric(float64(s.BytesRetransmitted)/float64(s.BytesSent+1)*100, "retx-%")
	})
	b.Run("udp-chacha-smux-16k", func(b *testing.B) {
		ca, cb := newUDPPair(b, cfg)
		sa, sb := smuxPair(b, ca, cb)
		benchStream(b, sa, sb, chunk)
		s := ca.Stats()
		b.ReportMetric(float64(s.PacketsLost), "lost")
		b.ReportMetric(float64(s.BytesRetransmitted)/float64(s.BytesSent+1)*100, "retx-%")
	})
}

// BenchmarkStackEcho is the 64-byte round trip over the same stack.
func BenchmarkStackEcho(b *testing.B) {
	cfg := Config{MaxPacket: 16 << 10}
	b.Run("udp-chacha", func(b *testing.B) {
		ca, cb := newUDPPair(b, cfg)
		benchEcho(b, ca, cb)
	})
	b.Run("udp-chacha-smux", func(b *testing.B) {
		ca, cb := newUDPPair(b, cfg)
		sa, sb := smuxPair(b, ca, cb)
		benchEcho(b, sa, sb)
	})
}
