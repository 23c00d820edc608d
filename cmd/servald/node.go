package main

import (
	"fmt"

	"github.com/spf13/pflag"

	inst "github.com/servald/servald/instance"
)

// defaultUDP is where a node listens unless told otherwise.
const defaultUDP = "0.0.0.0:4110"

// nodeOptions are the options of every command that starts a node.
type nodeOptions struct {
	udp       string
	peers     []string
	broadcast []string
	config    string
	trust     []string
	noEcho    bool
}

func (o *nodeOptions) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.udp, "udp", defaultUDP, "UDP address the node listens on")
	fs.StringArrayVar(&o.peers, "peer", nil, "HOST:PORT of a node to link with (repeatable)")
	fs.StringSliceVar(&o.broadcast, "broadcast", nil, "announce this node by LAN broadcast on these interfaces (all broadcast-capable ones when given without a list); off by default")
	fs.Lookup("broadcast").NoOptDefVal = inst.BroadcastAll
	fs.StringVar(&o.config, "config", "", "config file with lines 'udp = ADDR', 'peer = HOST:PORT', 'broadcast = IFACE,...' ('#' starts a comment; flags win over it); read instead of DIR/config")
	fs.StringArrayVar(&o.trust, "trust", nil, "admit only these nodes as neighbours (full SID, repeatable; also DIR/trusted, one per line): a closed mesh")
	fs.BoolVar(&o.noEcho, "no-echo", false, "do not answer ping and trace (MDP ports 7 and 8), which a node answers by default")
}

// options are the node options for package instance: flags win over the
// config file.
func (o *nodeOptions) options(fs *pflag.FlagSet, g *globals) inst.NodeOptions {
	return inst.NodeOptions{
		UDP:       o.udp,
		Peers:     o.peers,
		Broadcast: o.broadcast,
		Trust:     o.trust,
		Config:    o.config,
		NoEcho:    o.noEcho,
		Given:     fs.Changed,
		Logger:    g.logger(),
	}
}

// access returns the instance's daemon when one runs, else starts an
// embedded node with the node options.
func (g *globals) access(o *nodeOptions, fs *pflag.FlagSet) (inst.Mesh, error) {
	dir, err := g.instanceDir()
	if err != nil {
		return nil, err
	}
	opts := o.options(fs, g)
	m, err := inst.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	if msg := opts.Ignored(m); msg != "" {
		fmt.Fprintln(g.stderr, "servald: "+msg)
	}
	return m, nil
}
