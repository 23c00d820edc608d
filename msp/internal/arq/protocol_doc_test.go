package arq

import (
	"fmt"
	"testing"
	"time"

	"github.com/servald/servald/internal/protodoc"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for arq
// are the code's.
func TestProtocolDocConstants(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("ACK ranges go downwards as in QUIC; at most %d", MaxAckRanges),
		fmt.Sprintf("Every %dnd", ackEvery),
		fmt.Sprintf("within %d ms", time.Duration(maxAckDelay).Milliseconds()),
		fmt.Sprintf("for max(%d PTO, %d ms) (PTO not backed off)", stallPTOs, time.Duration(stallTime).Milliseconds()),
	)
}
