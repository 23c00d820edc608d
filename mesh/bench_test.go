package mesh_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/servald/servald/internal/memnet"
	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

// randomMesh returns the links of a connected random graph of n nodes with
// about deg links per node: a random spanning tree plus random extra links.
func randomMesh(rng *rand.Rand, n, deg int) [][2]int {
	seen := map[[2]int]bool{}
	var links [][2]int
	add := func(a, b int) {
		if a == b {
			return
		}
		k := [2]int{min(a, b), max(a, b)}
		if !seen[k] {
			seen[k] = true
			links = append(links, [2]int{a, b})
		}
	}
	for i := 1; i < n; i++ {
		add(i, rng.IntN(i))
	}
	for len(links) < n*deg/2 {
		add(rng.IntN(n), rng.IntN(n))
	}
	return links
}

// fullyRouted reports whether every live node routes to every other.
func fullyRouted(nodes []*mesh.Node, dead map[int]bool) bool {
	for i, n := range nodes {
		if dead[i] {
			continue
		}
		if len(n.Routes()) < len(nodes)-1-len(dead) {
			return false
		}
	}
	return true
}

// BenchmarkMesh50 starts a 50-node random mesh on the in-memory network with
// the default timers (1 s hellos, 5 s neighbour timeout) and reports: the
// time until every node routes to every other (target <= 5 s), the time
// until a killed node's routes are gone everywhere (target <= 10 s), and
// control bytes sent per node per second while idle (hellos, probes,
// routing messages and their per-hop acknowledgements; target <= 2 KB/s).
func BenchmarkMesh50(b *testing.B) {
	const count = 50
	for b.Loop() {
		seed := rand.Uint64()
		rng := rand.New(rand.NewPCG(seed, 1))
		links := randomMesh(rng, count, 3)
		b.Logf("seed %d: %d nodes, %d links", seed, count, len(links))
		t0 := time.Now()
		m := meshtest.New(b, count, links, memnet.LinkConfig{}, meshtest.Timers(time.Second, 5*time.Second))
		for !fullyRouted(m.Nodes, nil) {
			if time.Since(t0) > time.Minute {
				b.Fatal("not converged after a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
		converge := time.Since(t0)

		// Idle control traffic over 20 s.
		sum := func() (total uint64) {
			for _, n := range m.Nodes {
				s := n.Stats()
				total += s.ControlBytesOut + s.AckBytesOut
			}
			return
		}
		c0, w0 := sum(), time.Now()
		time.Sleep(20 * time.Second)
		ctl := float64(sum()-c0) / time.Since(w0).Seconds() / count

		victim := rng.IntN(count)
		vsid := m.Nodes[victim].SID()
		m.Nodes[victim].Close()
		t1 := time.Now()
		for {
			gone := true
			for i, n := range m.Nodes {
				if i == victim {
					continue
				}
				for _, r := range n.Routes() {
					if r.SID == vsid {
						gone = false
					}
				}
			}
			if gone {
				break
			}
			if time.Since(t1) > time.Minute {
				b.Fatal("killed node still routed to after a minute")
			}
			time.Sleep(10 * time.Millisecond)
		}
		withdraw := time.Since(t1)
		b.ReportMetric(converge.Seconds(), "s-converge")
		b.ReportMetric(withdraw.Seconds(), "s-withdraw")
		b.ReportMetric(ctl, "ctl-B/node/s")
	}
}
