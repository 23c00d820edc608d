// The ends of a tunnel, as the flags of msp listen and msp connect give
// them (without --forward or --socks, the command joins one stream to
// stdin/stdout itself):
//
//	msp connect: client ─► ConnectEnd.Serve: --forward (TCP or unix:PATH) ─► stream
//	                                         --socks: SOCKS5 handshake   ─► stream
//	msp listen:  stream ─► ListenEnd.Serve:  --forward (TCP or unix:PATH) target
//	                                         --socks: the exit, to the destination the stream names

package instance

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/forward/socks"
)

// EndFlags are the command-line flags that say what a tunnel's ends do.
// Once and Forward are on both sides; Socks and SocksAuth are msp
// connect's, SocksExit and To msp listen's.
type EndFlags struct {
	Once      bool     // --once
	Forward   string   // --forward: [HOST:]PORT or unix:PATH
	Socks     string   // connect --socks: [HOST:]PORT of a local SOCKS5 server
	SocksAuth string   // connect --socks-auth: FILE of user:password lines
	SocksExit bool     // listen --socks
	To        []string // listen --to: socks.ParseRule arguments
	// UDP flows (--forward=udp:...): Deadline is --deadline (0: none),
	// UDPIdle --udp-idle; UDPSet tells that either was given.
	Deadline, UDPIdle time.Duration
	UDPSet            bool
	// Logger receives per-connection errors (nil: silence).
	Logger *slog.Logger
}

// forwardEndpoint parses --forward: the zero Endpoint without it.
func (f EndFlags) forwardEndpoint() (forward.Endpoint, error) {
	if f.Forward == "" {
		return forward.Endpoint{}, nil
	}
	ep, err := forward.ParseEndpoint(f.Forward)
	if err != nil {
		return ep, usagef("--forward: %v", err)
	}
	return ep, nil
}

// withSocks refuses --forward and --once beside --socks.
func (f EndFlags) withSocks() error {
	switch {
	case f.Forward != "":
		return usagef("--socks and --forward are exclusive: give one")
	case f.Once:
		return usagef("--once does not apply with --socks: each SOCKS client is one connection")
	}
	return nil
}

// ListenEnd is what msp listen does with each stream it accepts: join it
// with a new connection to Target (--forward), or hand it to Exit
// (--socks). Neither is set for stdin/stdout.
type ListenEnd struct {
	Target forward.Endpoint
	Exit   *socks.Exit
	// Forwarder, when set, serves the streams to Target (its idle
	// timeout, its fair share of slots per peer); nil: forward's defaults.
	Forwarder *forward.Forwarder
	// UDP, with --forward=udp:HOST:PORT, carries UDP flows to UDPTarget.
	UDP       *forward.UDPFlows
	UDPTarget string
	once      bool
	log       *slog.Logger
}

// ListenEnd checks the flags of msp listen; restricted tells that --allow
// limits who may connect. Mistakes are *UsageError, among them an exit
// with neither --to nor --allow: an open proxy for the whole mesh.
func (f EndFlags) ListenEnd(restricted bool) (ListenEnd, error) {
	e := ListenEnd{once: f.Once, log: f.Logger}
	udp, target, err := f.udpFlows()
	if err != nil || udp != nil {
		e.UDP, e.UDPTarget = udp, target
		if err == nil && (f.SocksExit || len(f.To) > 0) {
			err = usagef("--forward=udp: carries UDP flows: --socks and --to do not apply")
		}
		return e, err
	}
	if !f.SocksExit {
		if len(f.To) > 0 {
			return e, usagef("--to needs --socks")
		}
		e.Target, err = f.forwardEndpoint()
		return e, err
	}
	if err := f.withSocks(); err != nil {
		return e, err
	}
	rules, err := socks.ParseRules(f.To)
	switch {
	case err != nil:
		return e, usagef("--to: %v", err)
	case rules.Empty() && !restricted:
		return e, usagef("--socks without --to or --allow would be an open proxy for the whole mesh: add --to=CIDR|HOST[:PORTS] (where it may connect) or --allow=SID (who may use it)")
	case rules.Empty():
		rules = socks.AllowAll() // --allow limits who may connect
	}
	e.Exit = &socks.Exit{Rules: rules, Logger: f.Logger}
	return e, nil
}

// Stdio reports that the listener joins one stream to stdin/stdout.
func (e ListenEnd) Stdio() bool { return e.Exit == nil && e.Target.Addr == "" && e.UDP == nil }

