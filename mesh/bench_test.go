package mesh_test

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/servald/servald/identity"
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
		if c, _ := mesh.Reachable(n, identity.SID{}); c < len(nodes)-1-len(dead) {
			return false
		}
	}
	return true
}

// pollEvery is how often benchMesh looks at the routes of every node: the
// resolution of its times, small beside their targets (seconds), and rare
// enough that 500 nodes are not slowed by it.
const pollEvery = 50 * time.Millisecond

// meshScale is one shape of memnet mesh for benchMesh.
type meshScale struct {
	count int
	// links returns which node knows which as a configured peer (newMemMesh).
	links func(rng *rand.Rand) [][2]int
	// victim is the node killed to measure withdrawal.
	victim func(rng *rand.Rand) int
	// within bounds convergence (past it, benchMesh reports how far it got
	// and stops) and withdrawal (past it, the benchmark fails).
	within time.Duration
}

// benchMesh starts s on the in-memory network and reports: the time until
// every node routes to every other (s-converge; reached-% is the share of
// all routes there after the idle window below, or when s.within ran out
// before convergence), control bytes sent per node
// per second while idle over 20 s (hellos, probes, routing messages and their
// per-hop acknowledgements: the mean, ctl-B/node/s, and the busiest node,
// ctl-max-B/s; and the mean per kind, mesh.ControlKinds, each KIND-B/node/s), the heap in use and goroutines per node once converged, and
// the time until a killed node's routes are gone everywhere (s-withdraw).
func benchMesh(b *testing.B, s meshScale) {
	for b.Loop() {
		benchMeshOnce(b, s)
	}
}

// benchMeshOnce is one iteration of benchMesh.
func benchMeshOnce(b *testing.B, s meshScale) {
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, 1))
	links := s.links(rng)
	victim := s.victim(rng)
	b.Logf("seed %d: %d nodes, %d links, victim %d", seed, s.count, len(links), victim)
	runtime.GC()
	var ms0 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	g0 := runtime.NumGoroutine()
	t0 := time.Now()
	// The default configuration, not meshtest's fast test timers.
	m := meshtest.New(b, s.count, links, memnet.LinkConfig{}, meshtest.Timers(time.Second, 5*time.Second))
	// Cleanups run last first: the network closes before the nodes, so
	// that their sends fail at once instead of queueing on it.
	b.Cleanup(func() { m.Net.Close() })
	var progress []string // the share of routes found each 5 s, for the log
	for next := t0.Add(5 * time.Second); !fullyRouted(m.Nodes, nil); {
		if time.Now().After(next) {
			progress = append(progress, fmt.Sprintf("%.1f", reachedShare(m.Nodes)))
			next = next.Add(5 * time.Second)
		}
		if time.Since(t0) > s.within {
			// No convergence time to report: the share of routes
			// found says how far it got (scripts/bench wants 100).
			b.Logf("not converged after %v: %s", s.within, meshReport(m.Nodes))
			b.ReportMetric(reachedShare(m.Nodes), "reached-%")
			return
		}
		time.Sleep(pollEvery)
	}
	converge := time.Since(t0)
	b.Logf("reached-%% each 5 s until converged: %s", strings.Join(progress, " "))
	b.ReportMetric(converge.Seconds(), "s-converge")

	// Idle control traffic over 20 s.
	ctl := func() []uint64 {
		out := make([]uint64, len(m.Nodes))
		for i, n := range m.Nodes {
			st := n.Stats()
			out[i] = st.ControlBytesOut + st.AckBytesOut
		}
		return out
	}
	kinds := func() []uint64 {
		out := make([]uint64, len(mesh.ControlKinds))
		for _, n := range m.Nodes {
			for k, v := range mesh.ControlBreakdown(n) {
				out[k] += v
			}
		}
		return out
	}
	c0, k0, w0 := ctl(), kinds(), time.Now()
	// Each second's control bytes per node, to show bursts in the log.
	perSec := make([]string, 0, idleWindow/time.Second)
	prev := sum(c0)
	for range idleWindow / time.Second {
		time.Sleep(time.Second)
		cur := sum(ctl())
		perSec = append(perSec, fmt.Sprint((cur-prev)/uint64(s.count)))
		prev = cur
	}
	c1, k1, secs := ctl(), kinds(), time.Since(w0).Seconds()
	b.Logf("idle control B/node each second: %s", strings.Join(perSec, " "))
	for k, name := range mesh.ControlKinds {
		b.ReportMetric(float64(k1[k]-k0[k])/secs/float64(s.count), name+"-B/node/s")
	}
	var total, busiest uint64
	for i := range c1 {
		total += c1[i] - c0[i]
		busiest = max(busiest, c1[i]-c0[i])
	}
	// reached-% is 100 only if every route found is still there.
	if fullyRouted(m.Nodes, nil) {
		b.ReportMetric(100, "reached-%")
	} else {
		b.Logf("routes lost while idle: %s", meshReport(m.Nodes))
		b.ReportMetric(reachedShare(m.Nodes), "reached-%")
	}

	runtime.GC()
	var ms1 runtime.MemStats
	runtime.ReadMemStats(&ms1)
	heap := (float64(ms1.HeapInuse) - float64(ms0.HeapInuse)) / float64(s.count)
	gor := float64(runtime.NumGoroutine()-g0) / float64(s.count)

	vsid := m.Nodes[victim].SID()
	m.Nodes[victim].Close()
	t1 := time.Now()
	for {
		gone := true
		for i, n := range m.Nodes {
			if _, found := mesh.Reachable(n, vsid); found && i != victim {
				gone = false
				break
			}
		}
		if gone {
			break
		}
		if time.Since(t1) > s.within {
			b.Fatalf("killed node still routed to after %v", s.within)
		}
		time.Sleep(pollEvery)
	}
	withdraw := time.Since(t1)
	b.ReportMetric(withdraw.Seconds(), "s-withdraw")
	b.ReportMetric(float64(total)/secs/float64(s.count), "ctl-B/node/s")
	b.ReportMetric(float64(busiest)/secs, "ctl-max-B/s")
	b.ReportMetric(heap/1024, "heap-KB/node")
	b.ReportMetric(gor, "goroutines/node")
}

