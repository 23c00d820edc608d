package instance

import (
	"fmt"
	"testing"

	"github.com/servald/servald/discovery"
	"github.com/servald/servald/internal/protodoc"
)

// TestTicketProtocolDoc: what docs/PROTOCOL.md says of the ticket is the
// code's.
func TestTicketProtocolDoc(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("token to copy: `%s` followed by the base32", TicketPrefix),
		fmt.Sprintf("version (1) = %d | SID (32) | MDP port (2) | name length (1, ≤ %d)", ticketVersion, discovery.MaxName),
		fmt.Sprintf("address count (1, ≤ %d)", MaxTicketAddrs),
	)
}
