package msp

import (
	"fmt"
	"testing"

	"github.com/servald/servald/internal/protodoc"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for msp
// are the code's.
func TestProtocolDocConstants(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("written as `length (2) | datagram`, at most %d bytes", streamMaxPayload),
		fmt.Sprintf("msp's window is %d MiB", Config{}.withDefaults().Window>>20),
	)
}
