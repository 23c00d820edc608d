// UDP flows at a tunnel's ends (--forward=udp:[HOST:]PORT, --deadline,
// --udp-idle):
//
//	msp connect: UDP clients ─► ConnectEnd.ServeUDP ─► session datagrams (the redialer's session)
//	msp listen:  session datagrams ─► ListenEnd.ServeUDP ─► a UDP socket per flow ─► target

package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/msp"
)

// udpFlows parses --forward=udp:[HOST:]PORT with --deadline and
// --udp-idle: nil (and no error) when --forward names no UDP.
func (f EndFlags) udpFlows() (*forward.UDPFlows, string, error) {
	addr, udp, err := forward.ParseUDPTarget(f.Forward)
	switch {
	case err != nil:
		return nil, "", usagef("--forward: %v", err)
	case !udp && f.UDPSet:
		return nil, "", usagef("--deadline and --udp-idle apply to UDP flows: give --forward=udp:[HOST:]PORT")
	case !udp:
		return nil, "", nil
	case f.Deadline < 0:
		return nil, "", usagef("--deadline must not be negative (0: no deadline)")
	case f.Deadline > msp.MaxBudget:
		return nil, "", usagef("--deadline must be at most %v", msp.MaxBudget)
	case f.UDPIdle <= 0:
		return nil, "", usagef("--udp-idle must be positive")
	case f.Once:
		return nil, "", usagef("--once does not apply to UDP flows")
	}
	u := &forward.UDPFlows{Deadline: f.Deadline, Idle: f.UDPIdle, Logger: f.Logger}
	if f.Deadline == 0 {
		u.Deadline = -1 // none
	}
	return u, addr, nil
}

// UDPFlags are the flags of UDP flows, --deadline and --udp-idle, on a
// command's flag set.
type UDPFlags struct {
	deadline, idle time.Duration
	fs             *pflag.FlagSet
}

// AddFlags adds --deadline and --udp-idle to fs and says what
// --forward=udp: does in the usage of --forward (added before).
func (f *UDPFlags) AddFlags(fs *pflag.FlagSet) {
	f.fs = fs
	if fl := fs.Lookup("forward"); fl != nil {
		fl.Usage += "; udp:[HOST:]PORT: UDP flows, each datagram carried as one"
	}
	fs.DurationVar(&f.deadline, "deadline", forward.DefaultDeadline, "with --forward=udp:, drop a datagram at whatever hop it has reached once this old (0: no deadline)")
	fs.DurationVar(&f.idle, "udp-idle", forward.DefaultUDPIdle, "with --forward=udp:, forget a flow after this long without a datagram")
}

// With returns e with the flags' values.
func (f *UDPFlags) With(e EndFlags) EndFlags {
	e.Deadline, e.UDPIdle = f.deadline, f.idle
	e.UDPSet = f.fs != nil && (f.fs.Changed("deadline") || f.fs.Changed("udp-idle"))
	return e
}

// listenUDP opens the local UDP socket of msp connect --forward=udp:.
func (e ConnectEnd) listenUDP(ctx context.Context) (net.PacketConn, error) {
	pc, err := (&net.ListenConfig{}).ListenPacket(ctx, "udp", e.UDPAddr)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("UDP port %s is in use: %w", e.UDPAddr, syscall.EADDRINUSE)
	}
	return pc, err
}

// ServeUDP opens the local UDP port, says on w where it takes UDP
// clients, then carries their flows in rd's session (dialled again when
// it ended) until ctx ends (nil) or the socket closes; it logs the
// counters when it returns.
func (e ConnectEnd) ServeUDP(ctx context.Context, rd *Redialer, w io.Writer) error {
	pc, err := e.listenUDP(ctx)
	if err != nil {
		return err
	}
	sid, port := rd.Target()
	fmt.Fprintf(w, "servald: forwarding UDP %s to %s port %d\n", pc.LocalAddr(), sid, port)
	var last *msp.Session
	session := func(ctx context.Context) (forward.DialedSession, error) {
		s, err := rd.Session(ctx)
		if err != nil {
			return nil, err
		}
		if last != nil && last != s {
			logUDP(e.log, e.UDP, last)
		}
		last = s
		return s, nil
	}
	err = e.UDP.ServeConnect(ctx, pc, session)
	logUDP(e.log, e.UDP, last)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// ServeUDP carries the flows that arrive in lis's sessions to the target
// until ctx ends (nil) or lis closes; it logs the counters when it
// returns.
func (e ListenEnd) ServeUDP(ctx context.Context, lis *msp.Listener) error {
	receive := func(ctx context.Context) (forward.DatagramSession, []byte, error) {
		s, p, err := lis.ReceiveDatagram(ctx)
		if err != nil {
			return nil, nil, err
		}
		return s, p, nil
	}
	err := e.UDP.ServeListen(ctx, receive, e.UDPTarget, nil)
	var late, dropped uint64
	for _, s := range lis.Sessions() {
		st := s.DatagramStats()
		late, dropped = late+st.Late, dropped+st.Dropped
	}
	logUDPStats(e.log, e.UDP.Stats(), late, dropped)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// logUDP logs the counters of u and of s's datagrams (s may be nil).
func logUDP(log *slog.Logger, u *forward.UDPFlows, s *msp.Session) {
	var st msp.DatagramStats
	if s != nil {
		st = s.DatagramStats()
	}
	logUDPStats(log, u.Stats(), st.Late, st.Dropped)
}

func logUDPStats(log *slog.Logger, st forward.UDPStats, late, dropped uint64) {
	if log == nil {
		return
	}
	log.Info("UDP flows", "datagrams_in", st.In, "datagrams_out", st.Out,
		"dropped_late", late, "dropped_queue_full", dropped, "dropped_too_large", st.TooLarge, "largest_dropped", st.Largest,
		"flows_opened", st.Opened, "flows_evicted", st.Evicted, "flows_expired", st.Expired)
}
