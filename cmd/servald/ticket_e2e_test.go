package main

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	instpkg "github.com/servald/servald/instance"
)

// TestTicket: msp listen prints a ticket; msp connect given only the
// ticket and --forward, from another instance with an embedded node and
// no --peer, reaches the listener through the address in the ticket and
// carries an echo; with the ticket's address stale, connect still
// reaches the listener through a relay it is given. A mistyped ticket is one line and exit 2; through a
// daemon that knows no route, connect says the ticket's addresses are not
// used.
func TestTicket(t *testing.T) {
	t.Parallel()
	l := startListen(t, nil, nil, "--service=echo", "--forward", echoServer(t).Addr().String(), "5000")
	m := l.waitLine(`^servald: ticket: (svd1[a-z2-7]+) \(servald msp connect --udp :0 --forward=\d+ TICKET\)$`)
	ticket := m[1]
	port := freePort(t)
	c := start(t, nil, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--forward", strconv.Itoa(port), ticket)
	c.waitLine(`^servald: ticket: ` + l.sid + ` port 5000 \(service echo\) at \[` + l.udp + `\]$`)
	c.waitLine(`^servald: forwarding TCP `)
	if err := echoWithin("127.0.0.1:"+strconv.Itoa(port), "ticket\n", 10*time.Second); err != nil {
		t.Fatalf("through the ticket: %v; connect said: %s", err, c.stderr)
	}

	t.Run("mistyped", func(t *testing.T) {
		typo := byte('a')
		if ticket[20] == typo {
			typo = 'b'
		}
		bad := ticket[:20] + string(typo) + ticket[21:]
		for _, arg := range []string{bad, ticket[:len(ticket)-3], "4F3A09B1"} {
			code, out, errOut := runOnce(t, nil, "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", arg)
			if code != 2 || out != "" {
				t.Errorf("%s: exit %d, stdout %q; want 2 and nothing", arg, code, out)
			}
			want := "not a valid servald ticket"
			if !strings.HasPrefix(arg, "svd1") {
				want = "accepts 2 args, SID MDPPORT, or 1, a TICKET"
			}
			oneLine(t, errOut, want)
		}
	})

	t.Run("stale address", func(t *testing.T) {
		// The listener moved out of reach of the ticket's address (a UDP
		// socket that never answers stands for it), but the mesh still
		// knows it through a relay that connect is given as --peer.
		relay := startForeground(t, "--peer", l.udp)
		tk, err := instpkg.ParseTicket(ticket)
		if err != nil {
			t.Fatal(err)
		}
		tk.Addrs = []netip.AddrPort{netip.MustParseAddrPort(silentUDP(t))}
		code, out, errOut := runOnce(t, strings.NewReader("stale\n"), "msp", "connect", "--instance", instance(t), "--udp", "127.0.0.1:0", "--peer", relay.udp, tk.String())
		if code != 0 || out != "stale\n" {
			t.Fatalf("with a stale address in the ticket, through a relay: exit %d, stdout %q: %s", code, out, errOut)
		}
	})

	t.Run("daemon", func(t *testing.T) {
		inst := instance(t)
		startDaemon(t, inst)
		code, _, errOut := runOnce(t, nil, "msp", "connect", "--instance", inst, "--timeout", "1s", ticket)
		if code != 1 || !strings.Contains(errOut, "so the ticket's addresses are not used: it reaches "+l.sid[:8]+" only if its mesh knows a route (start it with --peer "+l.udp+" to add one)") {
			t.Fatalf("through a daemon without a route: exit %d: %s", code, errOut)
		}
	})
}
