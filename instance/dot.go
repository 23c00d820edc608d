package instance

import (
	"fmt"
	"io"
	"time"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// WriteDot writes a Graphviz digraph of what a distance-vector node knows: its links, and the
// next hop and distance of every farther destination.
func WriteDot(w io.Writer, self identity.SID, routes []mesh.Route, nbs []mesh.Neighbour) {
	fmt.Fprintln(w, "digraph servald {")
	fmt.Fprintln(w, "  // Known to this node: its links (solid) and, for farther nodes, the")
	fmt.Fprintln(w, "  // next hop and distance (dashed); the nodes in between are not known.")
	fmt.Fprintln(w, "  node [shape=ellipse fontname=monospace];")
	drawn := map[identity.SID]bool{}
	node := func(sid identity.SID, extra string) {
		if drawn[sid] {
			return
		}
		drawn[sid] = true
		fmt.Fprintf(w, "  %q [label=%q%s];\n", sid.String(), sid.Short(), extra)
	}
	node(self, " shape=box style=bold")
	metric := map[identity.SID]int{}
	for _, r := range routes {
		if r.Hops == 1 && r.NextHop == r.SID {
			metric[r.SID] = r.Metric
		}
	}
	for _, nb := range nbs {
		node(nb.SID, "")
		label := fmt.Sprintf("loss %.0f%%\\nrtt %s", nb.Loss*100, nb.SRTT.Round(10*time.Microsecond))
		if m, ok := metric[nb.SID]; ok {
			label = fmt.Sprintf("metric %d\\n", m) + label
		}
		fmt.Fprintf(w, "  %q -> %q [label=\"%s\"];\n", self.String(), nb.SID.String(), label)
	}
	for _, r := range routes {
		if r.NextHop == r.SID {
			if !drawn[r.SID] { // a route to a neighbour not in the list (just changed)
				node(r.SID, "")
				fmt.Fprintf(w, "  %q -> %q [label=\"metric %d\"];\n", self.String(), r.SID.String(), r.Metric)
			}
			continue
		}
		node(r.NextHop, "")
		node(r.SID, "")
		fmt.Fprintf(w, "  %q -> %q [style=dashed label=\"%d hops\\nmetric %d\"];\n", r.NextHop.String(), r.SID.String(), r.Hops, r.Metric)
	}
	fmt.Fprintln(w, "}")
}
