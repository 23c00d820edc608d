// Package metrics serves a node's counters to Prometheus: /metrics in the
// text exposition of github.com/prometheus/client_golang, read from the
// node at scrape time (nothing polls in the background), and, when asked,
// the Go profiler's /debug/pprof on the same address.
//
// Every Handler has a registry of its own (no global default registry):
// the node's collector, and the Go runtime and process collectors.
package metrics

import (
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// Source is what the metrics are read from, at every scrape. A *mesh.Node
// is one.
type Source interface {
	Stats() mesh.Stats
	Neighbours() []mesh.Neighbour
	Routes() []mesh.Route
}

// SessionSource is a Source that also holds MSP sessions; when a Handler's
// Source is one, the session families are served too.
type SessionSource interface {
	Source
	Sessions() []msp.SessionInfo
}

// Options configure a Handler. The zero value serves /metrics only.
type Options struct {
	// Pprof adds net/http/pprof's handlers under /debug/pprof/.
	Pprof bool
	// Logger receives the errors of scrapes and of the HTTP server; nil
	// is silent.
	Logger *slog.Logger
}

// Handler serves /metrics from src, and /debug/pprof/ with opts.Pprof;
// every other path is 404.
func Handler(src Source, opts Options) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: errorLog{opts.Logger},
		Registry: reg, // counts its own errors: promhttp_metric_handler_errors_total
	}))
	if opts.Pprof {
		// Registered here, explicitly: importing net/http/pprof also puts
		// them on http.DefaultServeMux, which nothing here serves.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

// errorLog passes promhttp's errors to a slog.Logger.
type errorLog struct{ log *slog.Logger }

func (e errorLog) Println(v ...any) {
	if e.log != nil {
		e.log.Warn("metrics: scrape", "err", fmt.Sprint(v...))
	}
}

// DefaultHost is where an address without a host is served: loopback, so
// that nothing is exposed beyond this machine unless asked for.
const DefaultHost = "127.0.0.1"

// ParseAddr turns [HOST:]PORT into HOST:PORT, with DefaultHost where the
// host is missing or empty (":9100" too: loopback, not every interface).
func ParseAddr(s string) (string, error) {
	host, port := "", s
	if strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", fmt.Errorf("metrics: address %q: want [HOST:]PORT", s)
		}
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(p, 10) != port {
		return "", fmt.Errorf("metrics: address %q: want [HOST:]PORT with PORT a number from 0 to 65535", s)
	}
	if host == "" {
		host = DefaultHost
	}
	return net.JoinHostPort(host, port), nil
}

// IsLoopback reports whether the host of addr (HOST:PORT) is "localhost"
// or a loopback IP address.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Bounds of the server's connections.
const (
	readHeaderTimeout = 10 * time.Second // a client has this long to send its request's header
	idleTimeout       = 60 * time.Second // an idle keep-alive connection is closed after this
)

// Server serves a Handler on a TCP listener until Close.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan struct{} // closed when the serving goroutine has returned

	closeOnce sync.Once
	err       error // what Serve returned, other than http.ErrServerClosed; read after done
}

// Listen binds addr (HOST:PORT, as ParseAddr returns it) and serves
// Handler(src, opts) on it until Close. A port in use is an error that
// satisfies errors.Is(err, syscall.EADDRINUSE).
func Listen(addr string, src Source, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	s := &Server{
		ln:   ln,
		done: make(chan struct{}),
		srv: &http.Server{
			Handler:           Handler(src, opts),
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          log.New(io.Discard, "", 0),
		},
	}
	if opts.Logger != nil {
		s.srv.ErrorLog = slog.NewLogLogger(opts.Logger.Handler(), slog.LevelWarn)
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			s.err = fmt.Errorf("metrics: %w", err)
		}
	}()
	return s, nil
}

// Addr is the address served.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the address of the metrics page, http://HOST:PORT/metrics.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() + "/metrics" }

// Close stops serving, closes every connection (a scrape or profile in
// progress breaks off) and waits for the serving goroutine. It is
// idempotent; it returns why serving had stopped, if not for Close.
func (s *Server) Close() error {
	s.closeOnce.Do(func() { s.srv.Close() })
	<-s.done
	return s.err
}
