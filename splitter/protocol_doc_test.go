package splitter

import (
	"fmt"
	"testing"

	"github.com/servald/servald/internal/protodoc"
	"github.com/servald/servald/splitter/internal/wire"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for the
// splitter are the code's.
func TestProtocolDocConstants(t *testing.T) {
	d := DefaultConfig()
	protodoc.Check(t,
		fmt.Sprintf(`HELLO "SPLT" | version=%d (1)`, wire.Version),
		fmt.Sprintf("D × payload size bytes (default %d × %d KiB)", d.DataShards, d.PayloadSize>>10),
		fmt.Sprintf("(default %d MiB, in whole blocks)", d.ReorderWindow>>20),
		fmt.Sprintf("MaxHold (default %d ms)", d.MaxHold.Milliseconds()),
		fmt.Sprintf("ConnWindow (%d KiB) unacknowledged per lane", d.ConnWindow>>10),
		fmt.Sprintf("idle for KeepAlive (%d s)", int(d.KeepAlive.Seconds())),
		fmt.Sprintf("After StallTimeout (%d s)", int(d.StallTimeout.Seconds())),
		fmt.Sprintf("DialsPerSecond (%g/s, burst conns)", d.DialsPerSecond),
		fmt.Sprintf("the sessions waiting for Accept (%d)", d.AcceptBacklog),
		fmt.Sprintf("PeerTimeout (%d s)", int(d.PeerTimeout.Seconds())),
		fmt.Sprintf("Close waits up to Linger (%d s)", int(d.Linger.Seconds())),
	)
}
