package instance

// The split transport's command-line values: its addresses, --fec, and the
// wording of a failure to open a split session.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/splitter"
)

// ParseSplitAddr parses the TCP address of a split listener, which the
// command line calls name: HOST:PORT for connect, [HOST:]PORT for listen
// (no host: every interface; port 0: any free port).
func ParseSplitAddr(name, s string, connect bool) (string, error) {
	host, port := "", s
	if strings.Contains(s, ":") {
		var err error
		if host, port, err = net.SplitHostPort(s); err != nil {
			return "", usagef("%s %q: want HOST:PORT (an IPv6 host as [ADDR]:PORT)", name, s)
		}
	}
	p, err := strconv.Atoi(port)
	lo := 0
	if connect {
		lo = 1
	}
	if err != nil || p < lo || p > 65535 || strings.ContainsAny(port, "+-") {
		return "", usagef("%s %q: TCP port must be a number %d-65535", name, s, lo)
	}
	if connect && host == "" {
		return "", usagef("%s %q: want HOST:PORT of the listener", name, s)
	}
	if host != "" {
		// The host rules of --forward: an IP address or a DNS name.
		if _, err := forward.ParseTarget(net.JoinHostPort(host, "1")); err != nil {
			return "", usagef("%s %q: bad host %q: want an IP address or a DNS name", name, s, host)
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// ParseFEC parses --fec D:P.
func ParseFEC(s string) (d, p int, err error) {
	ds, ps, ok := strings.Cut(s, ":")
	d, err1 := strconv.Atoi(ds)
	p, err2 := strconv.Atoi(ps)
	if !ok || err1 != nil || err2 != nil || d < 0 || p < 0 {
		return 0, 0, usagef("--fec %q: want DATA:PARITY shards, e.g. 10:3 (0:0 turns FEC off)", s)
	}
	if d == 0 && p != 0 {
		return 0, 0, usagef("--fec %s: parity needs data shards (0:0 turns FEC off)", s)
	}
	if d+p > 256 {
		return 0, 0, usagef("--fec %s: at most 256 shards in all", s)
	}
	return d, p, nil
}

// SplitError words a failure to open a split session for the command line.
func SplitError(addr string, err error) error {
	var ne *splitter.NegotiationError
	if errors.As(err, &ne) {
		err = mismatchError{ne}
	}
	return fmt.Errorf("split %s: %w", addr, err)
}

// mismatchError words a parameter mismatch from the connecting side.
type mismatchError struct{ *splitter.NegotiationError }

func (e mismatchError) Error() string {
	hint := ""
	switch e.Param {
	case "fec":
		hint = " (both sides need the same --fec)"
	case "payload size":
		hint = " (both sides need the same --payload)"
	}
	return fmt.Sprintf("%s mismatch: ours %s, the listener's %s%s", e.Param, e.Local, e.Peer, hint)
}

func (e mismatchError) Unwrap() error { return e.NegotiationError }

// HintAddr is a listening address as a connect line names it: 127.0.0.1
// where the listener takes every interface (from another machine, the
// user puts this machine's address there).
func HintAddr(a net.Addr) string {
	host, p, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, p)
}

// ListenSplit opens a splitter listener on addr, which the command line
// calls name.
func ListenSplit(name, addr string, cfg splitter.Config) (*splitter.Listener, error) {
	ln, err := splitter.Listen(addr, cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: TCP address %s is in use", name, addr)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ln, nil
}
