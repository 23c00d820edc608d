package forward

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultHost is the host ParseTarget uses when the argument names only a
// port: the loopback interface, as in Serval, so a forward is never exposed
// to the network unless a host is given.
const DefaultHost = "127.0.0.1"

// ParseTarget parses the argument of --forward, "[HOST:]PORT", into a
// "host:port" string for net.Dial or net.Listen. A missing or empty host
// becomes DefaultHost ("22" and ":22" give "127.0.0.1:22"); an IPv6 host must
// be bracketed ("[::1]:22"). PORT must be a decimal number from 1 to 65535
// (leading zeros are dropped); HOST must be an IP address or a DNS name.
func ParseTarget(s string) (string, error) {
	host, port := "", s
	if strings.Contains(s, ":") {
		var err error
		host, port, err = net.SplitHostPort(s)
		if err != nil {
			return "", fmt.Errorf("forward: bad target %q: want PORT or HOST:PORT, an IPv6 host as [ADDR]:PORT", s)
		}
	}
	p, err := parsePort(port)
	if err != nil {
		return "", err
	}
	switch {
	case host == "":
		host = DefaultHost
	case !validHost(host):
		return "", fmt.Errorf("forward: bad host %q in target %q: want an IP address or a DNS name", host, s)
	}
	return net.JoinHostPort(host, strconv.Itoa(p)), nil
}

// parsePort parses a decimal TCP port number 1-65535.
func parsePort(s string) (int, error) {
	if s == "" {
		return 0, fmt.Errorf("forward: missing TCP port")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("forward: bad TCP port %q: want a number 1-65535", s)
		}
	}
	trimmed := strings.TrimLeft(s, "0")
	p, err := strconv.Atoi(trimmed)
	if trimmed == "" || len(trimmed) > 5 || err != nil || p > 65535 {
		return 0, fmt.Errorf("forward: TCP port %s out of range 1-65535", s)
	}
	return p, nil
}

// validHost reports whether h is an IP address (IPv6 possibly with a zone) or
// a DNS name accepted by ValidName.
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	return ValidName(h)
}

// ValidName reports whether name is a syntactically valid DNS name: letters,
// digits, '-' and '_' in dot separated labels of 1-63 bytes (not starting or
// ending with '-'), 253 bytes at most, an optional final dot.
func ValidName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return false
			}
		}
	}
	return true
}
