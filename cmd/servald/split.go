package main

// The --split flags of msp listen / msp connect and the splitter flags of
// split listen / split connect: their parsing, the wording of splitter
// errors and the -v counters. The MSP session over split transport is
// package msp/splitmsp.

import (
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/servald/servald/msp/splitmsp"
	"github.com/servald/servald/splitter"

	inst "github.com/servald/servald/instance"
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
	if cfg.DataShards, cfg.ParityShards, err = inst.ParseFEC(p.fec); err != nil {
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
	addr, err := inst.ParseSplitAddr("--split", o.addr, connect)
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

// reportSessions prints the counters of a connecting side's split
// sessions with -v.
func reportSessions(g *globals, ss *splitmsp.Sessions) {
	if g.verbose == 0 {
		return
	}
	n, st := ss.Stats()
	fmt.Fprintf(g.stderr, "servald: split counters: sessions %d, %s\n", n, st.Summary())
}

// reportListener prints a split listener's counters with -v.
func reportListener(g *globals, ln *splitter.Listener) {
	if g.verbose == 0 {
		return
	}
	st := ln.Stats()
	fmt.Fprintf(g.stderr, "servald: split counters: sessions %d (refused %d), %s\n",
		st.SessionsAccepted, st.SessionsRefused, st.Sessions.Summary())
}
