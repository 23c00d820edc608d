package instance

import (
	"io"
	"strconv"
	"time"

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

// ParseInterval reads ping's -i: a duration ("200ms") or, as ping(8),
// seconds ("0.2").
func ParseInterval(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, usagef("-i %q: want a duration (200ms) or seconds (0.2)", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}