// Serve hands each stream accept returns to the exit, or joins it with a
// connection to the target (with --once, one), as socks.Exit.Serve and
// forward.ServeStreamsTo do: until ctx is done (ctx.Err()), accept
// returns net.ErrClosed (nil) or, with --once, the stream has ended.
func (e ListenEnd) Serve(ctx context.Context, accept func(context.Context) (net.Conn, error)) error {
	if e.Exit != nil {
		return e.Exit.Serve(ctx, accept)
	}
	if e.Forwarder != nil {
		return e.Forwarder.ServeStreams(ctx, accept, e.Target)
	}
	return forward.ServeStreamsTo(ctx, accept, e.Target, e.once, nil, e.log)
}

// ConnectFlag is the flag the connect line printed by a listener
// suggests, with a final blank: --socks=1080, or --forward with a local
// TCP port equal to the target's, or a Unix socket in the current
// directory named as the target's; "" for stdin/stdout.
func (e ListenEnd) ConnectFlag() string {
	switch {
	case e.Exit != nil:
		return "--socks=1080 "
	case e.UDP != nil:
		return "--forward=" + forward.UDPPrefix + strconv.Itoa(otherPort(e.UDPTarget)) + " "
	case e.Target.Network == "unix":
		return "--forward=" + forward.UnixPrefix + filepath.Base(e.Target.Addr) + " "
	case e.Target.Addr != "":
		return "--forward=" + strconv.Itoa(otherPort(e.Target.Addr)) + " "
	}
	return ""
}

// otherPort is another local port than the one of addr (host:port), so
// that a suggested connect line works on this machine too.
func otherPort(addr string) int {
	_, ps, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(ps)
	if p += 10000; p > 65535 {
		p -= 20000
	}
	return p
}

// ConnectEnd is where msp connect listens, Addr (--forward: TCP or
// unix:PATH; --socks: TCP), and what it does with each client: join it
// with a new stream, or, with --socks, hand it to Socks. Addr is zero for
// stdin/stdout.
type ConnectEnd struct {
	Addr  forward.Endpoint
	Socks *socks.Server // its Open is set by Serve
	// Forwarder, when set, serves the local connections (its idle
	// timeout, its cap, its fair share of slots per client address); nil:
	// forward's defaults.
	Forwarder *forward.Forwarder
	// UDP, with --forward=udp:[HOST:]PORT, carries the UDP flows of
	// clients of local UDP UDPAddr.
	UDP     *forward.UDPFlows
	UDPAddr string
	once    bool
	log     *slog.Logger
}

// ConnectEnd checks the flags of msp connect and reads the --socks-auth
// file. Mistakes in the flags are *UsageError.
func (f EndFlags) ConnectEnd() (ConnectEnd, error) {
	e := ConnectEnd{once: f.Once, log: f.Logger}
	udp, addr, err := f.udpFlows()
	if err != nil || udp != nil {
		e.UDP, e.UDPAddr = udp, addr
		if err == nil && (f.Socks != "" || f.SocksAuth != "") {
			err = usagef("--forward=udp: carries UDP flows: --socks and --socks-auth do not apply")
		}
		return e, err
	}
	if f.Socks == "" {
		if f.SocksAuth != "" {
			return e, usagef("--socks-auth needs --socks")
		}
		e.Addr, err = f.forwardEndpoint()
		return e, err
	}
	if err := f.withSocks(); err != nil {
		return e, err
	}
	addr, err = forward.ParseTarget(f.Socks)
	if err != nil {
		return e, usagef("--socks: %v", err)
	}
	e.Addr = forward.Endpoint{Network: "tcp", Addr: addr}
	e.Socks = &socks.Server{Logger: f.Logger}
	if f.SocksAuth != "" {
		if e.Socks.Auth, err = socks.LoadAuth(f.SocksAuth); err != nil {
			return e, fmt.Errorf("--socks-auth: %w", err)
		}
	}
	return e, nil
}

// Describe says where ln, listening on Addr, takes clients and what for:
// "forwarding TCP 127.0.0.1:2222", "forwarding Unix socket PATH",
// "SOCKS5 server on TCP 127.0.0.1:1080".
func (e ConnectEnd) Describe(ln net.Listener) string {
	s := "forwarding "
	if e.Socks != nil {
		s = "SOCKS5 server on "
	}
	if e.Addr.Network == "unix" {
		return s + "Unix socket " + e.Addr.Addr
	}
	return s + "TCP " + ln.Addr().String()
}

// Serve takes clients on ln and tunnels each over a stream from open,
// through the SOCKS5 server with --socks, as forward.Serve (with --once,
// one client) and socks.Server.Serve do: until ctx is done (ctx.Err()) or
// ln is closed (nil). It always closes ln.
func (e ConnectEnd) Serve(ctx context.Context, ln net.Listener, open func(context.Context) (net.Conn, error)) error {
	if e.Socks != nil {
		e.Socks.Open = open
		return e.Socks.Serve(ctx, ln)
	}
	if e.Forwarder != nil {
		return e.Forwarder.Serve(ctx, ln, open)
	}
	return forward.Serve(ctx, ln, open, e.once, e.log)
}