// idleWindow is how long benchMesh measures idle control traffic.
const idleWindow = 20 * time.Second

// sum is the sum of xs.
func sum(xs []uint64) uint64 {
	var t uint64
	for _, x := range xs {
		t += x
	}
	return t
}

// reachedShare is the percentage of all node pairs (a, b) where a has a
// route to b.
func reachedShare(nodes []*mesh.Node) float64 {
	total := 0
	for _, n := range nodes {
		c, _ := mesh.Reachable(n, identity.SID{})
		total += c
	}
	return 100 * float64(total) / float64(len(nodes)*(len(nodes)-1))
}

// meshReport sums what held a mesh back: the fewest nodes one node reaches
// and the counters of the bounds (Config) that refuse neighbours and routes.
func meshReport(nodes []*mesh.Node) string {
	least := len(nodes)
	var st mesh.Stats
	for _, n := range nodes {
		c, _ := mesh.Reachable(n, identity.SID{})
		least = min(least, c)
		s := n.Stats()
		st.NeighbourCap += s.NeighbourCap
		st.RouteCap += s.RouteCap
		st.NewOriginLimited += s.NewOriginLimited
		st.VerifyLimited += s.VerifyLimited
		st.VerifyQueueDrops += s.VerifyQueueDrops
	}
	return fmt.Sprintf("the least connected node reaches %d of %d; neighbour cap %d, route cap %d, new origins limited %d, verify limited %d, verify queue drops %d",
		least, len(nodes)-1, st.NeighbourCap, st.RouteCap, st.NewOriginLimited, st.VerifyLimited, st.VerifyQueueDrops)
}

// victimAny kills any node.
func victimAny(count int) func(*rand.Rand) int {
	return func(rng *rand.Rand) int { return rng.IntN(count) }
}

// BenchmarkMesh50 is a 50-node random mesh (about 3 links per node) with the
// default configuration (1 s hellos, 5 s neighbour timeout). Targets: converged
// within 5 s, a killed node's routes gone within 10 s, at most 2 KB/s of
// control traffic per node (scripts/bench). The larger shapes are in
// scale_bench_test.go.
func BenchmarkMesh50(b *testing.B) {
	benchMesh(b, meshScale{
		count:  50,
		links:  func(rng *rand.Rand) [][2]int { return randomMesh(rng, 50, 3) },
		victim: victimAny(50),
		within: time.Minute,
	})
}
