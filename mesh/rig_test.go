package mesh_test

import (
	"net"
	"testing"
	"time"

	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func init() {
	mesh.StartNode = func(t testing.TB, conn net.PacketConn, peers []net.Addr, hello, timeout time.Duration) *mesh.Node {
		t.Helper()
		return meshtest.Start(t, conn, peers, meshtest.Timers(hello, timeout))
	}
}
