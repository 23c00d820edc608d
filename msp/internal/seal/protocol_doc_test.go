package seal

import (
	"fmt"
	"testing"

	"github.com/servald/servald/internal/protodoc"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for the
// record layer are the code's.
func TestProtocolDocConstants(t *testing.T) {
	protodoc.Check(t, fmt.Sprintf("only within %d of the highest accepted (replay window)", ReplayWindow))
}
