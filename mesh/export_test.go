package mesh

import (
	"net"
	"testing"
)

// Internals the external tests (package mesh_test) check against.
const (
	AdvertHold      = advertHold
	FullProbeRounds = fullProbeRounds
	ProbeRounds     = probeRounds
	BaseMTU         = baseMTU
	DumpEvery       = dumpEvery
)

// SmallestProbe is the smallest probe size (the last MTU probing tries).
var SmallestProbe = probeSizes[len(probeSizes)-1]

// StartNode starts a node with cfg on conn (a fresh identity unless cfg
// has one; zero fields take the defaults, as with New), sending hellos to
// peers, closed when the test ends. The white-box tests of this package
// build their nodes with it. Package mesh_test sets it to internal/meshtest's
// Start in its init (rig_test.go): this package's tests cannot import
// meshtest, which imports mesh.
var StartNode func(t testing.TB, cfg Config, conn net.PacketConn, peers []net.Addr) *Node
