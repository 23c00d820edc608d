package instance

// `servald status`: the daemon's snapshot, fetched and printed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/servald/servald/daemon"
)

// DaemonSnapshot asks the daemon c for its status snapshot. A daemon that
// predates the request (it refuses it as a bad request) gets its plain
// status asked instead, which fills only the node block.
func DaemonSnapshot(ctx context.Context, c *daemon.Client) (daemon.StatusSnapshot, error) {
	snap, err := c.Snapshot(ctx)
	var re *daemon.RemoteError
	if !errors.As(err, &re) || re.Code != "bad-request" {
		return snap, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return snap, err
	}
	udp := ""
	if st.UDP != nil {
		udp = st.UDP.String()
	}
	return daemon.StatusSnapshot{
		Node: daemon.NodeStatus{SID: st.SID, PID: st.PID, UDP: []string{udp}, Version: "(older daemon)",
			UptimeS: st.Uptime.Seconds(), Neighbours: st.Neighbours, Routes: st.Routes,
			FramesIn: st.Stats.FramesIn, FramesOut: st.Stats.FramesOut},
		Neighbours: []daemon.NeighbourStatus{},
		Tunnels:    []daemon.Report{},
		Drops:      daemon.DropCounters(st.Stats, false),
		Stats:      st.Stats,
	}, nil
}

// WriteStatus prints snap for a person: the node block ("key: value"
// lines), then tables of the neighbours, the tunnels and their sessions,
// and the non-zero drop counters by group.
func WriteStatus(w io.Writer, snap daemon.StatusSnapshot) error {
	n := snap.Node
	var b strings.Builder
	fmt.Fprintln(&b, "running")
	fmt.Fprintf(&b, "SID: %s\n", n.SID)
	fmt.Fprintf(&b, "pid: %d\n", n.PID)
	fmt.Fprintf(&b, "UDP: %s\n", strings.Join(n.UDP, ", "))
	fmt.Fprintf(&b, "version: %s\n", n.Version)
	fmt.Fprintf(&b, "uptime: %s\n", (time.Duration(n.UptimeS * float64(time.Second))).Round(time.Second))
	fmt.Fprintf(&b, "neighbours: %d\n", n.Neighbours)
	fmt.Fprintf(&b, "routes: %d\n", n.Routes)
	writeNeighbours(&b, snap.Neighbours)
	writeTunnels(&b, snap.Tunnels, snap.TunnelsOmitted)
	writeDrops(&b, snap.Drops)
	_, err := io.WriteString(w, b.String())
	return err
}

// table returns a tabwriter over b for one table.
func table(b *strings.Builder) *tabwriter.Writer {
	return tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
}

func writeNeighbours(b *strings.Builder, nbs []daemon.NeighbourStatus) {
	if len(nbs) == 0 {
		return
	}
	fmt.Fprintln(b)
	tw := table(b)
	fmt.Fprintln(tw, "NEIGHBOUR\tADDRESS\tRTT\tLOSS OUT\tLOSS IN\tMTU\tIN/s\tOUT/s\tIN\tOUT")
	for _, nb := range nbs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.1f%%\t%.1f%%\t%d\t%s\t%s\t%s\t%s\n", nb.SID.Short(), nb.Addr,
			micros(nb.RTTus), 100*nb.LossOut, 100*nb.LossIn, nb.MTU,
			humanBytes(nb.RateIn), humanBytes(nb.RateOut), humanBytes(float64(nb.BytesIn)), humanBytes(float64(nb.BytesOut)))
	}
	tw.Flush()
}

func writeTunnels(b *strings.Builder, ts []daemon.Report, omitted int) {
	if len(ts) == 0 && omitted == 0 {
		return
	}
	fmt.Fprintln(b)
	tw := table(b)
	fmt.Fprintln(tw, "TUNNEL\tPORT\tPID\tSERVICE\tTARGET\tCONNECTIONS\tSESSIONS")
	for _, t := range ts {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%d\n", t.Role, t.Port, t.PID, orDash(t.Service), orDash(t.Target),
			t.Connections, len(t.Sessions)+t.MoreSessions)
	}
	tw.Flush()
	if omitted > 0 {
		fmt.Fprintf(b, "(%d more tunnels not listed)\n", omitted)
	}
	more := 0
	var rows []string
	for _, t := range ts {
		more += t.MoreSessions
		for _, s := range t.Sessions {
			// A mesh address is the peer's SID and port: the SID is shown.
			remote := strings.Replace(s.Remote, s.Peer.String()+":", "port ", 1)
			rows = append(rows, fmt.Sprintf("%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\n", t.Port, s.Peer.Short(), remote, s.Streams,
				humanBytes(float64(s.BytesSent)), humanBytes(float64(s.BytesReceived)),
				micros(s.SRTTus), humanBytes(float64(s.Cwnd)), humanBytes(float64(s.BytesRetransmitted))))
		}
	}
	if len(rows) == 0 {
		return
	}
	fmt.Fprintln(b)
	tw = table(b)
	fmt.Fprintln(tw, "SESSION ON\tPEER\tREMOTE\tSTREAMS\tSENT\tRECEIVED\tRTT\tCWND\tRETRANSMITTED")
	for _, r := range rows {
		io.WriteString(tw, r)
	}
	tw.Flush()
	if more > 0 {
		fmt.Fprintf(b, "(%d more sessions not listed)\n", more)
	}
}

func writeDrops(b *strings.Builder, drops []daemon.Drop) {
	if len(drops) == 0 {
		return
	}
	fmt.Fprintln(b)
	fmt.Fprintln(b, "drops:")
	for i := 0; i < len(drops); {
		g := drops[i].Group
		var parts []string
		for ; i < len(drops) && drops[i].Group == g; i++ {
			parts = append(parts, fmt.Sprintf("%s %d", drops[i].Reason, drops[i].Count))
		}
		fmt.Fprintf(b, "  %s: %s\n", g, strings.Join(parts, ", "))
	}
}

// micros shows a round trip of us microseconds to 0.01 ms.
func micros(us int64) time.Duration {
	return (time.Duration(us) * time.Microsecond).Round(10 * time.Microsecond)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteStatusJSON prints snap as one indented JSON document (the README's
// "status --json" table names its fields).
func WriteStatusJSON(w io.Writer, snap daemon.StatusSnapshot) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(snap)
}
