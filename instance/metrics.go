package instance

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/metrics"
	"github.com/servald/servald/msp"
)

// MetricsOptions are the daemon's --metrics and --pprof.
type MetricsOptions struct {
	Addr  string // [HOST:]PORT of /metrics, HOST 127.0.0.1 unless given; "" serves nothing
	Pprof bool   // also /debug/pprof/ on Addr
}

// Check returns a *UsageError for --pprof without --metrics, an address
// that is not [HOST:]PORT, or port 0 for a detached daemon (which could
// not say which port it got).
func (o MetricsOptions) Check(detached bool) error {
	if o.Addr == "" {
		if o.Pprof {
			return usagef("--pprof needs --metrics=[HOST:]PORT: it is served on that address")
		}
		return nil
	}
	addr, err := metrics.ParseAddr(o.Addr)
	if err != nil {
		return &UsageError{fmt.Errorf("--metrics: %w", err)}
	}
	if _, port, _ := net.SplitHostPort(addr); port == "0" && detached {
		return usagef("--metrics: port 0 needs --foreground: a detached daemon cannot say which port it got")
	}
	return nil
}

// Args are the options again as command-line arguments (for the detached
// daemon).
func (o MetricsOptions) Args() []string {
	var args []string
	if o.Addr != "" {
		args = append(args, "--metrics", o.Addr)
	}
	if o.Pprof {
		args = append(args, "--pprof")
	}
	return args
}

// Notice is the line, newline included, that says where the metrics are
// served, "" when they are not; o has passed Check.
func (o MetricsOptions) Notice() string {
	if o.Addr == "" {
		return ""
	}
	addr, _ := metrics.ParseAddr(o.Addr)
	return metricsNotice(addr, o.Pprof)
}

func metricsNotice(addr string, pprof bool) string {
	s := "servald: metrics on http://" + addr + "/metrics"
	if pprof {
		s += ", profiles on http://" + addr + "/debug/pprof/"
	}
	return s + "\n"
}

// Metrics is a node's metrics server, or none.
type Metrics struct {
	srv   *metrics.Server // nil: none
	pprof bool
}

// ServeMetrics serves the metrics of n (a *mesh.Node, or a Source that
// adds sessions to one) as o asks (nothing when o.Addr is "").
// A port in use is an error that says so in one line. An address beyond
// loopback is served, since it was asked for, with a warning.
func ServeMetrics(n metrics.Source, o MetricsOptions, log *slog.Logger) (*Metrics, error) {
	if err := o.Check(false); err != nil || o.Addr == "" {
		return &Metrics{}, err
	}
	addr, _ := metrics.ParseAddr(o.Addr) // checked above
	s, err := metrics.Listen(addr, n, metrics.Options{Pprof: o.Pprof, Logger: log})
	if errors.Is(err, syscall.EADDRINUSE) {
		return &Metrics{}, fmt.Errorf("metrics address %s is in use by another program: choose another with --metrics", addr)
	}
	if err != nil {
		return &Metrics{}, err
	}
	if !metrics.IsLoopback(addr) && log != nil {
		log.Warn("metrics served beyond loopback: anyone who can reach this address can read them", "addr", s.Addr(), "pprof", o.Pprof)
	}
	return &Metrics{srv: s, pprof: o.Pprof}, nil
}

// Notice is the line, newline included, that says where the metrics are
// served, with the port bound; "" when none are.
func (m *Metrics) Notice() string {
	if m.srv == nil {
		return ""
	}
	return metricsNotice(m.srv.Addr().String(), m.pprof)
}

// Close stops serving (nothing when none are served).
func (m *Metrics) Close() error {
	if m.srv == nil {
		return nil
	}
	return m.srv.Close()
}

// DaemonSource is what a daemon's metrics read: its node, and the MSP
// sessions its clients report (daemon.Server.Sessions).
func DaemonSource(n *mesh.Node, srv *daemon.Server) metrics.SessionSource {
	return daemonSource{n, srv}
}

type daemonSource struct {
	*mesh.Node
	srv *daemon.Server
}

func (d daemonSource) Sessions() []msp.SessionInfo { return d.srv.Sessions() }
