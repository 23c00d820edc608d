package metrics

// The node's families: read from a Source at each scrape through tables,
// one row per metric, so that a counter added to mesh.Stats or
// mesh.Neighbour is one line here (TestEveryStatsField fails until it is).

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// statsCounter is a mesh.Stats field served as a counter family of its own.
type statsCounter struct {
	name, help string
	get        func(*mesh.Stats) uint64
}

var statsCounters = []statsCounter{
	{"servald_mesh_frames_received_total", "UDP datagrams the node read.", func(s *mesh.Stats) uint64 { return s.FramesIn }},
	{"servald_mesh_frames_sent_total", "UDP datagrams the node wrote.", func(s *mesh.Stats) uint64 { return s.FramesOut }},
	{"servald_mesh_read_errors_total", "Errors reading the UDP socket.", func(s *mesh.Stats) uint64 { return s.ReadErrors }},
	{"servald_mesh_write_errors_total", "Errors writing the UDP socket.", func(s *mesh.Stats) uint64 { return s.WriteErrors }},
	{"servald_mesh_retransmits_total", "Per-hop resends of DATA frames.", func(s *mesh.Stats) uint64 { return s.Retransmits }},
	{"servald_mesh_retransmit_timeouts_total", "Per-hop resends because a frame's timer ran out.", func(s *mesh.Stats) uint64 { return s.Timeouts }},
	{"servald_mesh_fast_retransmits_total", "Frames declared lost because a later one was acknowledged.", func(s *mesh.Stats) uint64 { return s.FastRetransmits }},
	{"servald_mesh_delivered_total", "Datagrams delivered to this node's MDP ports.", func(s *mesh.Stats) uint64 { return s.Delivered }},
	{"servald_mesh_relayed_total", "Frames forwarded towards another node.", func(s *mesh.Stats) uint64 { return s.Relayed }},
	{"servald_mesh_routes_lost_total", "Routes retracted for want of a feasible next hop.", func(s *mesh.Stats) uint64 { return s.RoutesLost }},
	{"servald_mesh_control_sent_bytes_total", "Bytes of hellos, MTU probes and routing messages sent.", func(s *mesh.Stats) uint64 { return s.ControlBytesOut }},
	{"servald_mesh_ack_sent_bytes_total", "Bytes of per-hop acknowledgements sent.", func(s *mesh.Stats) uint64 { return s.AckBytesOut }},
	{"servald_mesh_cookies_sent_total", "COOKIEs sent in answer to hellos without a valid echo.", func(s *mesh.Stats) uint64 { return s.CookiesSent }},
	{"servald_mesh_neighbours_moved_total", "Neighbours moved to a new address by an authenticated frame from it.", func(s *mesh.Stats) uint64 { return s.Moved }},
}

// dropReason is a mesh.Stats field served as servald_mesh_drops_total{reason}.
type dropReason struct {
	reason string
	get    func(*mesh.Stats) uint64
}

// dropReasons are what the node dropped or ignored, by why; the meanings
// are mesh.Stats's.
var dropReasons = []dropReason{
	{"malformed", func(s *mesh.Stats) uint64 { return s.Malformed }},
	{"unknown_source", func(s *mesh.Stats) uint64 { return s.UnknownSource }},
	{"bad_hello", func(s *mesh.Stats) uint64 { return s.BadHello }},
	{"stale_hello", func(s *mesh.Stats) uint64 { return s.StaleHello }},
	{"abandoned", func(s *mesh.Stats) uint64 { return s.Abandoned }},
	{"duplicate", func(s *mesh.Stats) uint64 { return s.Duplicates }},
	{"beyond_window", func(s *mesh.Stats) uint64 { return s.BeyondWindow }},
	{"port_queue_full", func(s *mesh.Stats) uint64 { return s.PortDrops }},
	{"no_port", func(s *mesh.Stats) uint64 { return s.NoPort }},
	{"relay_queue_full", func(s *mesh.Stats) uint64 { return s.RelayDrops }},
	{"ttl_expired", func(s *mesh.Stats) uint64 { return s.TTLExpired }},
	{"no_route", func(s *mesh.Stats) uint64 { return s.NoRoute }},
	{"too_big", func(s *mesh.Stats) uint64 { return s.TooBig }},
	{"late", func(s *mesh.Stats) uint64 { return s.Late }},
	{"bad_route", func(s *mesh.Stats) uint64 { return s.BadRoute }},
	{"stale_route", func(s *mesh.Stats) uint64 { return s.StaleRoute }},
	{"bad_cookie", func(s *mesh.Stats) uint64 { return s.BadCookie }},
	{"untrusted", func(s *mesh.Stats) uint64 { return s.Untrusted }},
	{"address_taken", func(s *mesh.Stats) uint64 { return s.AddrTaken }},
	{"neighbour_cap", func(s *mesh.Stats) uint64 { return s.NeighbourCap }},
	{"verify_queue_full", func(s *mesh.Stats) uint64 { return s.VerifyQueueDrops }},
	{"verify_limited", func(s *mesh.Stats) uint64 { return s.VerifyLimited }},
	{"bad_signature_cached", func(s *mesh.Stats) uint64 { return s.BadSigCached }},
	{"new_origin_limited", func(s *mesh.Stats) uint64 { return s.NewOriginLimited }},
	{"route_cap", func(s *mesh.Stats) uint64 { return s.RouteCap }},
	{"implausible_route", func(s *mesh.Stats) uint64 { return s.ImplausibleRoute }},
	{"bad_mac", func(s *mesh.Stats) uint64 { return s.BadMAC }},
	{"unauthenticated", func(s *mesh.Stats) uint64 { return s.Unauthenticated }},
	{"replayed", func(s *mesh.Stats) uint64 { return s.Replayed }},
}

