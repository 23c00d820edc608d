package main

// UDP flows: --forward=udp:[HOST:]PORT with --deadline and --udp-idle on
// msp listen and msp connect (the work is in instance and forward).

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/servald/servald/forward"
	inst "github.com/servald/servald/instance"
	"github.com/servald/servald/splitter"
)

// udpFlags are --deadline and --udp-idle.
type udpFlags struct {
	deadline, idle time.Duration
	fs             *pflag.FlagSet
}

func (f *udpFlags) addFlags(fs *pflag.FlagSet) {
	f.fs = fs
	fs.Lookup("forward").Usage += "; udp:[HOST:]PORT: UDP flows, each datagram carried as one"
	fs.DurationVar(&f.deadline, "deadline", forward.DefaultDeadline, "with --forward=udp:, drop a datagram at whatever hop it has reached once this old (0: no deadline)")
	fs.DurationVar(&f.idle, "udp-idle", forward.DefaultUDPIdle, "with --forward=udp:, forget a flow after this long without a datagram")
}

// with adds the flags to e.
func (f *udpFlags) with(e inst.EndFlags) inst.EndFlags {
	e.Deadline, e.UDPIdle = f.deadline, f.idle
	e.UDPSet = f.fs.Changed("deadline") || f.fs.Changed("udp-idle")
	return e
}

// runUDP is msp connect --forward=udp:: the local UDP port's clients'
// flows go through the session to the listener.
func (o *connectOptions) runUDP(cmd *cobra.Command, g *globals, tgt inst.Target, split bool, splitCfg splitter.Config, ends inst.ConnectEnd) error {
	ctx := cmd.Context()
	pc, err := ends.ListenUDP(ctx)
	if err != nil {
		return err
	}
	defer pc.Close()
	rd, done, err := o.redialer(cmd, g, tgt, split, splitCfg)
	if err != nil {
		return err
	}
	defer done()
	defer rd.Close()
	if _, err := rd.Session(ctx); err != nil {
		return err
	}
	sid, port := rd.Target()
	fmt.Fprintf(g.stderr, "servald: forwarding UDP %s to %s port %d\n", pc.LocalAddr(), sid, port)
	return ends.ServeUDP(ctx, pc, rd)
}
