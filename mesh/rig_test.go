package mesh_test

import (
	"net"
	"testing"

	"github.com/servald/servald/internal/meshtest"
	"github.com/servald/servald/mesh"
)

func init() {
	mesh.StartNode = func(t testing.TB, cfg mesh.Config, conn net.PacketConn, peers []net.Addr) *mesh.Node {
		t.Helper()
		return meshtest.Start(t, conn, peers, meshtest.Configure(func(_ int, c *mesh.Config) {
			id := c.Identity
			*c = cfg
			c.Conn, c.Peers = conn, peers
			if c.Identity == nil {
				c.Identity = id
			}
		}))
	}
}
