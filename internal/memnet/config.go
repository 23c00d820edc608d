package memnet

import (
	"errors"
	"fmt"
	"time"
)

// Defaults and bounds of a Network. All are per Network and adjustable.
const (
	// DefaultMTU is the largest datagram WriteTo accepts unless changed with
	// [Network.SetMTU].
	DefaultMTU = 1500
	// DefaultQueueBytes bounds a bandwidth-limited link's queue when
	// LinkConfig.QueueBytes is 0.
	DefaultQueueBytes = 256 << 10
	// DefaultRecvPackets and DefaultRecvBytes bound each Conn's receive
	// queue, whichever is reached first (see [Network.SetRecvQueue]).
	DefaultRecvPackets = 4096
	DefaultRecvBytes   = 8 << 20
	// DefaultInFlightBytes bounds the payload bytes scheduled for future
	// delivery across the whole Network (see [Network.SetInFlightLimit]).
	DefaultInFlightBytes = 64 << 20
	// defaultReorderDelay is used when neither ReorderDelay nor Delay is set.
	defaultReorderDelay = time.Millisecond
)

// LinkConfig is the behaviour of one direction of a link. The zero value is
// a perfect link: no loss, no delay, unlimited bandwidth, delivered at once.
type LinkConfig struct {
	// Loss is the probability, in [0, 1], that a datagram is dropped.
	Loss float64
	// Delay is the one-way propagation delay.
	Delay time.Duration
	// Jitter adds a uniform random delay in [0, Jitter) to each datagram.
	Jitter time.Duration
	// Reorder is the probability, in [0, 1], that a datagram is held back an
	// extra ReorderDelay, so that later datagrams overtake it.
	Reorder float64
	// ReorderDelay is the hold-back of a reordered datagram; 0 means Delay,
	// or 1ms if Delay is 0 too.
	ReorderDelay time.Duration
	// Duplicate is the probability, in [0, 1], that a datagram is delivered
	// twice. The second copy has its own jitter and reorder decisions.
	Duplicate float64
	// Bandwidth is the rate in bytes per second at which the sender's side
	// of the link serializes datagrams, one after another; 0 is unlimited.
	// Only payload bytes count.
	Bandwidth int64
	// QueueBytes bounds the bytes waiting to be serialized on a
	// bandwidth-limited link (including the one being sent); a datagram
	// that does not fit is tail-dropped. 0 means DefaultQueueBytes. Ignored
	// when Bandwidth is 0.
	QueueBytes int
	// Cut drops every datagram: those sent while it is set, and those
	// already in flight that would arrive while it is set.
	Cut bool
}

// Validate reports whether c is usable.
func (c LinkConfig) Validate() error {
	var errs []error
	prob := func(name string, p float64) {
		if !(p >= 0 && p <= 1) { // also rejects NaN
			errs = append(errs, fmt.Errorf("%s %v not in [0, 1]", name, p))
		}
	}
	prob("Loss", c.Loss)
	prob("Reorder", c.Reorder)
	prob("Duplicate", c.Duplicate)
	nonneg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", name, v))
		}
	}
	nonneg("Delay", int64(c.Delay))
	nonneg("Jitter", int64(c.Jitter))
	nonneg("ReorderDelay", int64(c.ReorderDelay))
	nonneg("Bandwidth", c.Bandwidth)
	nonneg("QueueBytes", int64(c.QueueBytes))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("memnet: invalid LinkConfig: %w", err)
	}
	return nil
}

func (c *LinkConfig) reorderDelay() time.Duration {
	switch {
	case c.ReorderDelay > 0:
		return c.ReorderDelay
	case c.Delay > 0:
		return c.Delay
	}
	return defaultReorderDelay
}

func (c *LinkConfig) queueBytes() int {
	if c.QueueBytes > 0 {
		return c.QueueBytes
	}
	return DefaultQueueBytes
}

// txTime is how long a link of bw bytes/s takes to serialize n bytes,
// rounded up to the nanosecond.
func txTime(n int, bw int64) time.Duration {
	if n < 1<<32 && bw < 1<<32 {
		return time.Duration((int64(n)*1e9 + bw - 1) / bw)
	}
	return time.Duration(float64(n) * 1e9 / float64(bw))
}

// LinkStats counts what happened to datagrams on one directed link.
type LinkStats struct {
	// Sent counts datagrams written to the link (not counting Oversize).
	Sent uint64
	// Delivered counts copies put into the receiver's queue.
	Delivered uint64
	// Lost counts datagrams dropped by the Loss setting.
	Lost uint64
	// Duplicated counts datagrams for which a second copy was made.
	Duplicated uint64
	// QueueDropped counts tail drops at the bandwidth queue.
	QueueDropped uint64
	// CutDropped counts copies dropped because the link was cut at send or
	// at arrival time.
	CutDropped uint64
	// Oversize counts WriteTo calls refused for exceeding the MTU. For a
	// broadcast they are counted on the link to the broadcast address.
	Oversize uint64
	// InFlightDropped counts copies dropped because the Network's in-flight
	// bound was reached.
	InFlightDropped uint64
	// Unreachable counts copies that arrived at an address with no open
	// endpoint.
	Unreachable uint64
	// Overflow counts copies dropped because the receiver's queue was full.
	Overflow uint64
}

func (s *LinkStats) add(o LinkStats) {
	s.Sent += o.Sent
	s.Delivered += o.Delivered
	s.Lost += o.Lost
	s.Duplicated += o.Duplicated
	s.QueueDropped += o.QueueDropped
	s.CutDropped += o.CutDropped
	s.Oversize += o.Oversize
	s.InFlightDropped += o.InFlightDropped
	s.Unreachable += o.Unreachable
	s.Overflow += o.Overflow
}

// ConnStats counts datagrams at one endpoint.
type ConnStats struct {
	// Sent counts datagrams accepted by WriteTo (a broadcast counts once).
	Sent uint64
	// Oversize counts WriteTo calls refused for exceeding the MTU.
	Oversize uint64
	// Received counts datagrams returned by ReadFrom.
	Received uint64
	// Overflow counts arriving datagrams dropped because the receive queue
	// was full.
	Overflow uint64
	// Queued is the number of datagrams waiting in the receive queue now.
	Queued int
	// QueuedBytes is the payload bytes waiting in the receive queue now.
	QueuedBytes int
}
