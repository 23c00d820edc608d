package mesh_test

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The shapes where Serval's routing broke (serval-dna #101, #102): a hub
// with many neighbours, a long chain, and a mesh ten times BenchmarkMesh50.
// All run with the default configuration (1 s hellos, 5 s neighbour
// timeout, the bounds of DefaultConfig); benchMesh reports the figures.

// BenchmarkMeshHub100: one node with 99 neighbours that know nothing but it.
// The hub has the leaves as configured peers, which are admitted beyond
// MaxNeighbours (64): that is what a servald hub can do, since the cap has
// no flag. A leaf is killed. Targets: converged within 10 s, withdrawn
// within 10 s, at most 2 KB/s of control traffic per node.
func BenchmarkMeshHub100(b *testing.B) {
	const count = 100
	benchMesh(b, meshScale{
		count:  count,
		links:  linksOf(count-1, func(i int) [2]int { return [2]int{0, i + 1} }),
		victim: func(rng *rand.Rand) int { return 1 + rng.IntN(count-1) },
		within: time.Minute,
	})
}

// BenchmarkMeshChain64: 64 nodes in a line, each knowing the next. The node
// at the far end is killed, so its withdrawal crosses 63 hops. Targets as
// for the hub.
func BenchmarkMeshChain64(b *testing.B) {
	const count = 64
	benchMesh(b, meshScale{
		count:  count,
		links:  linksOf(count-1, func(i int) [2]int { return [2]int{i, i + 1} }),
		victim: func(*rand.Rand) int { return count - 1 },
		within: time.Minute,
	})
}

// BenchmarkMesh500: a 500-node random mesh (about 3 links per node). Target:
// it converges within the default bounds and stays at or under 2 KB/s of
// control traffic per node.
func BenchmarkMesh500(b *testing.B) {
	const count = 500
	benchMesh(b, meshScale{
		count:  count,
		links:  func(rng *rand.Rand) [][2]int { return randomMesh(rng, count, 3) },
		victim: victimAny(count),
		within: 90 * time.Second,
	})
}

// linksOf returns the k links link(0) ... link(k-1), whatever the seed.
func linksOf(k int, link func(i int) [2]int) func(*rand.Rand) [][2]int {
	return func(*rand.Rand) [][2]int {
		out := make([][2]int, k)
		for i := range out {
			out[i] = link(i)
		}
		return out
	}
}
