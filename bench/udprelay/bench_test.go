package udprelay

import (
	"fmt"
	"net"
	"testing"
	"time"
)

// BenchmarkRelay pushes 1400-byte datagrams through a relay with 10 ms of
// delay, paced at a target rate (the rate a fast tunnel would offer), and
// reports what the relay does to them: the rate it carried (MB/s) and how
// late past due it sent them on average (late-us) and at most
// (max-late-us). Lateness adds to the link's delay in every real-path
// benchmark, so it must stay small beside 10 ms.
func BenchmarkRelay(b *testing.B) {
	for _, rate := range []float64{20e6, 50e6, 100e6} {
		b.Run(fmt.Sprintf("offered=%gMB/s", rate/1e6), func(b *testing.B) {
			upstream, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				b.Fatal(err)
			}
			defer upstream.Close()
			upstream.SetReadBuffer(8 << 20)
			r, err := New(upstream.LocalAddr().String(), Symmetric(Link{Delay: 10 * time.Millisecond}, 1))
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			raddr, _ := net.ResolveUDPAddr("udp", r.Addr())
			client, err := net.DialUDP("udp", nil, raddr)
			if err != nil {
				b.Fatal(err)
			}
			defer client.Close()
			done := make(chan int)
			go func() {
				buf := make([]byte, 2048)
				n := 0
				for {
					upstream.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					if _, _, err := upstream.ReadFromUDP(buf); err != nil {
						done <- n
						return
					}
					n++
				}
			}()
			const size = 1400
			pkt := make([]byte, size)
			gap := time.Duration(float64(size) / rate * float64(time.Second))
			b.SetBytes(size)
			t0 := time.Now()
			for i := 0; b.Loop(); i++ {
				if d := time.Until(t0.Add(time.Duration(i) * gap)); d > 0 {
					time.Sleep(d)
				}
				client.Write(pkt)
			}
			el := time.Since(t0)
			got := <-done
			st := r.Stats().Up
			b.ReportMetric(float64(got)*size/1e6/el.Seconds(), "MB/s")
			if st.Out > 0 {
				b.ReportMetric(float64(st.Late.Microseconds())/float64(st.Out), "late-us")
			}
			b.ReportMetric(float64(st.MaxLate.Microseconds()), "max-late-us")
			b.ReportMetric(float64(st.QueueFull), "queue-full")
		})
	}
}
