package main

import (
	"fmt"
	"strings"

	inst "github.com/servald/servald/instance"
)

// printTicket prints the ticket of a listener on MDP port of node (with
// service, "" for none), and how to connect with it; fwd is the
// --forward or --socks flag the connect line suggests.
func printTicket(g *globals, node inst.Mesh, port uint16, service, fwd string) {
	tk := inst.ListenerTicket(node, port, service)
	fmt.Fprintf(g.stderr, "servald: ticket: %s (servald msp connect --udp :0 %sTICKET)\n", tk, fwd)
}

// ticketTarget reads the TICKET argument of msp connect: its SID and
// port, its addresses added as peers of an embedded node.
func (o *connectOptions) ticketTarget(arg string) (inst.Target, error) {
	if !strings.HasPrefix(strings.ToLower(arg), inst.TicketPrefix) {
		return inst.Target{}, usagef("%q: msp connect accepts 2 args, SID MDPPORT, or 1, a TICKET (%s...) as msp listen prints it", arg, inst.TicketPrefix)
	}
	tk, err := inst.ParseTicket(arg)
	if err != nil {
		return inst.Target{}, usageError{err}
	}
	o.ticket = &tk
	o.node.peers = append(o.node.peers, inst.PeerStrings(tk.Addrs)...)
	return inst.Target{SID: inst.FullSID(tk.SID), Port: tk.Port}, nil
}

// sayTicket tells what the ticket gave, and when its addresses are not
// used (through the daemon).
func (o *connectOptions) sayTicket(g *globals, node inst.Mesh) {
	if o.ticket == nil {
		return
	}
	name := ""
	if o.ticket.Service != "" {
		name = " (service " + o.ticket.Service + ")"
	}
	fmt.Fprintf(g.stderr, "servald: ticket: %s port %d%s at %v\n", o.ticket.SID, o.ticket.Port, name, inst.PeerStrings(o.ticket.Addrs))
	if msg := o.ticket.Unused(node); msg != "" {
		fmt.Fprintln(g.stderr, "servald: "+msg)
	}
}
