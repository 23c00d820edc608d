package instance

// The output of the query commands (id self, id peers, route print,
// service find) as documents: Print writes one as text, or, with --json,
// as one JSON object, so that fields can be added later without breaking
// a reader. Names are snake_case, SIDs 64 upper-case hex digits,
// durations integers with their unit in the name (_us, _ms). These names
// are stable: README.md, "JSON output", lists every field, and
// TestJSONOutputDocumented (cmd/servald) checks that its tables name
// exactly the fields of these types.

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
)

// SelfJSON is the document of `servald id self --json`.
type SelfJSON struct {
	SID identity.SID `json:"sid"` // this node's SID
}

// PeersJSON is the document of `servald id peers --json`: the reachable
// nodes, nearest first.
type PeersJSON struct {
	Peers []PeerJSON `json:"peers"`
}

// PeerJSON is a reachable node in PeersJSON.
type PeerJSON struct {
	SID    identity.SID `json:"sid"`
	Hops   int          `json:"hops"`
	Via    identity.SID `json:"via"`    // the neighbour the route leads through
	Metric int          `json:"metric"` // path cost: 256 per clean hop
}

// RoutesJSON is the document of `servald route print --json`: the routing
// table, nearest first, and the links to the node's neighbours.
type RoutesJSON struct {
	Routes     []RouteJSON     `json:"routes"`
	Neighbours []NeighbourJSON `json:"neighbours"`
}

// RouteJSON is a row of the routing table in RoutesJSON.
type RouteJSON struct {
	SID     identity.SID `json:"sid"`
	NextHop identity.SID `json:"next_hop"`
	Hops    int          `json:"hops"`
	Metric  int          `json:"metric"`
	MTU     int          `json:"mtu"` // largest frame along the path, bytes
}

// NeighbourJSON is a link to a neighbour in RoutesJSON.
type NeighbourJSON struct {
	SID    identity.SID `json:"sid"`
	Addr   string       `json:"addr"` // its UDP address
	MTU    int          `json:"mtu"`
	SRTTus int64        `json:"srtt_us"` // smoothed round trip of the link
	// LossPct is the percentage of frames sent that needed resending,
	// recently.
	LossPct float64 `json:"loss_pct"`
}

// ServicesJSON is the document of `servald service find --json`: the
// answers, nearest first.
type ServicesJSON struct {
	Services []ServiceJSON `json:"services"`
}

// ServiceJSON is an answer in ServicesJSON.
type ServiceJSON struct {
	SID  identity.SID `json:"sid"` // the node offering it, which signed the answer
	Name string       `json:"name"`
	Port uint16       `json:"port"` // its MDP port
	Hops int          `json:"hops"` // 0 for this node
}

// SelfDoc is the document of id self for sid.
func SelfDoc(sid identity.SID) SelfJSON { return SelfJSON{SID: sid} }

// PeersDoc is the document of id peers for routes.
func PeersDoc(routes []mesh.Route) PeersJSON {
	d := PeersJSON{Peers: make([]PeerJSON, 0, len(routes))}
	for _, r := range routes {
		d.Peers = append(d.Peers, PeerJSON{SID: r.SID, Hops: r.Hops, Via: r.NextHop, Metric: r.Metric})
	}
	return d
}

// RoutesDoc is the document of route print for routes and neighbours nbs.
func RoutesDoc(routes []mesh.Route, nbs []mesh.Neighbour) RoutesJSON {
	d := RoutesJSON{Routes: make([]RouteJSON, 0, len(routes)), Neighbours: make([]NeighbourJSON, 0, len(nbs))}
	for _, r := range routes {
		d.Routes = append(d.Routes, RouteJSON{SID: r.SID, NextHop: r.NextHop, Hops: r.Hops, Metric: r.Metric, MTU: r.MTU})
	}
	for _, nb := range nbs {
		addr := ""
		if nb.Addr != nil {
			addr = nb.Addr.String()
		}
		d.Neighbours = append(d.Neighbours, NeighbourJSON{SID: nb.SID, Addr: addr, MTU: nb.MTU,
			SRTTus: nb.SRTT.Microseconds(), LossPct: nb.Loss * 100})
	}
	return d
}

// ServicesDoc is the document of service find for answers.
func ServicesDoc(answers []discovery.Answer) ServicesJSON {
	d := ServicesJSON{Services: make([]ServiceJSON, 0, len(answers))}
	for _, a := range answers {
		d.Services = append(d.Services, ServiceJSON{SID: a.SID, Name: a.Name, Port: a.Port, Hops: a.Hops})
	}
	return d
}

// Doc is a command's output.
type Doc interface {
	// WriteText writes the output without --json.
	WriteText(w io.Writer)
}

// Print writes d to w: as one line of JSON when asJSON, else as text.
func Print(w io.Writer, d Doc, asJSON bool) error {
	if asJSON {
		return json.NewEncoder(w).Encode(d)
	}
	d.WriteText(w)
	return nil
}

// WriteText writes the SID on a line.
func (d SelfJSON) WriteText(w io.Writer) { fmt.Fprintln(w, d.SID) }

// WriteText writes a line per node: SID hops=N via=NEXTHOP metric=M, the
// next hop shortened.
func (d PeersJSON) WriteText(w io.Writer) {
	for _, p := range d.Peers {
		fmt.Fprintf(w, "%s hops=%d via=%s metric=%d\n", p.SID, p.Hops, p.Via.Short(), p.Metric)
	}
}

// WriteText writes the routing table (not the neighbours) in columns,
// under a header.
func (d RoutesJSON) WriteText(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tNEXT HOP\tHOPS\tMETRIC\tMTU")
	for _, r := range d.Routes {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\n", r.SID, r.NextHop.Short(), r.Hops, r.Metric, r.MTU)
	}
	tw.Flush()
}

// WriteText writes a line per answer: SID NAME.mdp.port=PORT.
func (d ServicesJSON) WriteText(w io.Writer) {
	for _, a := range d.Services {
		fmt.Fprintln(w, discovery.Answer{SID: a.SID, Hops: a.Hops, Service: discovery.Service{Name: a.Name, Port: a.Port}})
	}
}
