package splitter

// Configuration: one struct with defaults and validation, no global state.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/servald/servald/splitter/internal/wire"
)

// Config holds the settings of one end of a splitter session. The zero value
// is not usable: start from DefaultConfig. DataShards, ParityShards and
// PayloadSize must be equal at both ends (they are checked when a session
// opens); the other fields are local.
type Config struct {
	// Conns is the number of TCP connections a client keeps open per
	// session (1..64). The client decides; the listener ignores it.
	Conns int
	// DataShards is the number of data shards per Reed-Solomon block and
	// ParityShards the number of parity shards. 0:0 turns FEC off: every
	// block is one shard and losses are repaired only by re-requests.
	// DataShards+ParityShards <= 256.
	DataShards   int
	ParityShards int
	// PayloadSize is the largest shard payload in bytes (512 .. 1 MiB).
	// A full block carries DataShards*PayloadSize stream bytes.
	PayloadSize int
	// ReorderWindow bounds, in stream bytes, the blocks one end holds for
	// reassembly and the unacknowledged blocks it keeps for re-sending
	// (rounded down to whole blocks, at least 2). A sender stops when the
	// peer's window is full. Memory per session is about
	// 2*ReorderWindow*(D+P)/D.
	ReorderWindow int
	// MaxHold is how long a receiver waits for the missing shards of a
	// block before asking for them again; a stalled connection delays the
	// stream by about this much.
	MaxHold time.Duration
	// StallTimeout is how long a connection may have unacknowledged bytes
	// without progress before it is closed as stalled (and, on the client,
	// re-opened). It must exceed MaxHold. A connection makes no new
	// progress for MaxHold stops getting new shards at once.
	StallTimeout time.Duration
	// KeepAlive is how often an idle connection is probed.
	KeepAlive time.Duration
	// PeerTimeout is how long a session survives with no live connection
	// (the client keeps re-dialling meanwhile) before it fails.
	PeerTimeout time.Duration
	// HandshakeTimeout bounds the hello/reply exchange on a new connection.
	HandshakeTimeout time.Duration
	// Linger bounds how long Close waits for the peer to acknowledge data
	// already written. 0 means Close discards unacknowledged data at once.
	Linger time.Duration
	// ConnWindow bounds the bytes in flight (written, not yet acknowledged
	// by the peer's reader) on one connection. It keeps a slow or stalled
	// connection from swallowing much of the stream.
	ConnWindow int
	// MaxConns caps the TCP connections of one session open at once,
	// re-opened ones included. On the client it counts open connections
	// plus those being dialled (0: 2*Conns); on a Listener it is the most
	// connections one session may have joined, beyond which joins are
	// refused (0: 2*MaxConnsPerSession, whatever the listener's Conns).
	MaxConns int
	// DialsPerSecond caps the connection attempts of one client session
	// (a token bucket with a burst of Conns).
	DialsPerSecond float64
	// AcceptBacklog bounds the sessions a Listener holds that Accept has not
	// taken yet; more are refused.
	AcceptBacklog int
	// MaxSessions bounds a Listener's sessions (live or waiting for
	// Accept) and MaxSessionsPerAddr those opened from one IP address;
	// more are refused as busy. 0 takes the defaults (256 and 32).
	MaxSessions, MaxSessionsPerAddr int
	// GatedWindow makes a Listener's sessions start with a receive window
	// of one block, until the protocol above calls (*Conn).OpenWindow
	// after it has authenticated the peer (MSP does): an unauthenticated
	// peer then holds one block of the listener's memory, not the whole
	// reorder window.
	GatedWindow bool
	// Dial opens TCP connections; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logger receives log lines; nil means silent.
	Logger *slog.Logger
	// OnRefused, if set, is called by a Listener (from its own goroutine;
	// it must not block) for every session or connection it refuses. The
	// error is a *NegotiationError for a parameter mismatch and a
	// *RefusedError otherwise.
	OnRefused func(error)
}

// Limits on Config fields.
const (
	MaxConnsPerSession = 64
	MinPayloadSize     = 512
	MaxPayloadSize     = 1 << 20
)