// linkMetric is a mesh.Neighbour field served per neighbour.
type linkMetric struct {
	name, help string
	typ        prometheus.ValueType
	get        func(*mesh.Neighbour) float64
}

var linkMetrics = []linkMetric{
	{"servald_link_rtt_seconds", "Smoothed per-hop round trip to the neighbour.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return n.SRTT.Seconds() }},
	{"servald_link_loss_ratio", "Recent fraction of frames sent to the neighbour that needed resending.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return n.Loss }},
	{"servald_link_delivery_ratio", "Fraction of hellos that get through, both ways multiplied.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return n.Delivery }},
	{"servald_link_mtu_bytes", "Largest frame known to pass the link.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return float64(n.MTU) }},
	{"servald_link_cost", "Routing cost of the link: 256 when clean.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return float64(n.Cost) }},
	{"servald_link_received_bytes_total", "Bytes of authenticated link frames received from the neighbour.", prometheus.CounterValue, func(n *mesh.Neighbour) float64 { return float64(n.BytesIn) }},
	{"servald_link_sent_bytes_total", "Bytes of link frames sent to the neighbour.", prometheus.CounterValue, func(n *mesh.Neighbour) float64 { return float64(n.BytesOut) }},
	{"servald_link_received_loss_ratio", "Recent fraction of the neighbour's frames that went missing on their first sending.", prometheus.GaugeValue, func(n *mesh.Neighbour) float64 { return n.LossIn }},
}

// sessionMetric is an msp.SessionInfo field served per (peer, port),
// summed over the sessions that share them.
type sessionMetric struct {
	name, help string
	typ        prometheus.ValueType
	get        func(*msp.SessionInfo) float64
}

var sessionMetrics = []sessionMetric{
	{"servald_session_streams", "Streams open now.", prometheus.GaugeValue, func(s *msp.SessionInfo) float64 { return float64(s.Streams) }},
	{"servald_session_sent_bytes_total", "Stream bytes sent for the first time.", prometheus.CounterValue, func(s *msp.SessionInfo) float64 { return float64(s.BytesSent) }},
	{"servald_session_received_bytes_total", "Stream bytes delivered in order.", prometheus.CounterValue, func(s *msp.SessionInfo) float64 { return float64(s.BytesReceived) }},
	{"servald_session_retransmitted_bytes_total", "Stream bytes sent again.", prometheus.CounterValue, func(s *msp.SessionInfo) float64 { return float64(s.BytesRetransmitted) }},
	{"servald_session_packets_sent_total", "Session packets sent.", prometheus.CounterValue, func(s *msp.SessionInfo) float64 { return float64(s.PacketsSent) }},
	{"servald_session_packets_lost_total", "Session packets declared lost.", prometheus.CounterValue, func(s *msp.SessionInfo) float64 { return float64(s.PacketsLost) }},
}

// Label names.
const (
	labelNeighbour = "neighbour" // 16 hex digits of the SID (all 64 where two neighbours share them)
	labelPeer      = "peer"      // as labelNeighbour, of a session's peer
	labelPort      = "port"      // a session's local MDP port
	labelReason    = "reason"
)

// prefixLen is how many hex digits of a SID label a series.
const prefixLen = 16

// collector reads a Source at each scrape. Its descriptors are fixed when
// it is made; it holds no other state.
type collector struct {
	src       Source
	sessions  func() []msp.SessionInfo // nil: src holds no sessions
	counters  []*prometheus.Desc       // statsCounters, in order
	drops     *prometheus.Desc
	links     []*prometheus.Desc // linkMetrics, in order
	perSess   []*prometheus.Desc // sessionMetrics, in order
	nbrs      *prometheus.Desc
	routes    *prometheus.Desc
	nSessions *prometheus.Desc
}

func newCollector(src Source) *collector {
	c := &collector{
		src:    src,
		drops:  prometheus.NewDesc("servald_mesh_drops_total", "Frames, datagrams and routing entries the node dropped or ignored, by reason.", []string{labelReason}, nil),
		nbrs:   prometheus.NewDesc("servald_neighbours", "Nodes heard directly.", nil, nil),
		routes: prometheus.NewDesc("servald_routes", "Nodes reachable, neighbours included.", nil, nil),
	}
	for _, m := range statsCounters {
		c.counters = append(c.counters, prometheus.NewDesc(m.name, m.help, nil, nil))
	}
	for _, m := range linkMetrics {
		c.links = append(c.links, prometheus.NewDesc(m.name, m.help, []string{labelNeighbour}, nil))
	}
	if ss, ok := src.(SessionSource); ok {
		c.sessions = ss.Sessions
		c.nSessions = prometheus.NewDesc("servald_sessions", "MSP sessions open now.", nil, nil)
		for _, m := range sessionMetrics {
			c.perSess = append(c.perSess, prometheus.NewDesc(m.name, m.help, []string{labelPeer, labelPort}, nil))
		}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.counters {
		ch <- d
	}
	ch <- c.drops
	for _, d := range c.links {
		ch <- d
	}
	ch <- c.nbrs
	ch <- c.routes
	if c.sessions != nil {
		ch <- c.nSessions
		for _, d := range c.perSess {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Stats()
	for i, m := range statsCounters {
		ch <- prometheus.MustNewConstMetric(c.counters[i], prometheus.CounterValue, float64(m.get(&st)))
	}
	for _, d := range dropReasons {
		ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(d.get(&st)), d.reason)
	}
	nbrs := c.src.Neighbours()
	ch <- prometheus.MustNewConstMetric(c.nbrs, prometheus.GaugeValue, float64(len(nbrs)))
	labels := sidLabels(len(nbrs), func(i int) identity.SID { return nbrs[i].SID })
	for i := range nbrs {
		for j, m := range linkMetrics {
			ch <- prometheus.MustNewConstMetric(c.links[j], m.typ, m.get(&nbrs[i]), labels[i])
		}
	}
	ch <- prometheus.MustNewConstMetric(c.routes, prometheus.GaugeValue, float64(len(c.src.Routes())))
	if c.sessions != nil {
		c.collectSessions(ch, c.sessions())
	}
}

// collectSessions serves the sessions, summed per (peer, local port).
func (c *collector) collectSessions(ch chan<- prometheus.Metric, ss []msp.SessionInfo) {
	ch <- prometheus.MustNewConstMetric(c.nSessions, prometheus.GaugeValue, float64(len(ss)))
	peers := sidLabels(len(ss), func(i int) identity.SID { return ss[i].Peer })
	type key struct{ peer, port string }
	var order []key
	sums := map[key][]float64{}
	for i := range ss {
		k := key{peers[i], strconv.Itoa(int(ss[i].LocalPort))}
		if sums[k] == nil {
			order = append(order, k)
			sums[k] = make([]float64, len(sessionMetrics))
		}
		for j, m := range sessionMetrics {
			sums[k][j] += m.get(&ss[i])
		}
	}
	for _, k := range order {
		for j, m := range sessionMetrics {
			ch <- prometheus.MustNewConstMetric(c.perSess[j], m.typ, sums[k][j], k.peer, k.port)
		}
	}
}

// sidLabels labels n SIDs (sid(i) is the i-th) by their first prefixLen
// hex digits, or all of them for SIDs whose prefix another SID of the n
// shares (a peer can make such keys, and two series with one label set
// would fail the whole scrape). Equal SIDs get equal labels.
func sidLabels(n int, sid func(i int) identity.SID) []string {
	full := make([]string, n)
	count := map[string]map[string]bool{} // prefix -> distinct full SIDs
	for i := range n {
		full[i] = sid(i).String()
		p := full[i][:prefixLen]
		if count[p] == nil {
			count[p] = map[string]bool{}
		}
		count[p][full[i]] = true
	}
	out := make([]string, n)
	for i, f := range full {
		if out[i] = f[:prefixLen]; len(count[out[i]]) > 1 {
			out[i] = f
		}
	}
	return out
}
