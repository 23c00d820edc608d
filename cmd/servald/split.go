package main

// The --split flags of msp listen / msp connect and the splitter flags of
// split listen / split connect: their parsing, the wording of splitter
// errors and the -v counters. The MSP session over split transport is
// package msp/splitmsp.

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/msp/splitmsp"
	"github.com/servald/servald/splitter"
)

// splitOptions are the --split flags.
type splitOptions struct {
	addr string
	splitParams
}

func (o *splitOptions) addFlags(fs *pflag.FlagSet, connect bool) {
	if connect {
		fs.StringVar(&o.addr, "split", "", "reach the listener over split transport at TCP HOST:PORT (many TCP connections with FEC) instead of the mesh")
	} else {
		fs.StringVar(&o.addr, "split", "", "also accept split sessions (many TCP connections with FEC) on TCP [HOST:]PORT (default host: all interfaces)")
	}
	o.splitParams.addFlags(fs, connect, "with --split: ")
}

// splitParams are the splitter settings of the command line (--conns,
// --fec, --payload), shared by msp listen/connect --split and split
// listen/connect.
type splitParams struct {
	conns   int
	fec     string
	payload int
}

// addFlags adds --conns (connect only), --fec and --payload; with starts
// their help.
func (p *splitParams) addFlags(fs *pflag.FlagSet, connect bool, with string) {
	def := splitter.DefaultConfig()
	if connect {
		fs.IntVar(&p.conns, "conns", def.Conns, with+"TCP connections to keep open")
	}
	fs.StringVar(&p.fec, "fec", fmt.Sprintf("%d:%d", def.DataShards, def.ParityShards), with+"Reed-Solomon data:parity shards per block (0:0 off); both sides must agree")
	fs.IntVar(&p.payload, "payload", def.PayloadSize, with+"bytes per shard; both sides must agree")
}

// config checks the values and returns the splitter settings (--conns
// only on connect).
func (p *splitParams) config(connect bool, g *globals) (splitter.Config, error) {
	cfg := splitter.DefaultConfig()
	if connect {
		if p.conns < 1 || p.conns > splitter.MaxConnsPerSession {
			return cfg, usagef("--conns %d: want 1-%d", p.conns, splitter.MaxConnsPerSession)
		}
		cfg.Conns = p.conns
	}
	var err error
	if cfg.DataShards, cfg.ParityShards, err = parseFEC(p.fec); err != nil {
		return cfg, err
	}
	if p.payload < splitter.MinPayloadSize || p.payload > splitter.MaxPayloadSize {
		return cfg, usagef("--payload %d: want %d-%d bytes", p.payload, splitter.MinPayloadSize, splitter.MaxPayloadSize)
	}
	cfg.PayloadSize = p.payload
	cfg.Logger = g.logger()
	if err := cfg.Validate(); err != nil {
		return cfg, usagef("%v", err)
	}
	return cfg, nil
}

// hintFlags are the flags a connect line must repeat to match this
// listener: --fec and --payload where they were given.
func (p *splitParams) hintFlags(fs *pflag.FlagSet) string {
	s := ""
	if fs.Changed("fec") {
		s += " --fec=" + p.fec
	}
	if fs.Changed("payload") {
		s += " --payload=" + strconv.Itoa(p.payload)
	}
	return s
}

// splitFlags are the flags that only mean something with --split.
var splitFlags = []string{"conns", "fec", "payload"}

// nodeFlags are the flags of the embedded node, which connect --split
// does not start.
var nodeFlags = []string{"udp", "peer", "broadcast", "config", "trust"}

// config checks the flags and returns the splitter settings; ok is false
// without --split.
func (o *splitOptions) config(fs *pflag.FlagSet, connect bool, g *globals) (cfg splitter.Config, ok bool, err error) {
	if o.addr == "" {
		for _, name := range splitFlags {
			if f := fs.Lookup(name); f != nil && f.Changed {
				return cfg, false, usagef("--%s needs --split", name)
			}
		}
		return cfg, false, nil
	}
	addr, err := parseSplitAddr("--split", o.addr, connect)
	if err != nil {
		return cfg, false, err
	}
	o.addr = addr
	if connect {
		for _, name := range nodeFlags {
			if f := fs.Lookup(name); f != nil && f.Changed {
				return cfg, false, usagef("--%s does not apply with --split: connect --split reaches the listener directly, without a mesh node", name)
			}
		}
	}
	if cfg, err = o.splitParams.config(connect, g); err != nil {
		return cfg, false, err
	}
	return cfg, true, nil
}

// parseSplitAddr parses the TCP address of a split listener, which the
// command line calls name: HOST:PORT for connect, [HOST:]PORT for listen
// (no host: every interface; port 0: any free port).
func parseSplitAddr(name, s string, connect bool) (string, error) {
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

// parseFEC parses --fec D:P.
func parseFEC(s string) (d, p int, err error) {
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

// splitError words a failure to open a split session for the command line.
func splitError(addr string, err error) error {
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

// reportSessions prints the counters of a connecting side's split
// sessions with -v.
func reportSessions(g *globals, ss *splitmsp.Sessions) {
	if g.verbose == 0 {
		return
	}
	n, st := ss.Stats()
	fmt.Fprintf(g.stderr, "servald: split counters: sessions %d, %s\n", n, formatSplitStats(st))
}

// listenSplit opens a splitter listener on addr, which the command line
// calls name.
func listenSplit(name, addr string, cfg splitter.Config) (*splitter.Listener, error) {
	ln, err := splitter.Listen(addr, cfg)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: TCP address %s is in use", name, addr)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ln, nil
}

// hintAddr is a listening address as a connect line names it: 127.0.0.1
// where the listener takes every interface (from another machine, the
// user puts this machine's address there).
func hintAddr(a net.Addr) string {
	host, p, _ := net.SplitHostPort(a.String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, p)
}

// reportListener prints a split listener's counters with -v.
func reportListener(g *globals, ln *splitter.Listener) {
	if g.verbose == 0 {
		return
	}
	st := ln.Stats()
	fmt.Fprintf(g.stderr, "servald: split counters: sessions %d (refused %d), %s\n",
		st.SessionsAccepted, st.SessionsRefused, formatSplitStats(st.Sessions))
}

// formatSplitStats is the counters part of the -v exit line, worded so
// that a clean transfer does not read like loss: a block completed from
// parity is one whose last data shard came later than enough parity (on
// loopback too, since the connections race), not lost data.
func formatSplitStats(st splitter.Stats) string {
	return fmt.Sprintf("shards sent %d received %d sent again %d; blocks completed from parity %d (a data shard was late or lost; no data lost) asked for again %d; TCP connections opened %d re-opened %d lost %d stalled %d",
		st.ShardsSent, st.ShardsReceived, st.ShardsResent, st.BlocksRebuilt, st.BlocksRerequested,
		st.ConnsOpened, st.ConnsReopened, st.ConnsLost, st.ConnsStalled)
}