// DefaultConfig returns the default settings: 8 connections, FEC 10:3,
// 16 KiB payloads, an 8 MiB reorder window, 200 ms hold time.
func DefaultConfig() Config {
	return Config{
		Conns:            8,
		DataShards:       10,
		ParityShards:     3,
		PayloadSize:      16 << 10,
		ReorderWindow:    8 << 20,
		MaxHold:          200 * time.Millisecond,
		StallTimeout:     2 * time.Second,
		KeepAlive:        time.Second,
		PeerTimeout:      10 * time.Second,
		HandshakeTimeout: 5 * time.Second,
		Linger:           2 * time.Second,
		ConnWindow:       256 << 10,
		DialsPerSecond:   20,
		AcceptBacklog:    16,
	}
}

// Validate reports the first setting that is out of range.
func (c Config) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("splitter: invalid config: "+format, a...)
	}
	switch {
	case c.Conns < 1 || c.Conns > MaxConnsPerSession:
		return bad("Conns %d not in 1..%d", c.Conns, MaxConnsPerSession)
	case c.DataShards < 0 || c.ParityShards < 0:
		return bad("negative shard count %d:%d", c.DataShards, c.ParityShards)
	case c.DataShards == 0 && c.ParityShards != 0:
		return bad("FEC %d:%d has parity but no data shards", c.DataShards, c.ParityShards)
	case c.DataShards+c.ParityShards > wire.MaxShards:
		return bad("FEC %d:%d exceeds %d shards", c.DataShards, c.ParityShards, wire.MaxShards)
	case c.PayloadSize < MinPayloadSize || c.PayloadSize > MaxPayloadSize:
		return bad("PayloadSize %d not in %d..%d", c.PayloadSize, MinPayloadSize, MaxPayloadSize)
	case c.ReorderWindow <= 0:
		return bad("ReorderWindow %d must be positive", c.ReorderWindow)
	case c.MaxHold <= 0:
		return bad("MaxHold %v must be positive", c.MaxHold)
	case c.StallTimeout <= c.MaxHold:
		return bad("StallTimeout %v must exceed MaxHold %v", c.StallTimeout, c.MaxHold)
	case c.KeepAlive <= 0 || c.PeerTimeout <= 0 || c.HandshakeTimeout <= 0:
		return bad("KeepAlive, PeerTimeout and HandshakeTimeout must be positive")
	case c.Linger < 0:
		return bad("Linger %v is negative", c.Linger)
	case c.ConnWindow < c.PayloadSize+wire.HeaderLen+wire.DataHeaderLen:
		return bad("ConnWindow %d smaller than one frame", c.ConnWindow)
	case c.MaxConns != 0 && (c.MaxConns < c.Conns || c.MaxConns > 4*MaxConnsPerSession):
		return bad("MaxConns %d not in Conns..%d", c.MaxConns, 4*MaxConnsPerSession)
	case !(c.DialsPerSecond > 0):
		return bad("DialsPerSecond %v must be positive", c.DialsPerSecond)
	case c.AcceptBacklog < 1:
		return bad("AcceptBacklog %d must be at least 1", c.AcceptBacklog)
	case c.MaxSessions < 0 || c.MaxSessionsPerAddr < 0:
		return bad("MaxSessions %d and MaxSessionsPerAddr %d must not be negative", c.MaxSessions, c.MaxSessionsPerAddr)
	}
	return nil
}

func (c Config) maxConns() int {
	if c.MaxConns == 0 {
		return 2 * c.Conns
	}
	return c.MaxConns
}

// sessionCaps are MaxSessions and MaxSessionsPerAddr with their defaults.
func (c Config) sessionCaps() (total, perAddr int) {
	total, perAddr = c.MaxSessions, c.MaxSessionsPerAddr
	if total == 0 {
		total = 256
	}
	if perAddr == 0 {
		perAddr = 32
	}
	return total, perAddr
}

func (c Config) listenerMaxConns() int {
	if c.MaxConns == 0 {
		return 2 * MaxConnsPerSession
	}
	return c.MaxConns
}

func (c Config) params() wire.Params {
	return wire.Params{DataShards: c.DataShards, ParityShards: c.ParityShards, PayloadSize: c.PayloadSize}
}

// windowBlocks is the reorder window in whole blocks.
func (c Config) windowBlocks() int {
	d := max(c.DataShards, 1)
	n := c.ReorderWindow / (d * c.PayloadSize)
	return max(n, 2)
}

func (c Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}
