package instance

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"

	"github.com/servald/servald/identity"
	"github.com/servald/servald/internal/safefs"
	"github.com/servald/servald/mesh"
	"github.com/servald/servald/msp"
)

// NodeOptions are the settings of a node embedded in the process.
type NodeOptions struct {
	// UDP is the address the node listens on (HOST:PORT).
	UDP string
	// Peers are the HOST:PORT of nodes to link with.
	Peers []string
	// Broadcast names the interfaces to announce the node on by LAN
	// broadcast; "*" (or "") stands for every broadcast-capable one.
	Broadcast []string
	// Trust, with the instance's trusted file (TrustedFile), closes the
	// mesh: when either names a SID, only those nodes become neighbours
	// (configured peers included); farther nodes are still reached
	// through them. Full SIDs only: a prefix could be ground.
	Trust []string
	// Config is a config file that fills the options the command line
	// did not give; "" for the instance's (DIR/config, ConfigFile) when
	// present, which is not read when Config is set.
	Config string
	// Given reports whether the option "udp", "peer" or "broadcast" was
	// given explicitly (pflag.FlagSet.Changed): the config file does not
	// override those. nil: none was.
	Given func(name string) bool
	// NoEcho leaves ping and trace unanswered: the node does not bind
	// probe.EchoPort and probe.TracePort (see ServeProbes).
	NoEcho bool
	// Logger receives the node's logs; nil is silent.
	Logger *slog.Logger
}

// UsageError marks a mistake in what the user gave (an option, a config
// file line, an ambiguous short SID): a command line reports it as a
// usage error. Its message is the wrapped error's.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }

// Unwrap returns the mistake.
func (e *UsageError) Unwrap() error { return e.Err }

func usagef(format string, args ...any) error {
	return &UsageError{fmt.Errorf(format, args...)}
}

// Open reaches the mesh for instance directory dir: through the
// instance's daemon when one runs (o is then ignored), else through a
// node started in this process with options o (see StartNode), which
// holds the instance lock until closed: a *NodeRunningError when another
// node of the instance holds it.
func Open(dir string, o NodeOptions) (Mesh, error) {
	if d, err := openDaemon(dir, o.Logger); d != nil || err != nil {
		return d, err
	}
	o, err := o.withConfig(dir)
	if err != nil {
		return nil, err
	}
	lock, err := LockInstance(dir)
	if err != nil {
		return nil, err
	}
	n, err := startNode(dir, o)
	if err != nil {
		lock.Close()
		return nil, err
	}
	probes, err := ServeProbes(n, o)
	if err != nil {
		n.Close()
		lock.Close()
		return nil, err
	}
	return &embedded{n: n, lock: lock, peers: o.Peers, expect: len(o.Peers) > 0 || len(o.Broadcast) > 0, probes: probes}, nil
}

// StartNode starts a node of instance dir with options o (completed from
// the config file, o.Config or DIR/config) in this process. The caller holds the instance lock
// (LockInstance).
func StartNode(dir string, o NodeOptions) (*mesh.Node, error) {
	o, err := o.withConfig(dir)
	if err != nil {
		return nil, err
	}
	return startNode(dir, o)
}

// startNode starts a node with options o, whose config file is read.
func startNode(dir string, o NodeOptions) (*mesh.Node, error) {
	peers, err := o.validate()
	if err != nil {
		return nil, err
	}
	id, err := Identity(dir)
	if err != nil {
		return nil, err
	}
	trust, err := trusted(dir, o.Trust)
	if err != nil {
		return nil, err
	}
	conn, err := mesh.ListenUDP(o.UDP, len(o.Broadcast) > 0)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			// The instance lock is ours: no node of this instance holds it.
			return nil, fmt.Errorf("UDP address %s is in use by another program or another instance's node: choose another with --udp", o.UDP)
		}
		return nil, err
	}
	bc, err := broadcastAddrs(o.Broadcast, conn.LocalAddr().(*net.UDPAddr).Port)
	if err != nil {
		conn.Close()
		return nil, err
	}
	n, err := mesh.New(mesh.Config{Identity: id, Conn: conn, Peers: peers, Broadcast: bc, Trust: trust, Logger: o.Logger})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if err := refuseUnbound(n, o.Logger); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// refuseUnbound makes n answer a session asked for on an MDP port nothing
// is bound to with a signed refusal, at once (see msp.RefuseUnbound). The
// answering goroutine ends when n closes.
func refuseUnbound(n *mesh.Node, log *slog.Logger) error {
	fb, err := n.Bind(0)
	if err != nil {
		return err
	}
	if err := n.SetUnbound(fb); err != nil {
		fb.Close()
		return err
	}
	msp.RefuseUnbound(fb, n.Identity(), log)
	return nil
}

// Check reads the config file and checks the options as StartNode in
// instance dir would, without starting anything.
func (o NodeOptions) Check(dir string) error {
	o, err := o.withConfig(dir)
	if err != nil {
		return err
	}
	_, err = o.validate()
	return err
}

// KeyringPath is the keyring file of instance dir.
func KeyringPath(dir string) string { return filepath.Join(dir, identity.KeyringFile) }

// OpenKeyring opens the keyring of instance dir, creating it with one
// identity when missing (created is then true).
func OpenKeyring(dir string) (k *identity.Keyring, created bool, err error) {
	if err := PrepareDir(dir); err != nil {
		return nil, false, err
	}
	path := KeyringPath(dir)
	if k, err = identity.OpenKeyring(path); err == nil {
		return k, false, nil
	}
	if errors.Is(err, safefs.ErrUnsafe) {
		return nil, false, describeUnsafe(err, "keyring")
	}
	k, err = identity.OpenOrCreateKeyring(path, nil)
	if err != nil {
		return nil, false, describeUnsafe(err, "keyring")
	}
	return k, true, nil
}

// ReadKeyring opens the keyring of instance dir without creating it:
// when there is none yet, the error says how to create one.
func ReadKeyring(dir string) (*identity.Keyring, error) {
	k, err := identity.OpenKeyring(KeyringPath(dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no keyring in %s yet: `servald id self` creates one (so does any command that starts a node)", dir)
	}
	if err != nil {
		return nil, describeUnsafe(err, "keyring")
	}
	return k, nil
}

// PrepareDir creates instance directory dir (0700) when missing and
// refuses it, with a line saying what to chmod or chown, when another user
// owns it or group or others may write to it: a directory someone else
// controls could hold a planted keyring or links to other files.
func PrepareDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("instance directory: %w", err)
	}
	return describeUnsafe(safefs.CheckDir(dir), "instance directory")
}

// describeUnsafe turns a safefs refusal into the user's line (role, path,
// what is wrong, the fix); other errors pass as they are.
func describeUnsafe(err error, role string) error {
	var ue *safefs.UnsafeError
	if errors.As(err, &ue) {
		return errors.New(ue.Describe(role))
	}
	return err
}

// Identity returns the node's primary identity in instance dir, creating
// the keyring on first use. A damaged keyring is an error and is left as
// it is.
func Identity(dir string) (*identity.Identity, error) {
	k, _, err := OpenKeyring(dir)
	if err != nil {
		return nil, err
	}
	return k.Primary(), nil
}
