package instance

import (
	"io"

	"github.com/servald/servald/mesh"
	"github.com/servald/servald/probe"
)

// ServeProbes answers ping and trace for n, a node of this process, on
// probe.EchoPort and probe.TracePort (package probe's default limits),
// unless o.NoEcho switches them off: it then binds nothing and returns nil.
// Closing the returned Closer stops answering.
func ServeProbes(n *mesh.Node, o NodeOptions) (io.Closer, error) {
	if o.NoEcho {
		return nil, nil
	}
	r, err := probe.ServeNode(n, probe.ResponderConfig{Logger: o.Logger}, true, true)
	if err != nil {
		return nil, err
	}
	return r, nil
}
