package msp

import (
	"fmt"
	"testing"

	"github.com/servald/servald/internal/protodoc"
	"github.com/servald/servald/msp/internal/seal"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for msp
// are the code's.
func TestProtocolDocConstants(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("written as `length (2) | datagram`, at most %d bytes", streamMaxPayload),
		fmt.Sprintf("msp's window is %d MiB", Config{}.withDefaults().Window>>20),
	)
}

// TestProtocolDocDatagrams: the datagram constants docs/PROTOCOL.md quotes
// are the code's.
func TestProtocolDocDatagrams(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("datagram = 0x%02x budget_us (varint) payload", dgramType),
		fmt.Sprintf("in microseconds, at most %d (an hour)", MaxBudget.Microseconds()),
		fmt.Sprintf("overhead (%d bytes) and the largest datagram header (%d bytes)", seal.Overhead, dgramHeaderMax),
		fmt.Sprintf("holds at most %d datagrams and %d MiB of payload, and in a listener's queue one session at most %d of them", dgramQueueLen, dgramQueueBytes>>20, dgramSessionShare),
	)
}
