package mesh_test

// MDP datagrams across one lossy memnet link: the per-hop layer must turn
// 20% loss each way into exactly-once delivery (in the order frames arrive:
// a frame behind a lost one is not held back).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// lossyPayload is datagram i: its number, then bytes derived from it.
func lossyPayload(buf []byte, i int) []byte {
	size := 200 + (i*37)%900
	b := buf[:size]
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < size; j++ {
		b[j] = byte(i + j)
	}
	return b
}

func TestLossyLinkDeliversExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		count := 3000
		if testing.Short() {
			count = 1000
		}
		m := meshtest.Pair(t, memnet.LinkConfig{Loss: 0.2, Delay: 5 * time.Millisecond}, meshtest.Timers(100*time.Millisecond, 3*time.Second))
		a, b, nw := m.Nodes[0], m.Nodes[1], m.Net
		const port = 100
		pa, err := a.Bind(port)
		if err != nil {
			t.Fatal(err)
		}
		defer pa.Close()
		pb, err := b.Bind(port)
		if err != nil {
			t.Fatal(err)
		}
		defer pb.Close()

		start := time.Now()
		// Both directions at once: each side sends count datagrams and reads
		// the other's.
		type result struct {
			name string
			err  string
		}
		results := make(chan result, 4)
		send := func(name string, from *mesh.PacketConn, to net.Addr) {
			buf := make([]byte, 2048)
			from.SetWriteDeadline(time.Now().Add(40 * time.Second))
			for i := 0; i < count; i++ {
				if _, err := from.WriteTo(lossyPayload(buf, i), to); err != nil {
					results <- result{name, fmt.Sprintf("write %d: %v", i, err)}
					return
				}
			}
			results <- result{name, ""}
		}
		recv := func(name string, c *mesh.PacketConn, from net.Addr) {
			buf := make([]byte, 4096)
			want := make([]byte, 2048)
			got := make([]bool, count)
			late := 0 // datagrams that arrived after a higher-numbered one
			highest := -1
			c.SetReadDeadline(time.Now().Add(40 * time.Second))
			for range count {
				k, src, err := c.ReadFrom(buf)
				if err != nil {
					results <- result{name, fmt.Sprintf("%d of %d datagrams: %v", countTrue(got), count, err)}
					return
				}
				if src != from {
					results <- result{name, fmt.Sprintf("datagram from %v", src)}
					return
				}
				i := -1
				if k >= 4 {
					i = int(binary.BigEndian.Uint32(buf))
				}
				if i < 0 || i >= count || !bytes.Equal(buf[:k], lossyPayload(want, i)) {
					results <- result{name, fmt.Sprintf("datagram #%d of %d bytes is not what was sent", i, k)}
					return
				}
				if got[i] {
					results <- result{name, fmt.Sprintf("datagram #%d delivered twice", i)}
					return
				}
				got[i] = true
				if i < highest {
					late++
				}
				highest = max(highest, i)
			}
			t.Logf("%s: %d datagrams arrived after a later one (not held back for order)", name, late)
			// Exactly once: nothing more may follow.
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			if k, _, err := c.ReadFrom(buf); !os.IsTimeout(err) {
				results <- result{name, fmt.Sprintf("extra datagram of %d bytes after the last", k)}
				return
			}
			results <- result{name, ""}
		}
		go send("a->b send", pa, pb.LocalAddr())
		go send("b->a send", pb, pa.LocalAddr())
		go recv("a->b recv", pb, pa.LocalAddr())
		go recv("b->a recv", pa, pb.LocalAddr())
		for range 4 {
			if r := <-results; r.err != "" {
				t.Errorf("%s: %s", r.name, r.err)
			}
		}
		elapsed := time.Since(start)

		sa, sb := a.Stats(), b.Stats()
		ab, ba := nw.LinkStats(a.LocalAddr(), b.LocalAddr()), nw.LinkStats(b.LocalAddr(), a.LocalAddr())
		t.Logf("%d datagrams each way in %v", count, elapsed.Round(time.Millisecond))
		for _, x := range []struct {
			name string
			s    mesh.Stats
			l    memnet.LinkStats
		}{{"a", sa, ab}, {"b", sb, ba}} {
			t.Logf("%s: link sent %d lost %d (%.1f%%); retransmits %d (fast %d, timeouts %d), duplicates %d, beyond window %d, abandoned %d, delivered %d",
				x.name, x.l.Sent, x.l.Lost, 100*float64(x.l.Lost)/float64(max(x.l.Sent, 1)),
				x.s.Retransmits, x.s.FastRetransmits, x.s.Timeouts, x.s.Duplicates, x.s.BeyondWindow, x.s.Abandoned, x.s.Delivered)
			if x.l.Lost == 0 || x.s.Retransmits == 0 {
				t.Errorf("%s: %d frames lost, %d retransmits: the loss was not applied", x.name, x.l.Lost, x.s.Retransmits)
			}
			if x.s.Abandoned != 0 || x.s.PortDrops != 0 {
				t.Errorf("%s: %d frames abandoned, %d port drops", x.name, x.s.Abandoned, x.s.PortDrops)
			}
			if x.s.Delivered < uint64(count) {
				t.Errorf("%s: delivered %d, want at least %d", x.name, x.s.Delivered, count)
			}
		}
	})
}

func countTrue(b []bool) int {
	n := 0
	for _, v := range b {
		if v {
			n++
		}
	}
	return n
}
