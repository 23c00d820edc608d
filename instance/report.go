package instance

// What a tunnel process tells its daemon's `servald status` about the
// ports it bound (daemon.Port.SetReporter): its role, its target and
// service, its MSP sessions and the connections they carry. A node
// embedded in the process reports to nobody.

import (
	"fmt"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/forward"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// Shown is what Listen and DialSession add to a port's report: the
// service name it answers discovery for (--service) and, for a listener,
// where its streams go (ListenEnd.Shown says).
type Shown struct {
	Service string
	Target  string
}

// Shown is what a listener with these ends reports: its --forward target,
// "socks" or "stdio".
func (e ListenEnd) Shown(service string) Shown {
	switch {
	case e.Exit != nil:
		return Shown{Service: service, Target: "socks"}
	case e.Target.Network == "unix":
		return Shown{Service: service, Target: forward.UnixPrefix + e.Target.Addr}
	case e.Target.Addr != "":
		return Shown{Service: service, Target: e.Target.Addr}
	}
	return Shown{Service: service, Target: "stdio"}
}

// reportSessions has tr, when it is a port bound through the daemon,
// report sessions() every daemon.ReportEvery with what show says; the
// connections are the streams open on those sessions (each forwarded
// connection is one).
func reportSessions(tr msp.Transport, role string, show Shown, sessions func() []*msp.Session) {
	p, ok := tr.(*daemon.Port)
	if w, isWatched := tr.(*watched); isWatched { // through the daemon (reattach.go)
		p, ok = w.Port, true
	}
	if !ok {
		return
	}
	if role == daemon.RoleListen && show.Service != "" {
		role = daemon.RoleService
	}
	port := p.LocalAddr().(mesh.Addr).Port
	p.SetReporter(daemon.ReportEvery, func() daemon.Report {
		r := daemon.Report{Role: role, Service: show.Service, Target: show.Target, Sessions: []msp.SessionInfo{}}
		for _, s := range sessions() {
			info := s.Info()
			// A dialled session's Info names the listener's port as its
			// own (msp keeps the port it dialled there): this end's is
			// the port bound.
			info.LocalPort = port
			r.Connections += info.Streams
			r.Sessions = append(r.Sessions, info)
		}
		return r
	})
}

// firstShown returns sh's first, or none.
func firstShown(sh []Shown) Shown {
	if len(sh) == 0 {
		return Shown{}
	}
	return sh[0]
}

// dialTarget is what a connecting port reports as its target.
func dialTarget(sid identity.SID, port uint16) string { return fmt.Sprintf("%s:%d", sid, port) }
