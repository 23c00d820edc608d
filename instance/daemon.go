package instance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/servald/servald/daemon"
	"github.com/servald/servald/identity"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// DaemonTimeout bounds each exchange with the daemon that has no deadline
// of its own (status, bind, routes).
const DaemonTimeout = 10 * time.Second

// openDaemon returns a connection to the daemon of instance dir, or nil
// when none runs (no socket, or a dead daemon's). The daemon's node must
// be this instance's identity.
func openDaemon(dir string, log *slog.Logger) (Mesh, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	c, err := daemon.Dial(ctx, daemon.SocketPath(dir))
	if errors.Is(err, daemon.ErrNotRunning) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("the daemon of %s does not answer: %w", dir, err)
	}
	id, err := Identity(dir)
	if err != nil {
		c.Close()
		return nil, err
	}
	if id.SID() != c.SID() {
		c.Close()
		return nil, fmt.Errorf("the daemon (pid %d) runs as %s but the keyring of %s now says %s: restart it (servald stop; servald start)", c.PID(), c.SID(), dir, id.SID())
	}
	logger(log).Info("using the running daemon", "pid", c.PID(), "udp", c.UDPAddr())
	return viaDaemon{c: c, id: id, link: &daemonLink{}}, nil
}

// nodeFlags are the node options a daemon ignores, as flags.
var nodeFlags = []string{"udp", "peer", "broadcast", "config", "trust"}

// Ignored is the notice, "" for none, that the node options o.Given
// reports given are ignored because m is the instance's daemon, which
// has options of its own.
func (o NodeOptions) Ignored(m Mesh) string {
	d, ok := m.(viaDaemon)
	if !ok || o.Given == nil {
		return ""
	}
	var given []string
	for _, f := range nodeFlags {
		if o.Given(f) {
			given = append(given, "--"+f)
		}
	}
	if len(given) == 0 {
		return ""
	}
	verb := "are"
	if len(given) == 1 {
		verb = "is"
	}
	return fmt.Sprintf("the daemon of this instance (pid %d) runs, so %s %s ignored: it keeps its own (stop it and start it with them to change them)",
		d.c.PID(), strings.Join(given, ", "), verb)
}

// viaDaemon reaches the mesh through the instance's daemon.
type viaDaemon struct {
	c    *daemon.Client
	id   *identity.Identity
	link *daemonLink // whether the daemon went away, and whom to tell (reattach.go)
}

func (d viaDaemon) Identity() *identity.Identity { return d.id }
func (d viaDaemon) UDPAddr() net.Addr            { return d.c.UDPAddr() }
func (d viaDaemon) Bind(port uint16) (msp.Transport, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	p, err := d.c.Bind(ctx, port)
	if err != nil {
		return nil, d.notRunning(err)
	}
	d.backAgain(ctx)
	return newWatched(p, d.link), nil
}
func (d viaDaemon) Routes() ([]mesh.Route, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	return d.c.Routes(ctx)
}
func (d viaDaemon) Neighbours() ([]mesh.Neighbour, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	return d.c.Neighbours(ctx)
}
func (d viaDaemon) Changed() <-chan struct{} { return nil }

// Advertise asks the daemon, which answers on the discovery port for all
// its clients.
func (d viaDaemon) Advertise(name string, port uint16, _ *slog.Logger) (io.Closer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), DaemonTimeout)
	defer cancel()
	a, err := d.c.Advertise(ctx, name, port)
	if err != nil {
		return nil, err
	}
	return a, nil
}
func (d viaDaemon) Close() error { return d.c.Close() }

// logger returns log, or a silent logger for nil.
func logger(log *slog.Logger) *slog.Logger {
	if log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return log
}
