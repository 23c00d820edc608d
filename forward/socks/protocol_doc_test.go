package socks

import (
	"fmt"
	"testing"

	"github.com/servald/servald/forward"
	"github.com/servald/servald/internal/protodoc"
)

// TestProtocolDocConstants: the constants docs/PROTOCOL.md quotes for SOCKS
// over MSP are the code's.
func TestProtocolDocConstants(t *testing.T) {
	protodoc.Check(t,
		fmt.Sprintf("Request = version (1) = %d | destination Addr", Version),
		fmt.Sprintf("Reply = version (1) = %d | status (1) | bound Addr", Version),
		fmt.Sprintf("ATYP %d: IPv4 (4) ATYP %d: IPv6 (16) ATYP %d: length (1, 1-255) | name", atypIPv4, atypIPv6, atypDomain),
		fmt.Sprintf("%d succeeded; %d not allowed by the exit's rules; %d connection refused; %d host unreachable",
			Succeeded, NotAllowed, ConnectionRefused, HostUnreachable),
		fmt.Sprintf("%d network unreachable; %d TTL expired", NetworkUnreachable, TTLExpired),
		fmt.Sprintf("forward.DialTimeout %d s for resolving and dialling", int(forward.DialTimeout.Seconds())),
		fmt.Sprintf("%d general failure", GeneralFailure),
		fmt.Sprintf("%d address type not supported", AddressTypeNotSupported),
		fmt.Sprintf("A version other than %d is answered with status %d", Version, GeneralFailure),
		fmt.Sprintf("at most %d s for the Request, the connector at most %d s for the whole set-up",
			int(SetupTimeout.Seconds()), int(SetupTimeout.Seconds())),
		fmt.Sprintf("sends its client status %d when the stream fails", GeneralFailure),
	)
}
