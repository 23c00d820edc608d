package probe

import (
	"fmt"
	"testing"

	"github.com/servald/servald/internal/protodoc"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for ping
// and trace are the code's.
func TestProtocolDocConstants(t *testing.T) {
	r, p, tc := DefaultResponderConfig(), DefaultPingConfig(), DefaultTraceConfig()
	protodoc.Check(t,
		fmt.Sprintf("Two well-known MDP ports: %d echo (as Serval's MDP echo) and %d trace.", EchoPort, TracePort),
		fmt.Sprintf("starts with an %d-byte header", HeaderLen),
		fmt.Sprintf("| %d | ECHO REQUEST | %d | 0 | data (0 to %d bytes) |", typeEchoRequest, EchoPort, MaxData),
		fmt.Sprintf("| %d | ECHO REPLY | from %d |", typeEchoReply, EchoPort),
		fmt.Sprintf("| %d | TRACE REQUEST | %d | 0 | destination SID (32), zero padding: %d bytes in all |", typeTraceRequest, TracePort, TraceRequestLen),
		fmt.Sprintf("| %d | TRACE REPLY | from %d | status | hops (1), next hop SID (32), address length (1, ≤ %d), address |", typeTraceReply, TracePort, MaxAddr),
		fmt.Sprintf("(0 to itself, %d when it has no route)", wireHopsUnknown),
		fmt.Sprintf("status %d, it forwards them", StatusNext),
		fmt.Sprintf("status %d, it is the destination; status %d, it has no route", StatusDestination, StatusNoRoute),
		fmt.Sprintf("A hop gets %d queries, %d s each", tc.Tries, int(tc.Timeout.Seconds())),
		fmt.Sprintf("or after %d hops", tc.MaxHops),
		fmt.Sprintf("a trace request exactly %d bytes, at most %d bytes of echo data", TraceRequestLen, MaxData),
		fmt.Sprintf("The longest trace reply (a %d-byte address) is %d bytes", MaxAddr, traceReplyFixed+MaxAddr),
		fmt.Sprintf("one per source SID (%g a second, bursts of %d; at most %d sources tracked", r.Rate, r.Burst, r.MaxSources),
		fmt.Sprintf("then one for all sources together (%g a second, bursts of %d)", r.TotalRate, r.TotalBurst),
		fmt.Sprintf("read for answers at most every %d ms, or every %d ms while it lacks the node asked about", r.TableTTL.Milliseconds(), missRefresh.Milliseconds()),
		fmt.Sprintf("is held, at most %d at a time, and tried again every %d ms for up to %d s", holdQueue, holdRetry.Milliseconds(), int(holdFor.Seconds())),
		fmt.Sprintf("Requests go every interval (%d s) with %d bytes of data (%d-byte datagrams)", int(p.Interval.Seconds()), p.Size, HeaderLen+p.Size),
	)
}
